"""Every x86-64 relocation kind the linker supports, checked in linked memory.

Each test builds a tiny relocatable object with :mod:`elfbuilder`, links it
with ``JIT.add_object`` and compares the relocated bytes with the psABI
formula evaluated on the real addresses (S symbol, A addend, P place,
GOT ``_GLOBAL_OFFSET_TABLE_``, G GOT slot, L PLT stub, Z symbol size).
The end of the file runs hand-assembled code that depends on the fix-ups.

Most objects have one ``.data`` section of 0x80 bytes, global ``data`` at
its start, the relocated field at ``data+8`` and a 16-byte global ``near``
at ``data+0x40``.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import orcjit
from elfbuilder import (
    R_X86_64_8, R_X86_64_16, R_X86_64_32, R_X86_64_32S, R_X86_64_64, R_X86_64_GOT32,
    R_X86_64_GOT64, R_X86_64_GOTOFF64, R_X86_64_GOTPC32, R_X86_64_GOTPC64, R_X86_64_GOTPCREL,
    R_X86_64_GOTPCREL64, R_X86_64_GOTPCRELX, R_X86_64_GOTPLT64, R_X86_64_NONE, R_X86_64_PC8,
    R_X86_64_PC16, R_X86_64_PC32, R_X86_64_PC64, R_X86_64_PLT32, R_X86_64_PLTOFF64,
    R_X86_64_REX_GOTPCRELX, R_X86_64_SIZE32, R_X86_64_SIZE64, R_X86_64_TPOFF32, SHN_ABS,
    SHN_COMMON, SHT_INIT_ARRAY, SHT_NOBITS, STB_WEAK, STT_FUNC, STT_OBJECT, STV_HIDDEN,
    ElfBuilder,
)

FIELD = 8        # offset of the relocated field in .data
NEAR = 0x40      # offset of the symbol `near` in .data
DATA_SIZE = 0x80

#: libc's abs(): a real function far outside JIT memory
ABS = ctypes.cast(ctypes.CDLL(None).abs, ctypes.c_void_p).value

PLT_STUB_JMP = b"\xff\x25"   # jmp *disp32(%rip)


@pytest.fixture
def jit():
    j = orcjit.JIT()
    yield j
    j.close()


def read(address: int, fmt: str) -> int:
    return struct.unpack(fmt, ctypes.string_at(address, struct.calcsize(fmt)))[0]


def wrap64(value: int) -> int:
    return value & ((1 << 64) - 1)


def data_object(relocs, content: bytes = bytes(DATA_SIZE)) -> bytes:
    """An object with ``.data`` (global ``data``, global ``near`` at +0x40) and
    ``relocs``: (offset, type, target, addend) with target "near", "local" (a local
    symbol at +0x40), "section" (the .data section symbol) or any other name
    (undefined global, bound with ``jit.define`` or to the GOT), or None (symbol 0)."""
    b = ElfBuilder()
    data = b.section(".data", content, flags="aw", align=16)
    b.symbol("data", data, 0, size=DATA_SIZE, type=STT_OBJECT)
    named = {"near": b.symbol("near", data, NEAR, size=0x10, type=STT_OBJECT),
             "local": b.local("local", data, NEAR, size=0x10, type=STT_OBJECT),
             "section": b.section_symbol(data)}
    for offset, rtype, target, addend in relocs:
        if target is not None and target not in named:
            named[target] = b.symbol(target)
        b.reloc(data, offset, rtype, named.get(target), addend)
    return b.build()


def link_field(jit, rtype: int, target: str | None = "near", addend: int = 0, fmt: str = "<q"):
    """Link one relocation at data+8; returns (P, the field's value)."""
    jit.add_object(data_object([(FIELD, rtype, target, addend)]))
    place = jit.address("data") + FIELD
    return place, read(place, fmt)


def check_plt_stub(stub: int, target: int) -> None:
    """``stub`` is ``jmp *slot(%rip)`` and its GOT slot holds ``target``."""
    assert ctypes.string_at(stub, 2) == PLT_STUB_JMP
    slot = stub + 6 + read(stub + 2, "<i")
    assert read(slot, "<Q") == target


# --- absolute and PC-relative kinds to a symbol of the same object -------------------

NEAR_KINDS = [
    pytest.param(R_X86_64_64, "<Q", lambda S, A, P: S + A, id="R_X86_64_64"),
    pytest.param(R_X86_64_PC32, "<i", lambda S, A, P: S + A - P, id="R_X86_64_PC32"),
    pytest.param(R_X86_64_PC64, "<q", lambda S, A, P: S + A - P, id="R_X86_64_PC64"),
    pytest.param(R_X86_64_PC16, "<h", lambda S, A, P: S + A - P, id="R_X86_64_PC16"),
    pytest.param(R_X86_64_PC8, "<b", lambda S, A, P: S + A - P, id="R_X86_64_PC8"),
]


@pytest.mark.parametrize("target", ["near", "local", "section"])
@pytest.mark.parametrize("rtype, fmt, formula", NEAR_KINDS)
def test_kind_to_symbol_in_same_object(jit, rtype, fmt, formula, target):
    addend = -3 + (NEAR if target == "section" else 0)
    place, value = link_field(jit, rtype, target, addend, fmt)
    data = jit.address("data")
    S = data if target == "section" else data + NEAR
    assert value == formula(S, addend, place)


def test_pc64_to_far_target(jit):
    jit.define("far", ABS)
    place, value = link_field(jit, R_X86_64_PC64, "far", 16, "<Q")
    assert value == wrap64(ABS + 16 - place)


# --- absolute kinds to absolute symbols ------------------------------------------------

ABSOLUTE_KINDS = [
    # type, field format, S, A
    pytest.param(R_X86_64_64, "<Q", 0x1234_5678_9ABC, 8, id="R_X86_64_64"),
    pytest.param(R_X86_64_64, "<Q", 0x10, -0x20, id="R_X86_64_64-wraps"),
    pytest.param(R_X86_64_32, "<I", 0x1234, 0x10, id="R_X86_64_32"),
    pytest.param(R_X86_64_32, "<I", 0xFFFF_FFF0, 0xF, id="R_X86_64_32-max"),
    pytest.param(R_X86_64_32S, "<i", 0x1234, 0x10, id="R_X86_64_32S"),
    pytest.param(R_X86_64_32S, "<i", 0x1234, -0x2000, id="R_X86_64_32S-negative"),
    pytest.param(R_X86_64_16, "<H", 0x1234, 1, id="R_X86_64_16"),
    pytest.param(R_X86_64_16, "<H", 0xFFF0, 0xF, id="R_X86_64_16-unsigned-max"),
    pytest.param(R_X86_64_16, "<h", 0x10, -0x20, id="R_X86_64_16-negative"),
    pytest.param(R_X86_64_8, "<B", 0x12, 1, id="R_X86_64_8"),
    pytest.param(R_X86_64_8, "<B", 0xF0, 0xF, id="R_X86_64_8-unsigned-max"),
    pytest.param(R_X86_64_8, "<b", 0x12, -0x20, id="R_X86_64_8-negative"),
]


@pytest.mark.parametrize("rtype, fmt, S, A", ABSOLUTE_KINDS)
def test_absolute_kind_to_defined_address(jit, rtype, fmt, S, A):
    jit.define("small", S)
    _, value = link_field(jit, rtype, "small", A, fmt)
    assert value == (wrap64(S + A) if fmt == "<Q" else S + A)


def test_relocation_against_symbol_zero_has_s_zero(jit):
    _, value = link_field(jit, R_X86_64_64, None, 0x55, "<Q")
    assert value == 0x55


@pytest.mark.parametrize("rtype, fmt", [
    pytest.param(R_X86_64_32S, "<i", id="R_X86_64_32S"),
    pytest.param(R_X86_64_16, "<h", id="R_X86_64_16"),
    pytest.param(R_X86_64_8, "<b", id="R_X86_64_8"),
])
def test_absolute_symbol_in_the_top_of_the_address_space_sign_extends(jit, rtype, fmt):
    b = ElfBuilder()
    data = b.section(".data", bytes(16), flags="aw", align=8)
    b.symbol("data", data)
    b.reloc(data, 0, rtype, b.symbol("minus16", SHN_ABS, (1 << 64) - 0x10))
    jit.add_object(b.build())
    assert read(jit.address("data"), fmt) == -0x10


@pytest.mark.parametrize("bind", ["global", "local"])
def test_absolute_symbol_defined_in_the_object(jit, bind):
    b = ElfBuilder()
    data = b.section(".data", bytes(16), flags="aw", align=8)
    b.symbol("data", data)
    k = (b.symbol if bind == "global" else b.local)("k", SHN_ABS, 0x1234)
    b.reloc(data, 0, R_X86_64_32, k, 2)
    b.reloc(data, 8, R_X86_64_64, k, 0)
    jit.add_object(b.build())
    data = jit.address("data")
    assert read(data, "<I") == 0x1236
    assert read(data + 8, "<Q") == 0x1234
    assert jit.address("k") == (0x1234 if bind == "global" else 0)


# --- overflow ----------------------------------------------------------------------

OVERFLOWS = [
    # type, target, defined address (None: the object's own `near`), addend
    pytest.param(R_X86_64_32, "big", 0x1_0000_0000, 0, id="R_X86_64_32-too-big"),
    pytest.param(R_X86_64_32, "small", 0x1234, -0x2000, id="R_X86_64_32-negative"),
    pytest.param(R_X86_64_32S, "big", 0x8000_0000, 0, id="R_X86_64_32S-too-big"),
    pytest.param(R_X86_64_32S, "small", 0, -0x8000_0001, id="R_X86_64_32S-too-small"),
    pytest.param(R_X86_64_16, "big", 0x1_0000, 0, id="R_X86_64_16"),
    pytest.param(R_X86_64_16, "small", 0, -0x8001, id="R_X86_64_16-negative"),
    pytest.param(R_X86_64_8, "big", 0x100, 0, id="R_X86_64_8"),
    pytest.param(R_X86_64_PC32, "near", None, 1 << 40, id="R_X86_64_PC32"),
    pytest.param(R_X86_64_PC32, "near", None, -(1 << 40), id="R_X86_64_PC32-negative"),
    pytest.param(R_X86_64_PC16, "near", None, 0x1_0000, id="R_X86_64_PC16"),
    pytest.param(R_X86_64_PC8, "near", None, 0x100, id="R_X86_64_PC8"),
    pytest.param(R_X86_64_SIZE32, "near", None, -0x20, id="R_X86_64_SIZE32-negative"),
    pytest.param(R_X86_64_SIZE32, "near", None, 1 << 32, id="R_X86_64_SIZE32-too-big"),
]


@pytest.mark.parametrize("rtype, target, address, addend", OVERFLOWS)
def test_overflow_raises_naming_the_symbol(jit, rtype, target, address, addend):
    if address is not None:
        jit.define(target, address)
    with pytest.raises(orcjit.RelocationOverflowError) as info:
        jit.add_object(data_object([(FIELD, rtype, target, addend)]))
    error = info.value
    assert error.symbol == target and target in str(error)
    assert (error.section, error.offset) == (".data", FIELD)
    assert error.kind
    if address is not None:
        assert error.value == address + addend
    assert jit.address("data") == 0          # nothing of the failed object remains


def test_jit_still_links_after_an_overflow(jit):
    with pytest.raises(orcjit.RelocationOverflowError):
        jit.add_object(data_object([(FIELD, R_X86_64_PC32, "near", 1 << 40)]))
    place, value = link_field(jit, R_X86_64_PC32, "near", 0, "<i")
    assert value == jit.address("near") - place


# --- PLT32 -------------------------------------------------------------------------

def call_object(*targets: str) -> bytes:
    """``.text``: global ``f`` = one ``call <target>@PLT`` per target, then ``ret``;
    global ``near_fn`` and local ``local_fn`` (both ``ret``) follow."""
    code = b"".join(b"\xe8\0\0\0\0" for _ in targets) + b"\xc3"
    b = ElfBuilder()
    text = b.section(".text", code + b"\xc3\xc3", flags="ax", align=16)
    b.symbol("f", text, 0, size=len(code), type=STT_FUNC)
    named = {"near_fn": b.symbol("near_fn", text, len(code), size=1, type=STT_FUNC),
             "local_fn": b.local("local_fn", text, len(code) + 1, size=1, type=STT_FUNC)}
    for i, target in enumerate(targets):
        if target not in named:
            named[target] = b.symbol(target)
        b.reloc(text, 5 * i + 1, R_X86_64_PLT32, named[target], -4)
    return b.build()


def call_destination(jit, index: int = 0) -> int:
    """Where the ``index``-th call of ``f`` goes."""
    field = jit.address("f") + 5 * index + 1
    return field + 4 + read(field, "<i")


def test_plt32_to_near_function_is_direct(jit):
    jit.add_object(call_object("near_fn", "local_fn"))
    assert call_destination(jit, 0) == jit.address("near_fn")
    assert call_destination(jit, 1) == jit.address("near_fn") + 1    # local_fn


def test_plt32_to_function_in_another_object_is_direct(jit):
    jit.add_object(call_object("near_fn"))
    other = ElfBuilder()
    text = other.section(".text", b"\xe8\0\0\0\0\xc3", flags="ax")
    other.symbol("g", text, type=STT_FUNC, size=6)
    other.reloc(text, 1, R_X86_64_PLT32, other.symbol("near_fn"), -4)
    jit.add_object(other.build())
    g = jit.address("g")
    assert g + 5 + read(g + 1, "<i") == jit.address("near_fn")


def test_plt32_to_far_function_goes_through_a_plt_stub(jit):
    jit.define("far", ABS)
    jit.add_object(call_object("far"))
    stub = call_destination(jit)
    assert stub != ABS
    check_plt_stub(stub, ABS)


def test_plt32_calls_to_one_far_function_share_a_stub(jit):
    jit.define("far", ABS)
    jit.define("far2", ABS + 1)
    jit.add_object(call_object("far", "far", "far2"))
    assert call_destination(jit, 0) == call_destination(jit, 1)
    check_plt_stub(call_destination(jit, 2), ABS + 1)


# --- GOT-relative kinds ---------------------------------------------------------------

def symbol_address(jit, target: str) -> int:
    return ABS if target == "far" else jit.address("near")


@pytest.mark.parametrize("target", ["near", "far"])
@pytest.mark.parametrize("rtype", [R_X86_64_GOTPCREL, R_X86_64_GOTPCRELX, R_X86_64_REX_GOTPCRELX],
                         ids=["R_X86_64_GOTPCREL", "R_X86_64_GOTPCRELX", "R_X86_64_REX_GOTPCRELX"])
def test_gotpcrel_points_at_slot_holding_target(jit, rtype, target):
    jit.define("far", ABS)
    place, value = link_field(jit, rtype, target, -4, "<i")
    slot = place + 4 + value                     # G + GOT + A - P, A = -4
    assert read(slot, "<Q") == symbol_address(jit, target)


@pytest.mark.parametrize("target", ["near", "far"])
def test_gotpcrel64_points_at_slot_holding_target(jit, target):
    jit.define("far", ABS)
    place, value = link_field(jit, R_X86_64_GOTPCREL64, target, 8, "<q")
    assert read(place + value - 8, "<Q") == symbol_address(jit, target)


def test_gotpcrel_kinds_to_one_symbol_share_a_slot(jit):
    jit.define("far", ABS)
    jit.add_object(data_object([(0, R_X86_64_GOTPCREL, "far", 0),
                                (4, R_X86_64_REX_GOTPCRELX, "far", 0),
                                (8, R_X86_64_GOTPCREL64, "far", 0)]))
    data = jit.address("data")
    slots = {data + read(data, "<i"), data + 4 + read(data + 4, "<i"),
             data + 8 + read(data + 8, "<q")}
    assert len(slots) == 1


def got_object(jit, *relocs) -> tuple[int, list[int]]:
    """Link an object whose data+0 is ``R_X86_64_GOTPC64`` against
    ``_GLOBAL_OFFSET_TABLE_`` (to learn GOT) and whose 8-byte fields from
    data+8 on are ``relocs``: (type, target, addend). Returns (GOT, field values)."""
    jit.define("far", ABS)
    entries = [(0, R_X86_64_GOTPC64, "_GLOBAL_OFFSET_TABLE_", 0)]
    entries += [(8 * (i + 1), rtype, target, addend)
                for i, (rtype, target, addend) in enumerate(relocs)]
    jit.add_object(data_object(entries))
    data = jit.address("data")
    got = data + read(data, "<q")                # GOT + A - P with A = 0, P = data
    return got, [read(data + 8 * (i + 1), "<q") for i in range(len(relocs))]


def test_gotpc64_gives_a_got_base_near_the_code(jit):
    got, (gotpcrel,) = got_object(jit, (R_X86_64_GOTPCREL, "far", 0))
    data = jit.address("data")
    assert got and got % 8 == 0
    assert abs(got - data) < 1 << 31
    slot = data + 8 + ctypes.c_int32(gotpcrel).value
    assert 0 <= slot - got < 4096            # the GOT slots lie right after the base


def test_gotpc32(jit):
    got, (value,) = got_object(jit, (R_X86_64_GOTPC32, "_GLOBAL_OFFSET_TABLE_", 3))
    place = jit.address("data") + 8
    assert ctypes.c_int32(value).value == got + 3 - place


def test_gotoff64(jit):
    got, (value,) = got_object(jit, (R_X86_64_GOTOFF64, "near", 5))
    assert value == jit.address("near") + 5 - got


@pytest.mark.parametrize("rtype", [R_X86_64_GOT64, R_X86_64_GOTPLT64],
                         ids=["R_X86_64_GOT64", "R_X86_64_GOTPLT64"])
@pytest.mark.parametrize("target", ["near", "far"])
def test_got64_is_slot_offset_from_got(jit, rtype, target):
    got, (value,) = got_object(jit, (rtype, target, 8))
    slot = got + value - 8                       # G + A
    assert read(slot, "<Q") == symbol_address(jit, target)


def test_got64_and_gotpcrel_use_the_same_slot(jit):
    got, (got64, gotpcrel) = got_object(jit, (R_X86_64_GOT64, "far", 0),
                                        (R_X86_64_GOTPCREL, "far", 0))
    place = jit.address("data") + 16
    assert got + got64 == place + ctypes.c_int32(gotpcrel).value


def test_pltoff64_to_far_function_is_its_stub(jit):
    got, (value,) = got_object(jit, (R_X86_64_PLTOFF64, "far", 4))
    check_plt_stub(got + value - 4, ABS)         # L + A - GOT


def test_pltoff64_to_near_symbol_is_the_symbol(jit):
    got, (value,) = got_object(jit, (R_X86_64_PLTOFF64, "near", 4))
    assert value == jit.address("near") + 4 - got


# --- SIZE and NONE ----------------------------------------------------------------------

@pytest.mark.parametrize("rtype, fmt, addend", [
    pytest.param(R_X86_64_SIZE32, "<I", 5, id="R_X86_64_SIZE32"),
    pytest.param(R_X86_64_SIZE64, "<Q", 5, id="R_X86_64_SIZE64"),
    pytest.param(R_X86_64_SIZE64, "<q", -0x20, id="R_X86_64_SIZE64-negative"),
])
def test_size_is_symbol_size_plus_addend(jit, rtype, fmt, addend):
    _, value = link_field(jit, rtype, "near", addend, fmt)
    assert value == 0x10 + addend                # `near` has st_size 0x10


@pytest.mark.parametrize("rtype, fmt", [(R_X86_64_SIZE32, "<I"), (R_X86_64_SIZE64, "<Q")],
                         ids=["R_X86_64_SIZE32", "R_X86_64_SIZE64"])
def test_size_of_symbol_defined_in_another_object(jit, rtype, fmt):
    other = ElfBuilder()
    arr = other.section(".data", bytes(0x40), flags="aw", align=8)
    other.symbol("arr", arr, 0, size=0x40, type=STT_OBJECT)
    jit.add_object(other.build())
    _, value = link_field(jit, rtype, "arr", 1, fmt)
    assert value == 0x41


def test_none_is_ignored(jit):
    content = bytes(range(DATA_SIZE))
    jit.add_object(data_object([(FIELD, R_X86_64_NONE, "near", 0x1234),
                                (FIELD + 4, R_X86_64_NONE, "section", -1)], content))
    assert ctypes.string_at(jit.address("data"), DATA_SIZE) == content


# --- rejected objects ------------------------------------------------------------------

@pytest.mark.parametrize("rtype, name", [
    (R_X86_64_TPOFF32, "R_X86_64_TPOFF32"),
    (R_X86_64_GOT32, "R_X86_64_GOT32"),
    (8, "R_X86_64_RELATIVE"),
    (200, "200"),
])
def test_unsupported_kind_raises_naming_it(jit, rtype, name):
    with pytest.raises(orcjit.UnsupportedError, match=name):
        jit.add_object(data_object([(FIELD, rtype, "near", 0)]))
    assert jit.address("data") == 0


@pytest.mark.parametrize("rtype, offset", [
    pytest.param(R_X86_64_64, DATA_SIZE - 4, id="R_X86_64_64"),
    pytest.param(R_X86_64_PC64, DATA_SIZE - 7, id="R_X86_64_PC64"),
    pytest.param(R_X86_64_PC32, DATA_SIZE - 2, id="R_X86_64_PC32"),
    pytest.param(R_X86_64_32, DATA_SIZE - 1, id="R_X86_64_32"),
    pytest.param(R_X86_64_16, DATA_SIZE - 1, id="R_X86_64_16"),
    pytest.param(R_X86_64_GOTPCRELX, DATA_SIZE - 3, id="R_X86_64_GOTPCRELX"),
    pytest.param(R_X86_64_PLT32, DATA_SIZE - 3, id="R_X86_64_PLT32"),
    pytest.param(R_X86_64_SIZE64, DATA_SIZE - 4, id="R_X86_64_SIZE64"),
    pytest.param(R_X86_64_8, DATA_SIZE, id="R_X86_64_8-past-end"),
    pytest.param(R_X86_64_64, DATA_SIZE + 0x1000, id="R_X86_64_64-far-past-end"),
])
def test_relocation_overrunning_its_section_is_invalid(jit, rtype, offset):
    with pytest.raises(orcjit.InvalidObjectError) as info:
        jit.add_object(data_object([(offset, rtype, "near", 0)]))
    assert not isinstance(info.value, orcjit.UnsupportedError)
    assert jit.address("data") == 0


# --- end to end: code that runs -------------------------------------------------------

def code_object(code: bytes, relocs, *, answer: int = 42) -> bytes:
    """``.text`` = ``code`` as global function ``f``; ``.data`` holds global int
    ``answer``. ``relocs``: (offset in code, type, target, addend)."""
    b = ElfBuilder()
    text = b.section(".text", code, flags="ax", align=16)
    data = b.section(".data", struct.pack("<i", answer), flags="aw", align=4)
    named = {"f": b.symbol("f", text, 0, size=len(code), type=STT_FUNC),
             "answer": b.symbol("answer", data, 0, size=4, type=STT_OBJECT)}
    for offset, rtype, target, addend in relocs:
        if target not in named:
            named[target] = b.symbol(target)
        b.reloc(text, offset, rtype, named[target], addend)
    return b.build()


LEA_RAX_RIP = b"\x48\x8d\x05\0\0\0\0"        # lea rax, [rip + disp32]    (field at 3)
MOV_RAX_RIP = b"\x48\x8b\x05\0\0\0\0"        # mov rax, [rip + disp32]    (field at 3)
MOVABS_RCX = b"\x48\xb9" + bytes(8)          # movabs rcx, imm64          (field at 2)
MOV_EAX_AT_RAX = b"\x8b\x00"                 # mov eax, [rax]
RET = b"\xc3"


def test_run_pc32_lea(jit):
    jit.add_object(code_object(LEA_RAX_RIP + RET, [(3, R_X86_64_PC32, "answer", -4)]))
    assert jit.lookup("f", "uintptr_t()")() == jit.address("answer")


@pytest.mark.parametrize("target", ["answer", "external_int"])
def test_run_rex_gotpcrelx_load(jit, target):
    external = ctypes.c_int(-1234)
    jit.define("external_int", ctypes.addressof(external))   # far from JIT memory
    code = MOV_RAX_RIP + MOV_EAX_AT_RAX + RET                # rax = &x via GOT; eax = x
    jit.add_object(code_object(code, [(3, R_X86_64_REX_GOTPCRELX, target, -4)]))
    assert jit.lookup("f", "int()")() == (42 if target == "answer" else -1234)


# A GOT load of a symbol in reach that stays bound is relaxed: ``mov`` from the
# slot becomes ``lea`` of the symbol (as GNU ld, lld and JITLink do).

def instruction_of_f(jit, length: int = 3) -> bytes:
    return ctypes.string_at(jit.address("f"), length)


@pytest.mark.parametrize("rtype", [R_X86_64_REX_GOTPCRELX, R_X86_64_GOTPCRELX],
                         ids=["R_X86_64_REX_GOTPCRELX", "R_X86_64_GOTPCRELX"])
def test_gotpcrelx_load_of_a_symbol_in_reach_becomes_lea(jit, rtype):
    jit.add_object(code_object(MOV_RAX_RIP + RET, [(3, rtype, "answer", -4)]))
    assert instruction_of_f(jit) == b"\x48\x8d\x05"          # lea rax, [rip + answer]
    assert jit.lookup("f", "uintptr_t()")() == jit.address("answer")


def test_gotpcrelx_load_of_a_far_symbol_keeps_its_slot(jit):
    external = ctypes.c_int(-1234)
    jit.define("external_int", ctypes.addressof(external))
    jit.add_object(code_object(MOV_RAX_RIP + RET, [(3, R_X86_64_REX_GOTPCRELX, "external_int", -4)]))
    assert instruction_of_f(jit) == MOV_RAX_RIP[:3]
    assert jit.lookup("f", "uintptr_t()")() == ctypes.addressof(external)


def test_gotpcrel_without_x_is_never_relaxed(jit):
    jit.add_object(code_object(MOV_RAX_RIP + RET, [(3, R_X86_64_GOTPCREL, "answer", -4)]))
    assert instruction_of_f(jit) == MOV_RAX_RIP[:3]
    assert jit.lookup("f", "uintptr_t()")() == jit.address("answer")


def test_gotpcrelx_load_of_a_weak_definition_keeps_its_rebindable_slot(jit):
    b = ElfBuilder()
    text = b.section(".text", MOV_RAX_RIP + RET, flags="ax", align=16)
    data = b.section(".data", bytes(8), flags="aw", align=8)
    b.symbol("f", text, 0, size=8, type=STT_FUNC)
    weak = b.symbol("w", data, 0, size=8, type=STT_OBJECT, bind=STB_WEAK)
    b.reloc(text, 3, R_X86_64_REX_GOTPCRELX, weak, -4)
    jit.add_object(b.build())
    assert instruction_of_f(jit) == MOV_RAX_RIP[:3]
    first = jit.address("w")
    assert jit.lookup("f", "uintptr_t()")() == first
    strong = ElfBuilder()
    strong.symbol("w", strong.section(".data", bytes(8), flags="aw", align=8), 0, size=8,
                  type=STT_OBJECT)
    jit.add_object(strong.build())
    assert jit.address("w") != first
    assert jit.lookup("f", "uintptr_t()")() == jit.address("w")    # the slot moved with it


def test_gotpcrelx_jump_through_the_slot_is_not_rewritten(jit):
    code = b"\xff\x25\0\0\0\0" + b"\x8d\x47\x01" + RET       # f: jmp [rip + g@GOTPCREL]
    b = ElfBuilder()                                          # g: lea eax, [rdi + 1]; ret
    text = b.section(".text", code, flags="ax", align=16)
    b.symbol("f", text, 0, size=6, type=STT_FUNC)
    g = b.symbol("g", text, 6, size=4, type=STT_FUNC)
    b.reloc(text, 2, R_X86_64_GOTPCRELX, g, -4)
    jit.add_object(b.build())
    assert instruction_of_f(jit, 2) == b"\xff\x25"
    assert jit.lookup("f", "int(int)")(41) == 42


@pytest.mark.parametrize("code, offset", [(b"\x8b\x05", 2), (b"\x8b\x05", 1),
                                          (b"\x8b\x04\x25", 3), (b"\x03\x05", 2)],
                         ids=["mov", "too-early", "mov-not-rip-relative", "add"])
def test_relax_got_load_rewrites_only_rip_relative_mov(code, offset):
    from orcjit.arch import x86_64
    buffer = bytearray(code + bytes(4))
    relaxed = x86_64.relax_got_load(buffer, offset)
    assert relaxed == (code == b"\x8b\x05" and offset == 2)
    assert bytes(buffer) == (b"\x8d\x05" + bytes(4) if relaxed else code + bytes(4))


def test_run_gotpcrelx_indirect_tail_call(jit):
    jit.define("far", ABS)
    code = b"\xff\x25\0\0\0\0"                               # jmp [rip + far@GOTPCREL]
    jit.add_object(code_object(code, [(2, R_X86_64_GOTPCRELX, "far", -4)]))
    assert jit.lookup("f", "int(int)")(-7) == 7


def test_run_plt32_tail_call_to_libc(jit):
    jit.define("far", ABS)
    code = b"\xe9\0\0\0\0"                                   # jmp far@PLT
    jit.add_object(code_object(code, [(1, R_X86_64_PLT32, "far", -4)]))
    assert jit.lookup("f", "int(int)")(-7) == 7


def test_run_plt32_call_to_near_function(jit):
    code = b"\xe8\0\0\0\0" + RET + b"\x8d\x47\x01" + RET     # f: call g; ret  g: lea eax,[rdi+1]
    b = ElfBuilder()
    text = b.section(".text", code, flags="ax", align=16)
    b.symbol("f", text, 0, size=6, type=STT_FUNC)
    g = b.symbol("g", text, 6, size=4, type=STT_FUNC)
    b.reloc(text, 1, R_X86_64_PLT32, g, -4)
    jit.add_object(b.build())
    assert jit.lookup("f", "int(int)")(41) == 42


def test_run_abs32_and_abs32s_immediates(jit):
    jit.define("k", 0x1234)
    code = (b"\xb8\0\0\0\0" + RET                            # f: mov eax, k + 1
            + b"\x48\xc7\xc0\0\0\0\0" + RET)                 # g: mov rax, k - 0x2000
    b = ElfBuilder()
    text = b.section(".text", code, flags="ax", align=16)
    b.symbol("f", text, 0, type=STT_FUNC)
    b.symbol("g", text, 6, type=STT_FUNC)
    k = b.symbol("k")
    b.reloc(text, 1, R_X86_64_32, k, 1)
    b.reloc(text, 9, R_X86_64_32S, k, -0x2000)
    jit.add_object(b.build())
    assert jit.lookup("f", "uint32_t()")() == 0x1235
    assert jit.lookup("g", "int64_t()")() == 0x1234 - 0x2000


def test_run_abs64_movabs(jit):
    code = b"\x48\xb8" + bytes(8) + MOV_EAX_AT_RAX + RET     # movabs rax, &answer; mov eax,[rax]
    jit.add_object(code_object(code, [(2, R_X86_64_64, "answer", 0)]))
    assert jit.lookup("f", "int()")() == 42


def test_run_large_model_gotpc64_gotoff64(jit):
    # 0: lea rax,[rip-7] (rax = f)  7: movabs rcx, GOT-f  11: add rax,rcx (rax = GOT)
    # 14: movabs rcx, answer@GOTOFF  1e: mov eax,[rax+rcx]  21: ret
    code = (b"\x48\x8d\x05\xf9\xff\xff\xff" + MOVABS_RCX + b"\x48\x01\xc8"
            + MOVABS_RCX + b"\x8b\x04\x08" + RET)
    jit.add_object(code_object(code, [(0x09, R_X86_64_GOTPC64, "_GLOBAL_OFFSET_TABLE_", 9),
                                      (0x16, R_X86_64_GOTOFF64, "answer", 0)]))
    assert jit.lookup("f", "int()")() == 42


@pytest.mark.parametrize("rtype", [R_X86_64_GOT64, R_X86_64_GOTPLT64],
                         ids=["R_X86_64_GOT64", "R_X86_64_GOTPLT64"])
def test_run_gotpc32_got64(jit, rtype):
    # lea rax,[rip+GOT]; movabs rcx, answer@GOT; mov rax,[rax+rcx]; mov eax,[rax]; ret
    code = LEA_RAX_RIP + MOVABS_RCX + b"\x48\x8b\x04\x08" + MOV_EAX_AT_RAX + RET
    jit.add_object(code_object(code, [(3, R_X86_64_GOTPC32, "_GLOBAL_OFFSET_TABLE_", -4),
                                      (9, rtype, "answer", 0)]))
    assert jit.lookup("f", "int()")() == 42


def test_run_pltoff64_call_to_libc(jit):
    # lea rax,[rip+GOT]; movabs rcx, far@PLTOFF; add rax,rcx; jmp rax
    jit.define("far", ABS)
    code = LEA_RAX_RIP + MOVABS_RCX + b"\x48\x01\xc8" + b"\xff\xe0"
    jit.add_object(code_object(code, [(3, R_X86_64_GOTPC32, "_GLOBAL_OFFSET_TABLE_", -4),
                                      (9, R_X86_64_PLTOFF64, "far", 0)]))
    assert jit.lookup("f", "int(int)")(-9) == 9


# --- the builder itself ------------------------------------------------------------------

READELF = Path("/usr/lib/llvm-14/bin/llvm-readelf")


@pytest.mark.skipif(not READELF.exists() and not shutil.which("llvm-readelf"),
                    reason="llvm-readelf not installed")
def test_elfbuilder_output_is_accepted_by_llvm_readelf(tmp_path):
    b = ElfBuilder()
    text = b.section(".text", b"\xe8\0\0\0\0\xc3", flags="ax", align=16)
    data = b.section(".data", bytes(16), flags="aw", align=8)
    bss = b.section(".bss", type=SHT_NOBITS, flags="aw", size=64, align=32)
    init = b.section(".init_array", bytes(8), type=SHT_INIT_ARRAY, flags="aw", align=8)
    inline = b.section(".text.inl", b"\xc3", flags="ax")
    f = b.symbol("f", text, type=STT_FUNC, size=6)
    inl = b.symbol("inl", inline, type=STT_FUNC, size=1, bind=STB_WEAK, visibility=STV_HIDDEN)
    b.comdat(inl, inline)
    b.local("loc", data, 8, type=STT_OBJECT, size=8)
    b.symbol("k", SHN_ABS, 0x1234)
    b.symbol("c", SHN_COMMON, 16, size=32, type=STT_OBJECT)
    b.reloc(text, 1, R_X86_64_PLT32, b.symbol("ext"), -4)
    b.reloc(data, 0, R_X86_64_64, b.section_symbol(bss), 8)
    b.reloc(init, 0, R_X86_64_64, f)
    b.reloc(inline, 0, R_X86_64_NONE, None)
    path = tmp_path / "built.o"
    path.write_bytes(b.build())

    readelf = str(READELF) if READELF.exists() else shutil.which("llvm-readelf")
    result = subprocess.run([readelf, "-h", "-S", "-s", "-r", "-g", str(path)],
                            capture_output=True, text=True)
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr.lower() and "error" not in result.stderr.lower()
    assert "REL (Relocatable file)" in out and "X86-64" in out
    sections = dict(re.findall(r"^\s*\[\s*\d+\] (\S+)\s+([A-Z_]+) ", out, re.M))
    assert sections[".group"] == "GROUP" and sections[".bss"] == "NOBITS"
    assert sections[".init_array"] == "INIT_ARRAY" and sections[".symtab"] == "SYMTAB"
    assert "R_X86_64_PLT32" in out and "ext - 4" in out
    assert ".bss + 8" in out and "R_X86_64_NONE" in out
    symtab = next(line for line in out.splitlines() if ".symtab" in line and "SYMTAB" in line)
    assert symtab.split()[-2] == "3"              # sh_info: first non-local (null, loc, .bss)
    symbols = {line.split()[-1]: line.split()[3:7] for line in out.splitlines()
               if line.strip()[:1].isdigit() and line.strip().split(":")[0].isdigit()
               and len(line.split()) == 8}
    assert symbols["loc"][:2] == ["OBJECT", "LOCAL"]
    assert symbols["inl"] == ["FUNC", "WEAK", "HIDDEN", "6"]
    assert symbols["k"][3] == "ABS" and symbols["c"][3] == "COM" and symbols["ext"][3] == "UND"
    assert "COMDAT group section" in out and "[inl]" in out and ".rela.text.inl" in out
