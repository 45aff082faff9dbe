"""A small builder of ELF64 little-endian x86-64 relocatable objects, for tests.

It writes exactly what a test asks for -- sections, symbols, RELA
relocations, COMDAT groups -- and lays out the bookkeeping a linker expects:
``.symtab`` with locals first (its ``sh_info`` is the index of the first
non-local symbol), ``.strtab``, ``.shstrtab``, one ``.rela<name>`` per
relocated section. It does *not* check relocations against their sections,
so tests can also build malformed objects on purpose.

Sections and symbols are handles; their final indices are assigned when the
object is built (group sections come first, as the ELF spec requires them to
precede their members; locals precede globals in the symbol table)::

    b = ElfBuilder()
    text = b.section(".text", code, flags="ax", align=16)
    data = b.section(".data", bytes(16), flags="aw", align=8)
    f = b.symbol("f", text, type=STT_FUNC, size=len(code))
    ext = b.symbol("ext")                                  # undefined global
    b.reloc(data, 0, R_X86_64_64, ext, addend=8)
    elf_bytes = b.build()
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# --- constants ------------------------------------------------------------------

EM_X86_64 = 62
ET_REL = 1

SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA = 0, 1, 2, 3, 4
SHT_NOBITS = 8
SHT_INIT_ARRAY, SHT_FINI_ARRAY, SHT_PREINIT_ARRAY, SHT_GROUP = 14, 15, 16, 17

SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
SHF_MERGE, SHF_STRINGS, SHF_INFO_LINK, SHF_GROUP, SHF_TLS = 0x10, 0x20, 0x40, 0x200, 0x400

SHN_UNDEF, SHN_ABS, SHN_COMMON = 0, 0xFFF1, 0xFFF2

STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE, STT_TLS = 0, 1, 2, 3, 4, 6
STV_DEFAULT, STV_INTERNAL, STV_HIDDEN, STV_PROTECTED = 0, 1, 2, 3

GRP_COMDAT = 1

#: x86-64 relocation type numbers (System V psABI)
R_X86_64_NONE = 0
R_X86_64_64 = 1
R_X86_64_PC32 = 2
R_X86_64_GOT32 = 3
R_X86_64_PLT32 = 4
R_X86_64_GOTPCREL = 9
R_X86_64_32 = 10
R_X86_64_32S = 11
R_X86_64_16 = 12
R_X86_64_PC16 = 13
R_X86_64_8 = 14
R_X86_64_PC8 = 15
R_X86_64_TPOFF32 = 23
R_X86_64_PC64 = 24
R_X86_64_GOTOFF64 = 25
R_X86_64_GOTPC32 = 26
R_X86_64_GOT64 = 27
R_X86_64_GOTPCREL64 = 28
R_X86_64_GOTPC64 = 29
R_X86_64_GOTPLT64 = 30
R_X86_64_PLTOFF64 = 31
R_X86_64_SIZE32 = 32
R_X86_64_SIZE64 = 33
R_X86_64_GOTPCRELX = 41
R_X86_64_REX_GOTPCRELX = 42

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")

_FLAG_LETTERS = {"a": SHF_ALLOC, "w": SHF_WRITE, "x": SHF_EXECINSTR, "M": SHF_MERGE,
                 "S": SHF_STRINGS, "T": SHF_TLS}


def _flags(flags: int | str) -> int:
    """Section flags as an int or in assembler letters: "ax", "aw", "a", "awT"."""
    if isinstance(flags, int):
        return flags
    value = 0
    for letter in flags:
        value |= _FLAG_LETTERS[letter]
    return value


# --- handles --------------------------------------------------------------------

@dataclass(eq=False)
class Section:
    name: str
    type: int
    flags: int
    content: bytes
    size: int
    align: int
    entsize: int = 0
    link: int = 0
    info: int = 0
    index: int = -1          # assigned by build()

    def __repr__(self) -> str:
        return f"Section({self.name!r})"


@dataclass(eq=False)
class Symbol:
    name: str
    section: Section | int   # a Section, or SHN_UNDEF / SHN_ABS / SHN_COMMON
    value: int
    size: int
    bind: int
    type: int
    visibility: int
    index: int = -1          # assigned by build()

    def __repr__(self) -> str:
        return f"Symbol({self.name!r})"


@dataclass(eq=False)
class _Group:
    signature: Symbol
    members: list[Section]
    comdat: bool
    section: Section = field(init=False)


@dataclass(frozen=True)
class Reloc:
    section: Section
    offset: int
    type: int
    symbol: Symbol | None    # None: symbol index 0
    addend: int


class _StringTable:
    def __init__(self) -> None:
        self.data = bytearray(b"\0")
        self._offsets: dict[str, int] = {"": 0}

    def add(self, name: str) -> int:
        offset = self._offsets.get(name)
        if offset is None:
            offset = self._offsets[name] = len(self.data)
            self.data += name.encode() + b"\0"
        return offset


# --- the builder ----------------------------------------------------------------

class ElfBuilder:
    """Collects sections, symbols, relocations and groups; ``build()`` returns bytes."""

    def __init__(self, machine: int = EM_X86_64):
        self.machine = machine
        self.sections: list[Section] = []
        self.symbols: list[Symbol] = []
        self.relocs: list[Reloc] = []
        self.groups: list[_Group] = []

    def section(self, name: str, content: bytes = b"", *, flags: int | str = "a",
                type: int = SHT_PROGBITS, align: int = 1, size: int | None = None,
                entsize: int = 0) -> Section:
        """Add a section. For SHT_NOBITS give ``size`` (content is ignored)."""
        if type == SHT_NOBITS:
            content, size = b"", size if size is not None else len(content)
        else:
            content = bytes(content).ljust(size or 0, b"\0")   # ``size`` pads with zeros
            size = len(content)
        sec = Section(name, type, _flags(flags), content, size, align, entsize)
        self.sections.append(sec)
        return sec

    def symbol(self, name: str, section: Section | int = SHN_UNDEF, value: int = 0, *,
               size: int = 0, bind: int = STB_GLOBAL, type: int = STT_NOTYPE,
               visibility: int = STV_DEFAULT) -> Symbol:
        """Add a symbol; ``section`` is a Section or SHN_UNDEF / SHN_ABS / SHN_COMMON.

        For SHN_COMMON, ``value`` is the alignment (as in ELF).
        """
        sym = Symbol(name, section, value, size, bind, type, visibility)
        self.symbols.append(sym)
        return sym

    def local(self, name: str, section: Section | int, value: int = 0, **kw) -> Symbol:
        return self.symbol(name, section, value, bind=STB_LOCAL, **kw)

    def section_symbol(self, section: Section) -> Symbol:
        """The STT_SECTION symbol of ``section`` (what compilers relocate against)."""
        return self.symbol("", section, 0, bind=STB_LOCAL, type=STT_SECTION)

    def reloc(self, section: Section, offset: int, type: int, symbol: Symbol | None,
              addend: int = 0) -> Reloc:
        """Add a RELA relocation of ``section`` at ``offset``."""
        rel = Reloc(section, offset, type, symbol, addend)
        self.relocs.append(rel)
        return rel

    def comdat(self, signature: Symbol, *members: Section, comdat: bool = True) -> None:
        """Put ``members`` in a section group named by ``signature`` (COMDAT by default)."""
        for sec in members:
            sec.flags |= SHF_GROUP
        self.groups.append(_Group(signature, list(members), comdat))

    # -- layout ------------------------------------------------------------------
    def build(self) -> bytes:
        shstrtab, strtab = _StringTable(), _StringTable()

        # symbol table: null, locals, then globals/weaks (stable order)
        ordered = sorted(self.symbols, key=lambda s: s.bind != STB_LOCAL)
        for i, sym in enumerate(ordered, start=1):
            sym.index = i
        first_global = 1 + sum(1 for s in ordered if s.bind == STB_LOCAL)

        # sections: null, groups, user sections, relocation sections, tables
        group_sections = []
        for group in self.groups:
            group.section = Section(".group", SHT_GROUP, 0, b"", 0, 4, entsize=4)
            group_sections.append(group.section)
        rela_sections: dict[int, Section] = {}
        for rel in self.relocs:
            target = rel.section
            if id(target) not in rela_sections:
                flags = SHF_INFO_LINK | (target.flags & SHF_GROUP)
                rela_sections[id(target)] = Section(".rela" + target.name, SHT_RELA, flags,
                                                    b"", 0, 8, entsize=_RELA.size)
        symtab = Section(".symtab", SHT_SYMTAB, 0, b"", 0, 8, entsize=_SYM.size)
        strtab_sec = Section(".strtab", SHT_STRTAB, 0, b"", 0, 1)
        shstrtab_sec = Section(".shstrtab", SHT_STRTAB, 0, b"", 0, 1)
        all_sections = [*group_sections, *self.sections, *rela_sections.values(),
                        symtab, strtab_sec, shstrtab_sec]
        for i, sec in enumerate(all_sections, start=1):
            sec.index = i

        # a relocated section in a group brings its relocation section along
        for group in self.groups:
            members = list(group.members)
            members += [rela_sections[id(m)] for m in group.members if id(m) in rela_sections]
            words = [GRP_COMDAT if group.comdat else 0] + [m.index for m in members]
            group.section.content = struct.pack(f"<{len(words)}I", *words)
            group.section.link, group.section.info = symtab.index, group.signature.index

        for rel in self.relocs:
            sec = rela_sections[id(rel.section)]
            sym = rel.symbol.index if rel.symbol is not None else 0
            sec.content += _RELA.pack(rel.offset, (sym << 32) | rel.type, rel.addend)
            sec.link, sec.info = symtab.index, rel.section.index

        entries = [_SYM.pack(0, 0, 0, 0, 0, 0)]
        for sym in ordered:
            shndx = sym.section.index if isinstance(sym.section, Section) else sym.section
            entries.append(_SYM.pack(strtab.add(sym.name) if sym.name else 0,
                                     (sym.bind << 4) | sym.type, sym.visibility & 3,
                                     shndx, sym.value, sym.size))
        symtab.content = b"".join(entries)
        symtab.link, symtab.info = strtab_sec.index, first_global
        strtab_sec.content = bytes(strtab.data)

        names = {id(sec): shstrtab.add(sec.name) for sec in all_sections}
        shstrtab_sec.content = bytes(shstrtab.data)

        # file: header, section contents (aligned), section header table
        out = bytearray(_EHDR.size)
        offsets = {}
        for sec in all_sections:
            if sec.type != SHT_NOBITS:
                sec.size = len(sec.content)
            out += bytes(-len(out) % max(sec.align, 1))
            offsets[id(sec)] = len(out)
            if sec.type != SHT_NOBITS:
                out += sec.content
        out += bytes(-len(out) % 8)
        shoff = len(out)
        out += _SHDR.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        for sec in all_sections:
            out += _SHDR.pack(names[id(sec)], sec.type, sec.flags, 0, offsets[id(sec)],
                              sec.size, sec.link, sec.info, sec.align, sec.entsize)
        ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)   # 64-bit, LE, version 1, SysV
        _EHDR.pack_into(out, 0, ident, ET_REL, self.machine, 1, 0, 0, shoff, 0, _EHDR.size,
                        0, 0, _SHDR.size, len(all_sections) + 1, shstrtab_sec.index)
        return bytes(out)
