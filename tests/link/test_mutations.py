"""Malformed objects: every corruption of a real object is refused cleanly or links.

Real objects (the ``libc_calls`` and ``cxx_exceptions`` fixtures and the small
generated module, see ``_objects.py``) are corrupted in thousands of ways --
truncated, header fields, every field of section headers, symbols, RELA
entries and section groups, extra sections, seeded random byte flips -- and
each result is given to :meth:`orcjit.JIT.add_object`. The only acceptable
outcomes are:

* a clean refusal with one of the errors in :data:`ALLOWED` (all
  :class:`orcjit.JITError` subclasses), leaving the JIT usable, or
* a successful link; the object is then removed again *without calling
  anything in it* -- its code and data may be garbage. The JIT's static
  constructor/destructor hooks are disabled for this reason (a corrupted
  section type or name can turn any section into an init array).

Anything else -- ``IndexError``, ``struct.error``, ``UnicodeError``,
``KeyError``, ``ValueError``, ``OverflowError``, a hang or a crash of the
interpreter -- is a bug in orcjit.

The default run takes a few seconds; ``-m slow`` adds the exhaustive set
(every section and symbol, more flips, more lengths).
"""

from __future__ import annotations

import functools
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

import orcjit

from . import _objects as objs

#: what a corrupted object may raise
ALLOWED = (
    orcjit.InvalidObjectError,        # includes UnsupportedError
    orcjit.UnresolvedSymbolsError,    # a symbol name got corrupted
    orcjit.DuplicateDefinitionError,  # ... into another defined name
    orcjit.RelocationOverflowError,   # a relocation type or addend that no longer fits
    orcjit.ExecutorError,             # "JIT memory exhausted": a huge .bss or COMMON size
)

# -- the objects ------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def base_object(name: str) -> bytes:
    if name == "gen_small":
        return objs.generated_object("gen_small")
    if name == "gen_small_large":
        return objs.generated_object("gen_small", 2, "large", "pic")
    return objs.fixture_object(name)


BASES = ["libc_calls", "cxx_exceptions", "gen_small"]
SLOW_BASES = ["gen_small_large"]

#: sections whose every header field is mutated in the default run (all: with -m slow)
KEY_SECTIONS = {"", ".text", ".rela.text", ".symtab", ".strtab", ".eh_frame", ".rela.eh_frame",
                ".bss", ".group", ".rodata", ".data.rel.ro", ".rela.data.rel.ro",
                ".text._ZN2fx12FixtureErrorD0Ev", ".gcc_except_table"}

# -- mutations -----------------------------------------------------------------------------

Apply = Callable[[bytes], bytes]


@dataclass(frozen=True)
class Mutation:
    base: str
    id: str
    apply: Apply
    slow: bool = False

    def data(self) -> bytes:
        return self.apply(base_object(self.base))


def _set(at: int, fmt: str, value: int) -> Apply:
    return functools.partial(_apply_set, at=at, fmt=fmt, value=value)


def _apply_set(data: bytes, at: int, fmt: str, value: int) -> bytes:
    return objs.patch(data, at, fmt, value)


def _chain(*steps: Apply) -> Apply:
    return functools.partial(_apply_chain, steps=steps)


def _apply_chain(data: bytes, steps: tuple[Apply, ...]) -> bytes:
    for step in steps:
        data = step(data)
    return data


def _truncate(length: int) -> Apply:
    return functools.partial(_apply_truncate, length=length)


def _apply_truncate(data: bytes, length: int) -> bytes:
    return data[:length]


def _cut_keeping_headers(length: int) -> Apply:
    """Cut the file at ``length`` but re-append the section header table (e_shoff fixed):
    sections whose contents lay past the cut now end outside the file."""
    return functools.partial(_apply_cut, length=length)


def _apply_cut(data: bytes, length: int) -> bytes:
    raw = objs.RawElf(data)
    table = data[raw.shoff:raw.shoff + raw.shnum * objs.SHDR.size]
    out = data[:length] + b"\0" * (-length % 8)
    return objs.patch(out + table, 40, "<Q", len(out))


def _flip(changes: tuple[tuple[int, int], ...]) -> Apply:
    return functools.partial(_apply_flip, changes=changes)


def _apply_flip(data: bytes, changes: tuple[tuple[int, int], ...]) -> bytes:
    out = bytearray(data)
    for at, value in changes:
        out[at] = value
    return bytes(out)


def _append_section(name_offset: int, sh_type: int, content: bytes, *, link: int = 0,
                    info: int = 0, entsize: int = 0, flags: int = 0, align: int = 8) -> Apply:
    return functools.partial(_apply_append_section, header=(name_offset, sh_type, flags, link,
                                                            info, align, entsize),
                             content=content)


def _apply_append_section(data: bytes, header: tuple, content: bytes) -> bytes:
    """Add a section at the end: its contents, then the section header table, plus one."""
    name, sh_type, flags, link, info, align, entsize = header
    raw = objs.RawElf(data)
    table = data[raw.shoff:raw.shoff + raw.shnum * objs.SHDR.size]
    out = data[:raw.shoff] + b"\0" * (-raw.shoff % 8)
    content_at = len(out)
    out += content + b"\0" * (-len(content) % 8)
    shoff = len(out)
    out += table + objs.SHDR.pack(name, sh_type, flags, 0, content_at, len(content), link, info,
                                  align, entsize)
    out = objs.patch(out, 40, "<Q", shoff)
    return objs.patch(out, 60, "<H", raw.shnum + 1)


# -- generators: each yields (id, apply, slow) ------------------------------------------------

U64, U32 = (1 << 64) - 1, (1 << 32) - 1


def _where(raw: objs.RawElf, offset: int) -> str:
    """Readable location of a file offset."""
    if offset < objs.EHDR.size:
        return "ehdr"
    end = raw.shoff + raw.shnum * objs.SHDR.size
    if raw.shoff <= offset < end:
        return f"shdr{(offset - raw.shoff) // objs.SHDR.size}"
    if offset >= end:
        return "eof"
    for s in raw.sections:
        if s.type != objs.SHT_NOBITS and s.offset <= offset < s.offset + s.size:
            return s.name or f"sec{s.index}"
    return "gap"


def gen_truncations(raw: objs.RawElf) -> Iterator[tuple[str, Apply, bool]]:
    size = len(raw.data)
    lengths = {0, 1, 3, 4, 5, 15, 16, 17, 24, 40, 48, 56, 62, 63, 64, 65, size - 1, size - 8}
    lengths |= {raw.shoff + d for d in (-1, 0, 1, 8, 40, 63, 64, 65)}
    for i in range(raw.shnum):
        lengths |= {raw.shoff + i * objs.SHDR.size + 32}
    slow_lengths = set(range(0, size, 97)) | {raw.shoff + i * 64 + d for i in range(raw.shnum)
                                                for d in (0, 1, 63)}
    cuts = set()
    for s in raw.sections:
        if s.type != objs.SHT_NOBITS and s.size:
            cuts |= {s.offset, s.offset + 1, s.offset + s.size // 2, s.offset + s.size - 1}
    for n in sorted(lengths | slow_lengths):
        if 0 <= n < size:
            yield f"trunc-{n:#x}-{_where(raw, n)}", _truncate(n), n not in lengths
    for n in sorted(cuts):
        if n < raw.shoff:
            slow = _where(raw, n) not in {".symtab", ".strtab", ".rela.text", ".text",
                                          ".eh_frame", ".rela.eh_frame"}
            yield f"cut-{n:#x}-{_where(raw, n)}", _cut_keeping_headers(n), slow


def gen_header(raw: objs.RawElf) -> Iterator[tuple[str, Apply, bool]]:
    size, shoff, shnum = len(raw.data), raw.shoff, raw.shnum
    values = {
        "e_shoff": [0, 1, 8, 64, shoff - 1, shoff + 1, shoff + 64, size - 64, size - 63, size,
                    1 << 32, 1 << 63, U64, U64 - shoff],
        "e_shnum": [0, 1, 2, shnum - 1, shnum + 1, 0xFF00, 0xFFFF],
        "e_shstrndx": [0, shnum, shnum - 1, raw.symtab.index, 2, 0xFF00, 0xFFFF],
        "e_shentsize": [0, 1, 40, 63, 65, 128, 0xFFFF],
        "e_type": [0, 2, 3, 4, 0xFFFF],
        "e_machine": [0, 3, 40, 183, 0xFFFF],
        "e_version": [0, 2],
        "e_ehsize": [0, 0xFFFF],
        "ei_class": [0, 1, 3],
        "ei_data": [0, 2, 3],
    }
    for field, choices in values.items():
        at, fmt = objs.EHDR_FIELDS[field]
        for value in choices:
            yield f"{field}={value:#x}", _set(at, fmt, value), False
    yield "magic", _set(0, "<I", 0x464C457E), False
    # extended numbering claimed, with section 0 holding nonsense
    for count in (0, 1, raw.shnum, raw.shnum + 1, 1 << 24, U64):
        yield (f"e_shnum=0-sh0.size={count:#x}",
               _chain(_set(60, "<H", 0), _set(raw.shoff + 32, "<Q", count)), False)
    for link in (0, raw.shstrndx, raw.shnum, U32):
        yield (f"e_shstrndx=xindex-sh0.link={link:#x}",
               _chain(_set(62, "<H", 0xFFFF), _set(raw.shoff + 40, "<I", link)), False)


def _section_values(raw: objs.RawElf, s: objs.RawSection) -> dict[str, list[int]]:
    size, shnum = len(raw.data), raw.shnum
    shstrtab = raw.sections[raw.shstrndx]
    return {
        "sh_offset": [size, size - 1, s.offset + 1, s.offset + 3, 1 << 63, U64, U64 - s.size + 1],
        "sh_size": [0, s.size + 1, s.size + 3, max(s.size - 1, 0), size, 1 << 32, 1 << 63, U64],
        "sh_link": [0, shnum, shnum - 1, s.index, U32],
        "sh_info": [0, 1, shnum, s.index, len(raw.symbols), U32],
        "sh_entsize": [0, 1, 23, 25, U64],
        "sh_addralign": [0, 3, 6, 1 << 12, 1 << 40, 1 << 63, U64],
        "sh_name": [0, shstrtab.size, shstrtab.size - 1, U32],
        "sh_type": [0, 1, 2, 3, 4, 8, 9, 14, 15, 16, 17, 18, 0x70000001, 0x6FFFFFFF, U32],
        "sh_flags": [0, 0x2, 0x3, 0x6, 0x7, 0x402, 0x202, U64],
    }


def gen_section_headers(raw: objs.RawElf) -> Iterator[tuple[str, Apply, bool]]:
    for s in raw.sections:
        slow = s.name not in KEY_SECTIONS
        label = f"sh{s.index}{s.name}"
        for field, choices in _section_values(raw, s).items():
            at, fmt = objs.SHDR_FIELDS[field]
            for value in dict.fromkeys(choices):
                yield f"{label}.{field}={value:#x}", _set(s.header_offset + at, fmt, value), slow


def _interesting_symbols(raw: objs.RawElf) -> dict[str, objs.RawSymbol]:
    """A few symbols of every kind, by role."""
    syms = raw.symbols
    picks: dict[str, objs.RawSymbol] = {"null": syms[0]}

    def pick(role: str, predicate) -> None:
        for sym in syms:
            if predicate(sym) and sym.index not in {p.index for p in picks.values()}:
                picks[role] = sym
                return

    pick("file", lambda s: s.type == 4)
    pick("section", lambda s: s.type == 3)
    pick("local", lambda s: s.bind == 0 and s.type in (0, 1, 2) and s.index)
    pick("func", lambda s: s.bind == 1 and s.type == 2 and s.shndx)
    pick("object", lambda s: s.bind == 1 and s.type == 1 and 0 < s.shndx < 0xFF00)
    pick("undef", lambda s: s.bind == 1 and s.shndx == 0)
    pick("weak", lambda s: s.bind == 2 and s.shndx)
    groups = raw.groups()
    if groups:
        picks["signature"] = syms[groups[0].info]
    picks["last"] = syms[-1]
    return picks


def gen_symbols(raw: objs.RawElf) -> Iterator[tuple[str, Apply, bool]]:
    picks = _interesting_symbols(raw)
    chosen = {sym.index for sym in picks.values()}
    strtab = raw.sections[raw.symtab.link]
    shnum = raw.shnum
    for sym in raw.symbols:
        role = next((r for r, p in picks.items() if p.index == sym.index), None)
        slow = sym.index not in chosen
        label = f"sym{sym.index}" + (f"({role})" if role else "")
        section = raw.sections[sym.shndx] if 0 < sym.shndx < shnum else None
        end = section.size if section is not None else 0
        values = {
            "st_name": [0, strtab.size, strtab.size - 1, U32, sym.name_offset + 1],
            "st_shndx": [0, shnum, shnum - 1, 0xFEFF, 0xFF00, 0xFF1F, 0xFF3F, 0xFFF1, 0xFFF2,
                         0xFFFE, 0xFFFF],
            "st_value": [end, end + 1, end + 8, 3, 1 << 63, U64],
            "st_size": [0, 1 << 40, U64],
            "st_other": [1, 2, 3, 0xFF],
            # binding in the high nibble, type in the low one
            "st_info": sorted({(b << 4) | sym.type for b in (0, 1, 2, 10, 15)}
                              | {(sym.bind << 4) | t for t in (0, 1, 2, 3, 4, 5, 6, 10, 15)}),
        }
        for field, choices in values.items():
            at, fmt = objs.SYM_FIELDS[field]
            for value in dict.fromkeys(choices):
                yield (f"{label}.{field}={value:#x}", _set(sym.entry_offset + at, fmt, value),
                       slow)
        if sym.name:
            name_at = strtab.offset + sym.name_offset
            for byte in (0xFF, 0x80, 0xC3):
                yield (f"{label}.name[0]={byte:#x}", _set(name_at, "<B", byte), slow)
    shstrtab = raw.sections[raw.shstrndx]
    for table, what in ((strtab, "strtab"), (shstrtab, "shstrtab")):
        yield f"{what}-unterminated", _set(table.offset + table.size - 1, "<B", 0x41), False
        yield f"{what}-all-0xff", _flip(tuple((table.offset + i, 0xFF)
                                              for i in range(1, table.size))), False
    # a global renamed to another defined global
    defined = [s for s in raw.symbols if s.bind in (1, 2) and s.shndx and s.name]
    if len(defined) >= 2:
        a, b = defined[0], defined[1]
        yield (f"sym{b.index}.st_name=name-of-sym{a.index}",
               _set(b.entry_offset, "<I", a.name_offset), False)
        undefined = [s for s in raw.symbols if s.bind == 1 and s.shndx == 0]
        if undefined:
            u = undefined[0]
            yield (f"sym{u.index}.st_name=name-of-sym{a.index}",
                   _set(u.entry_offset, "<I", a.name_offset), False)


def gen_relocations(raw: objs.RawElf) -> Iterator[tuple[str, Apply, bool]]:
    nsyms = len(raw.symbols)
    picks = _interesting_symbols(raw)
    types = [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 19, 22, 23, 24, 25, 26, 27,
             28, 29, 30, 31, 32, 33, 34, 36, 37, 38, 41, 42, 43, 44, 100, 0x7FFFFFFF, U32]
    for rela in raw.rela_sections():
        target = raw.sections[rela.info]
        entries = raw.rela_entry_offsets(rela)
        key = {entries[0], entries[-1]}
        for n, at in enumerate(entries):
            slow = at not in key or rela.name not in KEY_SECTIONS | {".rela.gcc_except_table"}
            offset, _rtype, _sym, _addend = raw.rela_entry(at)
            label = f"{rela.name}[{n}]"
            values = {
                "r_offset": [target.size, target.size - 1, target.size - 3, target.size - 7,
                             1 << 32, 1 << 63, U64],
                "r_sym": [0, nsyms, nsyms - 1, U32] + [p.index for p in picks.values()],
                "r_type": types,
                "r_addend": [1 << 31, -(1 << 31) - 1, (1 << 63) - 1, -(1 << 63)],
            }
            for field, choices in values.items():
                f_at, fmt = objs.RELA_FIELDS[field]
                for value in dict.fromkeys(choices):
                    yield f"{label}.{field}={value:#x}", _set(at + f_at, fmt, value), slow
            # the entry's own offset kept, its type widened: overruns the section end?
            if target.size - offset < 8:
                yield f"{label}.r_type=R_X86_64_64-at-end", _set(at + 8, "<I", 1), slow


def gen_groups(raw: objs.RawElf) -> Iterator[tuple[str, Apply, bool]]:
    for n, group in enumerate(raw.groups()):
        slow = n > 0
        label = f"group{group.index}"
        words = group.size // 4
        for value in (0, 2, U32):
            yield f"{label}.flags={value:#x}", _set(group.offset, "<I", value), slow
        for k in range(1, words):
            for value in (0, raw.shnum, raw.shnum - 1, group.index, raw.symtab.index, U32):
                yield (f"{label}.member{k}={value:#x}", _set(group.offset + 4 * k, "<I", value),
                       slow)
        sig = raw.symbols[group.info]
        section_sym = next(s for s in raw.symbols if s.type == 3)
        file_sym = next((s for s in raw.symbols if s.type == 4), raw.symbols[0])
        yield f"{label}.signature=section-symbol", _set(group.header_offset + 44, "<I",
                                                          section_sym.index), slow
        yield f"{label}.signature=file-symbol", _set(group.header_offset + 44, "<I",
                                                       file_sym.index), slow
        # the signature symbol turned into a section symbol of a special section
        for shndx in (0xFFF1, 0xFFF2, 0xFF00, raw.shnum):
            yield (f"{label}.signature-as-section-symbol-shndx={shndx:#x}",
                   _chain(_set(sig.entry_offset + 4, "<B", (sig.bind << 4) | 3),
                          _set(sig.entry_offset + 6, "<H", shndx)), slow)
        # two groups with one signature: the second is dropped as already provided
        others = raw.groups()
        if len(others) > 1 and n == 0:
            yield (f"{label}.signature=of-group{others[1].index}",
                   _set(group.header_offset + 44, "<I", others[1].info), False)


def gen_extra_sections(raw: objs.RawElf) -> Iterator[tuple[str, Apply, bool]]:
    nsyms = len(raw.symbols)
    symtab = raw.symtab.index
    text = raw.section(".text")
    name = raw.sections[raw.shstrndx].size - 1       # the empty name at the end of shstrtab
    table = raw.data[raw.symtab.offset:raw.symtab.offset + raw.symtab.size]
    yield ("extra-second-symtab", _append_section(name, objs.SHT_SYMTAB, table,
                                                  link=raw.symtab.link, entsize=24), False)
    yield ("extra-rel-section", _append_section(name, 9, bytes(16), link=symtab, info=text.index,
                                                entsize=16), False)
    rela = objs.RELA.pack(0, (1 << 32) | 2, 0)
    for info in (text.index, 0, raw.shnum + 1, symtab):
        yield (f"extra-rela-info={info}", _append_section(name, objs.SHT_RELA, rela, link=symtab,
                                                          info=info, entsize=24), False)
    yield ("extra-group-empty", _append_section(name, objs.SHT_GROUP, b"", link=symtab, info=1,
                                                entsize=4), False)
    yield ("extra-group-odd", _append_section(name, objs.SHT_GROUP, b"\1\0\0\0\2\0", link=symtab,
                                              info=1, entsize=4), False)
    yield ("extra-strtab-unterminated", _append_section(name, objs.SHT_STRTAB, b"abc"), False)
    # SHT_SYMTAB_SHNDX: wrong sizes, and symbols sent through it to odd places
    yield ("extra-shndx-short", _append_section(name, 18, bytes(4 * nsyms - 4), link=symtab,
                                                entsize=4), False)
    yield ("extra-shndx-long", _append_section(name, 18, bytes(4 * nsyms + 4), link=symtab,
                                               entsize=4), False)
    picks = _interesting_symbols(raw)
    for role in ("func", "object", "section", "signature", "undef"):
        sym = picks.get(role)
        if sym is None:
            continue
        # raw.shnum is the appended table itself (not loaded); raw.shnum + 1 does not exist
        for target in (0, 1, sym.shndx if sym.shndx < 0xFF00 else 1, raw.shnum, raw.shnum + 1,
                       0xFF00, 0xFFF1, 0xFFFF, U32):
            words = [0] * nsyms
            words[sym.index] = target
            yield (f"extra-shndx-sym{sym.index}({role})->{target:#x}",
                   _chain(_set(sym.entry_offset + 6, "<H", 0xFFFF),
                          _append_section(name, 18, struct.pack(f"<{nsyms}I", *words), link=symtab,
                                          entsize=4)), role not in ("func", "signature"))


def gen_flips(raw: objs.RawElf, seed: int, count: int,
              slow_after: int) -> Iterator[tuple[str, Apply, bool]]:
    """Seeded random byte changes, mostly in the structures the reader trusts."""
    rng = random.Random(seed)
    size = len(raw.data)
    regions = [(0, objs.EHDR.size), (raw.shoff, raw.shoff + raw.shnum * objs.SHDR.size),
               (raw.symtab.offset, raw.symtab.offset + raw.symtab.size)]
    regions += [(s.offset, s.offset + s.size) for s in raw.rela_sections() + raw.groups()]
    for k in range(count):
        changes = []
        for _ in range(rng.choice((1, 1, 2, 3, 4, 8))):
            if rng.random() < 0.8:
                lo, hi = rng.choice(regions)
                at = rng.randrange(lo, hi)
            else:
                at = rng.randrange(size)
            value = rng.choice((0, 0xFF, 0x80, 0x7F, rng.randrange(256),
                                raw.data[at] ^ (1 << rng.randrange(8))))
            changes.append((at, value if value != raw.data[at] else value ^ 0xFF))
        where = "+".join(sorted({_where(raw, at) for at, _ in changes}))
        yield f"flip{k:03d}-{where}", _flip(tuple(changes)), k >= slow_after


GENERATORS = [gen_truncations, gen_header, gen_section_headers, gen_symbols, gen_relocations,
              gen_groups, gen_extra_sections]

# -- known bugs ------------------------------------------------------------------------------

def _unchanged(apply: Apply, data: bytes) -> bool:
    """A mutation that, applied to this object, changes nothing (a field already 0, ...)."""
    if isinstance(apply, functools.partial) and apply.func in (_apply_set, _apply_flip,
                                                               _apply_cut, _apply_truncate):
        return apply(data) == data
    return False


def all_mutations(include_slow: bool = True) -> list[Mutation]:
    out = []
    for number, base in enumerate(BASES + SLOW_BASES):
        data = base_object(base)
        raw = objs.RawElf(data)
        items = [item for gen in GENERATORS for item in gen(raw)]
        items += list(gen_flips(raw, seed=1234 + number, count=600, slow_after=120))
        seen = set()
        for mutation_id, apply, slow in items:
            if mutation_id in seen or _unchanged(apply, data):
                continue
            seen.add(mutation_id)
            slow = slow or base in SLOW_BASES
            if slow and not include_slow:
                continue
            out.append(Mutation(base, mutation_id, apply, slow))
    return out


def _params():
    for m in all_mutations():
        marks = [pytest.mark.slow] if m.slow else []
        case_id = f"{m.base}-{m.id}"
        yield pytest.param(m, id=case_id, marks=marks)


# -- running -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_jit():
    """One JIT for every case; constructors and destructors of added objects never run."""
    with orcjit.JIT() as jit:
        platform = jit.linker.platform
        original = platform.run_initializers, platform.run_finalizers
        platform.run_initializers = lambda addresses: None
        platform.run_finalizers = lambda dso_handle, addresses: None
        yield jit
        platform.run_initializers, platform.run_finalizers = original


def add_and_remove(jit: orcjit.JIT, data: bytes, name: str) -> BaseException | None:
    """Add a (corrupted) object; remove it again if it linked. Returns the allowed error."""
    try:
        handle = jit.add_object(data, name=name)
    except ALLOWED as error:
        return error
    jit.remove(handle)
    return None


@pytest.mark.parametrize("mutation", list(_params()))
def test_mutated_object_is_refused_or_links(mutation: Mutation, shared_jit):
    data = mutation.data()
    if data == base_object(mutation.base):
        pytest.fail("the mutation changed nothing")
    add_and_remove(shared_jit, data, f"{mutation.base}-{mutation.id}")
    assert not shared_jit.linker.handles(), "a refused or removed object left a set behind"


def test_base_objects_link_and_run():
    """The uncorrupted objects are good: they link and compute the right values."""
    with orcjit.JIT() as jit:
        for base in BASES + SLOW_BASES:
            jit.remove(jit.add_object(base_object(base), name=base))
        jit.add_object(base_object("libc_calls"))
        assert jit.lookup("format_len", "int(int)")(42) == 17
        jit.add_object(base_object("cxx_exceptions"))
        assert jit.lookup("throw_and_catch", "int(int)")(4) == 1004
        jit.add_object(base_object("gen_small"))
        assert jit.lookup("small_entry", "int(int)")(2) == 20
        assert jit.lookup("small_switch", "int(int)")(3) == 43


def test_mutation_set_is_large_and_deterministic():
    fast = all_mutations(include_slow=False)
    assert len(fast) >= 500
    assert len(all_mutations()) >= 2 * len(fast)
    again = all_mutations(include_slow=False)
    assert [(m.base, m.id) for m in fast] == [(m.base, m.id) for m in again]
    assert all(a.data() == b.data() for a, b in zip(fast[::50], again[::50]))


def test_shared_jit_still_works_after_every_refusal(shared_jit):
    """Runs after the parametrized cases (file order): the same JIT links and runs good code."""
    platform = shared_jit.linker.platform
    handles = [shared_jit.add_object(base_object(base), name=f"good-{base}") for base in BASES]
    assert shared_jit.lookup("format_len", "int(int)")(-1000) == 20
    assert shared_jit.lookup("throw_and_catch", "int(int)")(3) == 2003
    assert shared_jit.lookup("small_entry", "int(int)")(3) == 27
    assert platform is shared_jit.linker.platform
    for handle in handles:
        shared_jit.remove(handle)


# -- symbols that end up nowhere: must not be bound to address 0 silently -----------------------


def _gen_small_symbol(name: str) -> objs.RawSymbol:
    return next(s for s in objs.RawElf(base_object("gen_small")).symbols if s.name == name)


def _refused(data: bytes, *errors: type[BaseException]) -> BaseException | None:
    with orcjit.JIT() as jit:
        jit.linker.platform.run_initializers = lambda addresses: None
        jit.linker.platform.run_finalizers = lambda dso_handle, addresses: None
        try:
            jit.remove(jit.add_object(data))
        except errors as error:
            return error
    return None


@pytest.mark.parametrize("target", [
    pytest.param(16, id="past-the-end"),
    pytest.param(0xFF00, id="0xff00"),
    pytest.param(0xFFF1, id="0xfff1"),
    pytest.param(0xFFFFFFFF, id="0xffffffff"),
])
def test_extended_section_index_out_of_range_is_refused(target):
    """``counter`` sent through an SHT_SYMTAB_SHNDX table to a section that does not exist."""
    raw = objs.RawElf(base_object("gen_small"))
    assert raw.shnum + 1 == 16          # the table is appended as section 15
    counter = _gen_small_symbol("counter")
    words = [0] * len(raw.symbols)
    words[counter.index] = target
    data = _apply_chain(raw.data, (
        _set(counter.entry_offset + 6, "<H", 0xFFFF),
        _append_section(raw.sections[raw.shstrndx].size - 1, 18,
                        struct.pack(f"<{len(words)}I", *words), link=raw.symtab.index, entsize=4)))
    assert isinstance(_refused(data, orcjit.InvalidObjectError), orcjit.InvalidObjectError)


def test_reference_to_symbol_in_unloaded_section_is_refused():
    raw = objs.RawElf(base_object("gen_small"))
    counter = _gen_small_symbol("counter")
    data = objs.patch(raw.data, counter.entry_offset + 6, "<H", raw.symtab.index)
    error = _refused(data, orcjit.InvalidObjectError, orcjit.UnresolvedSymbolsError)
    assert error is not None, "linked, with small_entry's reference to counter bound to 0"
