"""Real relocatable objects for the link tests, and a raw view of their ELF layout.

Objects come from llvmlite's TargetMachine (LLVM 22), compiled from the
clang-14 fixtures in ``tests/fixtures`` or from IR generated here, for any
combination of codegen optimisation level, code model and relocation model.
Everything is cached per process: the same request returns the same bytes.

:class:`RawElf` reads headers, symbol and RELA entries with plain ``struct``,
independently of :mod:`orcjit.link.elf`, so the mutation tests can find the
byte offsets of the fields they corrupt without trusting the code under test.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from pathlib import Path

from orcjit.frontends.ir import parse_ir, prepare_for_target, target_description
from orcjit.layers import create_target_machine

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

#: every clang-14 fixture module (tests/fixtures/NAME.ll)
FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.ll"))

# -- compiling ---------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def target_machine(opt_level: int = 2, code_model: str = "small", reloc_model: str = "pic"):
    return create_target_machine(opt_level=opt_level, code_model=code_model,
                                 reloc_model=reloc_model)


@functools.lru_cache(maxsize=None)
def compile_ir(ir_text: str, opt_level: int = 2, code_model: str = "small",
               reloc_model: str = "pic") -> bytes:
    """ELF relocatable object bytes for an IR module (codegen at ``opt_level``)."""
    tm = target_machine(opt_level, code_model, reloc_model)
    module = parse_ir(ir_text)
    prepare_for_target(module, *target_description(tm))
    return bytes(tm.emit_object(module))


@functools.lru_cache(maxsize=None)
def fixture_ir(name: str) -> str:
    return (FIXTURES / f"{name}.ll").read_text()


def fixture_object(name: str, opt_level: int = 2, code_model: str = "small",
                   reloc_model: str = "pic") -> bytes:
    return compile_ir(fixture_ir(name), opt_level, code_model, reloc_model)


# -- generated modules ---------------------------------------------------------------

#: small, self-contained, links on its own (only libc's strlen), no constructors.
#: ``small_entry(i)`` = ``7*i + strlen("orcjit")`` for 0 <= i < 4, else -1.
GEN_SMALL = r"""
@message = private unnamed_addr constant [7 x i8] c"orcjit\00", align 1
@counter = global i32 0, align 4
@scale = internal global i32 7, align 4
@table = internal constant [4 x ptr] [ptr @times, ptr @times, ptr @times, ptr @times], align 16

declare i64 @strlen(ptr)

define internal i32 @times(i32 %x) noinline {
  %s = load i32, ptr @scale, align 4
  %r = mul i32 %x, %s
  ret i32 %r
}

define i32 @small_entry(i32 %i) {
entry:
  %c = load i32, ptr @counter, align 4
  %c1 = add i32 %c, 1
  store i32 %c1, ptr @counter, align 4
  %ok = icmp ult i32 %i, 4
  br i1 %ok, label %call, label %bad
call:
  %idx = zext i32 %i to i64
  %slot = getelementptr [4 x ptr], ptr @table, i64 0, i64 %idx
  %fn = load ptr, ptr %slot, align 8
  %v = call i32 %fn(i32 %i)
  %len = call i64 @strlen(ptr @message)
  %len32 = trunc i64 %len to i32
  %r = add i32 %v, %len32
  ret i32 %r
bad:
  ret i32 -1
}

define i32 @small_switch(i32 %x) {
entry:
  switch i32 %x, label %other [
    i32 0, label %a
    i32 1, label %b
    i32 2, label %c
    i32 3, label %d
    i32 4, label %e
    i32 5, label %f
  ]
a:
  ret i32 10
b:
  ret i32 21
c:
  ret i32 32
d:
  ret i32 43
e:
  ret i32 54
f:
  ret i32 65
other:
  ret i32 0
}
"""

#: every kind of symbol and section LLVM commonly emits: linkages, visibilities,
#: COMMON, COMDAT, aliases, an ifunc, TLS, ctors/dtors with priorities, a custom
#: section, over-aligned data, PC-relative data, weak undefined references.
GEN_RICH = r"""
$inline_fn = comdat any
$linkonce_data = comdat any

@counter = global i32 0, align 4
@hidden_counter = hidden global i64 5, align 8
@protected_value = protected global i32 7, align 4
@weak_data = weak global i32 3, align 4
@common_data = common global i64 0, align 8
@common_array = common global [16 x i8] zeroinitializer, align 16
@linkonce_data = linkonce_odr global i32 11, comdat, align 4
@big_aligned = global [64 x i8] zeroinitializer, align 64
@in_custom = global i32 1, section "my_custom_section", align 4
@ro_string = private unnamed_addr constant [6 x i8] c"hello\00", align 1
@merge_string = private unnamed_addr constant [6 x i8] c"world\00", align 1
@table = internal constant [3 x ptr] [ptr @add, ptr @sub, ptr @weak_fn], align 16
@rel_offset = global i32 trunc (i64 sub (i64 ptrtoint (ptr @counter to i64), i64 ptrtoint (ptr @rel_offset to i64)) to i32), align 4
@ptr_to_ext = global ptr @ext_data, align 8
@tls_var = thread_local global i32 5, align 4
@tls_zero = thread_local global i32 0, align 4
@ext_data = external global i32
@alias_counter = alias i32, ptr @counter
@hidden_alias = hidden alias i32 (i32, i32), ptr @add
@ifunc_add = ifunc i32 (i32, i32), ptr @resolve_add

@llvm.global_ctors = appending global [2 x { i32, ptr, ptr }] [{ i32, ptr, ptr } { i32 65535, ptr @ctor, ptr null }, { i32, ptr, ptr } { i32 101, ptr @ctor_early, ptr null }]
@llvm.global_dtors = appending global [1 x { i32, ptr, ptr }] [{ i32, ptr, ptr } { i32 65535, ptr @dtor, ptr null }]

declare i64 @strlen(ptr)
declare i32 @ext_fn(i32)
declare extern_weak i32 @maybe_missing(i32)

define i32 @add(i32 %a, i32 %b) {
  %s = add i32 %a, %b
  ret i32 %s
}

define i32 @sub(i32 %a, i32 %b) {
  %s = sub i32 %a, %b
  ret i32 %s
}

define weak i32 @weak_fn(i32 %a, i32 %b) {
  %s = mul i32 %a, %b
  ret i32 %s
}

define linkonce_odr i32 @inline_fn(i32 %x) comdat {
  %s = shl i32 %x, 1
  ret i32 %s
}

define hidden i32 @hidden_fn() {
  %v = load i32, ptr @protected_value, align 4
  ret i32 %v
}

define internal i32 @static_fn(i32 %x) noinline {
  %v = load i32, ptr @weak_data, align 4
  %s = add i32 %x, %v
  ret i32 %s
}

define internal ptr @resolve_add() {
  ret ptr @add
}

define i32 @dispatch(i32 %i, i32 %a, i32 %b) {
  %idx = zext i32 %i to i64
  %slot = getelementptr [3 x ptr], ptr @table, i64 0, i64 %idx
  %fn = load ptr, ptr %slot, align 8
  %r = call i32 %fn(i32 %a, i32 %b)
  %t = call i32 @static_fn(i32 %r)
  %u = call i32 @inline_fn(i32 %t)
  ret i32 %u
}

define i64 @use_externals(i32 %x) {
  %d = load i32, ptr @ext_data, align 4
  %e = call i32 @ext_fn(i32 %d)
  %l = call i64 @strlen(ptr @ro_string)
  %m = call i64 @strlen(ptr @merge_string)
  %has = icmp ne ptr @maybe_missing, null
  %w = select i1 %has, i64 1, i64 0
  %e64 = sext i32 %e to i64
  %s1 = add i64 %l, %m
  %s2 = add i64 %s1, %w
  %s3 = add i64 %s2, %e64
  ret i64 %s3
}

define i32 @use_tls() {
  %v = load i32, ptr @tls_var, align 4
  %z = load i32, ptr @tls_zero, align 4
  %s = add i32 %v, %z
  store i32 %s, ptr @tls_zero, align 4
  ret i32 %s
}

define i32 @switchy(i32 %x) {
entry:
  switch i32 %x, label %other [
    i32 0, label %a
    i32 1, label %b
    i32 2, label %c
    i32 3, label %d
    i32 4, label %e
    i32 5, label %f
    i32 6, label %g
  ]
a:
  ret i32 3
b:
  ret i32 14
c:
  ret i32 15
d:
  ret i32 92
e:
  ret i32 65
f:
  ret i32 35
g:
  ret i32 89
other:
  ret i32 -1
}

define i64 @common_sum() {
  %a = load i64, ptr @common_data, align 8
  %p = getelementptr [16 x i8], ptr @common_array, i64 0, i64 3
  %b = load i8, ptr %p, align 1
  %b64 = zext i8 %b to i64
  %h = load i64, ptr @hidden_counter, align 8
  %l = load i32, ptr @linkonce_data, align 4
  %l64 = zext i32 %l to i64
  %q = getelementptr [64 x i8], ptr @big_aligned, i64 0, i64 9
  %c = load i8, ptr %q, align 1
  %c64 = zext i8 %c to i64
  %s1 = add i64 %a, %b64
  %s2 = add i64 %s1, %h
  %s3 = add i64 %s2, %l64
  %s4 = add i64 %s3, %c64
  ret i64 %s4
}

define void @ctor() {
  store i32 1, ptr @counter, align 4
  ret void
}

define internal void @ctor_early() {
  store i32 2, ptr @in_custom, align 4
  ret void
}

define void @dtor() {
  store i32 0, ptr @counter, align 4
  ret void
}
"""


def gen_many_sections(count: int) -> str:
    """``count`` globals ``g<i> = i``, each in its own section, and ``get_g(i)`` reading them.

    Over 65279 sections the object needs ELF extended section numbering
    (``e_shnum = 0``, ``SHT_SYMTAB_SHNDX``, symbols with ``SHN_XINDEX``).
    """
    lines = [f'@g{i} = global i32 {i}, section ".data.g{i}", align 4' for i in range(count)]
    lines.append(f"""
define i32 @get_first() {{
  %v = load i32, ptr @g0, align 4
  ret i32 %v
}}

define i32 @get_last() {{
  %v = load i32, ptr @g{count - 1}, align 4
  ret i32 %v
}}
""")
    return "\n".join(lines)


def gen_many_functions(count: int) -> str:
    """``count`` small functions calling each other, with a jump table per function."""
    parts = []
    for i in range(count):
        callee = f"@fn{i - 1}" if i else "@leaf"
        parts.append(f"""
define i32 @fn{i}(i32 %x) noinline {{
entry:
  switch i32 %x, label %deflt [
    i32 0, label %a
    i32 1, label %b
    i32 2, label %c
    i32 3, label %d
  ]
a:
  ret i32 {i}
b:
  ret i32 {i * 3}
c:
  ret i32 {i * 5}
d:
  ret i32 {i * 7}
deflt:
  %y = add i32 %x, -1
  %r = call i32 {callee}(i32 %y)
  ret i32 %r
}}""")
    parts.append("\ndefine i32 @leaf(i32 %x) noinline {\n  ret i32 %x\n}\n")
    return "\n".join(parts)


GENERATED = {
    "gen_small": GEN_SMALL,
    "gen_rich": GEN_RICH,
    "gen_many_functions": gen_many_functions(60),
    "gen_many_sections": gen_many_sections(300),
}


def generated_object(name: str, opt_level: int = 2, code_model: str = "small",
                     reloc_model: str = "pic") -> bytes:
    return compile_ir(GENERATED[name], opt_level, code_model, reloc_model)


# -- a raw, independent view of the layout ---------------------------------------------

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
SHDR = struct.Struct("<IIQQQQIIQQ")
SYM = struct.Struct("<IBBHQQ")
RELA = struct.Struct("<QQq")

#: byte offset and struct format of each field, inside its header or entry
EHDR_FIELDS = {"e_type": (16, "<H"), "e_machine": (18, "<H"), "e_version": (20, "<I"),
               "e_shoff": (40, "<Q"), "e_ehsize": (52, "<H"), "e_shentsize": (58, "<H"),
               "e_shnum": (60, "<H"), "e_shstrndx": (62, "<H"), "ei_class": (4, "<B"),
               "ei_data": (5, "<B")}
SHDR_FIELDS = {"sh_name": (0, "<I"), "sh_type": (4, "<I"), "sh_flags": (8, "<Q"),
               "sh_offset": (24, "<Q"), "sh_size": (32, "<Q"), "sh_link": (40, "<I"),
               "sh_info": (44, "<I"), "sh_addralign": (48, "<Q"), "sh_entsize": (56, "<Q")}
SYM_FIELDS = {"st_name": (0, "<I"), "st_info": (4, "<B"), "st_other": (5, "<B"),
              "st_shndx": (6, "<H"), "st_value": (8, "<Q"), "st_size": (16, "<Q")}
RELA_FIELDS = {"r_offset": (0, "<Q"), "r_type": (8, "<I"), "r_sym": (12, "<I"),
               "r_addend": (16, "<q")}

SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOBITS, SHT_GROUP = 2, 3, 4, 8, 17


@dataclass(frozen=True)
class RawSection:
    index: int
    header_offset: int    # where its header is in the file
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    addralign: int
    entsize: int


@dataclass(frozen=True)
class RawSymbol:
    index: int
    entry_offset: int
    name: str
    name_offset: int
    info: int
    shndx: int
    value: int
    size: int

    @property
    def bind(self) -> int:
        return self.info >> 4

    @property
    def type(self) -> int:
        return self.info & 0xF


class RawElf:
    """Header, section table, symbols and RELA entries of a well-formed object."""

    def __init__(self, data: bytes):
        self.data = bytes(data)
        fields = EHDR.unpack_from(self.data, 0)
        self.shoff, self.shentsize, self.shnum, self.shstrndx = (fields[6], fields[11],
                                                                 fields[12], fields[13])
        assert self.shnum and self.shstrndx < self.shnum, "only ordinary section numbering"
        raw = [SHDR.unpack_from(self.data, self.shoff + i * SHDR.size) for i in range(self.shnum)]
        shstr_off = raw[self.shstrndx][4]
        self.sections = [
            RawSection(i, self.shoff + i * SHDR.size, self._cstr(shstr_off + h[0]), h[1], h[2],
                       h[4], h[5], h[6], h[7], h[8], h[9])
            for i, h in enumerate(raw)]
        (self.symtab,) = [s for s in self.sections if s.type == SHT_SYMTAB]
        strtab = self.sections[self.symtab.link]
        self.symbols = []
        for i in range(self.symtab.size // SYM.size):
            at = self.symtab.offset + i * SYM.size
            name, info, _other, shndx, value, size = SYM.unpack_from(self.data, at)
            self.symbols.append(RawSymbol(i, at, self._cstr(strtab.offset + name), name, info,
                                          shndx, value, size))

    def _cstr(self, at: int) -> str:
        return self.data[at:self.data.index(b"\0", at)].decode("utf-8", "surrogateescape")

    def section(self, name: str) -> RawSection:
        return next(s for s in self.sections if s.name == name)

    def rela_sections(self) -> list[RawSection]:
        return [s for s in self.sections if s.type == SHT_RELA]

    def rela_entry_offsets(self, rela: RawSection) -> list[int]:
        return [rela.offset + i * RELA.size for i in range(rela.size // RELA.size)]

    def rela_entry(self, at: int) -> tuple[int, int, int, int]:
        """(offset, type, symbol, addend) of the entry at file offset ``at``."""
        offset, info, addend = RELA.unpack_from(self.data, at)
        return offset, info & 0xFFFFFFFF, info >> 32, addend

    def groups(self) -> list[RawSection]:
        return [s for s in self.sections if s.type == SHT_GROUP]


def patch(data: bytes, at: int, fmt: str, value: int) -> bytes:
    """``data`` with ``value`` packed (as ``fmt``, wrapped to its width) at ``at``."""
    size = struct.calcsize(fmt)
    value &= (1 << (8 * size)) - 1
    unsigned = fmt.replace("q", "Q").replace("i", "I").replace("h", "H").replace("b", "B")
    out = bytearray(data)
    struct.pack_into(unsigned, out, at, value)
    return bytes(out)
