"""Reader for ELF64 little-endian relocatable objects (``ET_REL``).

It turns the bytes of an object into plain tables -- sections, symbols,
RELA relocations, section groups -- and checks every offset, size and index
against the buffer before anything is built from it (a RELA section's
entries when they are read: a linker reads only those of sections it loads),
so a malformed object raises :class:`~orcjit.errors.InvalidObjectError` and
never makes the linker read or write out of bounds. Tables are unpacked with
``struct.iter_unpack`` over whole sections, and section headers stay tuples:
an object is read for every lazily compiled function.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import InvalidObjectError

# e_ident / header
ELFMAG = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1
ET_REL = 1
EM_X86_64 = 62
EM_AARCH64 = 183

# section types
SHT_NULL = 0
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_RELA = 4
SHT_NOBITS = 8
SHT_REL = 9
SHT_INIT_ARRAY = 14
SHT_FINI_ARRAY = 15
SHT_PREINIT_ARRAY = 16
SHT_GROUP = 17
SHT_SYMTAB_SHNDX = 18
SHT_X86_64_UNWIND = 0x70000001

# section flags
SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHF_MERGE = 0x10
SHF_STRINGS = 0x20
SHF_GROUP = 0x200
SHF_TLS = 0x400

# special section indices
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2
SHN_XINDEX = 0xFFFF

# symbol binding, type, visibility
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STB_GNU_UNIQUE = 10
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4
STT_COMMON, STT_TLS, STT_GNU_IFUNC = 5, 6, 10
STV_DEFAULT, STV_INTERNAL, STV_HIDDEN, STV_PROTECTED = 0, 1, 2, 3

GRP_COMDAT = 1

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")


@dataclass(slots=True)
class Section:
    """One section header, with its name resolved."""

    index: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    addralign: int
    entsize: int

    @property
    def is_alloc(self) -> bool:
        return bool(self.flags & SHF_ALLOC)


@dataclass(slots=True)
class Symbol:
    """One symbol table entry; ``shndx`` already resolved through SHT_SYMTAB_SHNDX."""

    index: int
    name: str
    value: int
    size: int
    bind: int
    type: int
    visibility: int
    shndx: int
    section: int | None = None   # the real section it is defined in (None: undefined, special)

    @property
    def is_absolute(self) -> bool:
        return self.section is None and self.shndx == SHN_ABS

    @property
    def is_common(self) -> bool:
        return self.section is None and self.shndx == SHN_COMMON


@dataclass(slots=True)
class Group:
    """A section group (``SHT_GROUP``); COMDAT groups are de-duplicated by signature."""

    section: int
    signature: str
    is_comdat: bool
    members: list[int]


#: one section header as read: (name offset, type, flags, address, offset, size,
#: link, info, alignment, entry size)
Header = tuple[int, int, int, int, int, int, int, int, int, int]


@dataclass(slots=True)
class ObjectFile:
    """The tables of one relocatable object.

    Section headers stay the rows they were read as (``headers``), named
    through ``names`` when asked (:meth:`section_name`): the linker reads an
    object for every lazily compiled function, and needs neither an object
    nor a name per section. ``sections`` makes :class:`Section` records on
    first use. ``loaded`` lists the content sections a linker loads
    (allocatable), ``unloaded`` the other content sections (notes, debug
    information) and ``relas`` the RELA sections (headers checked), each in
    section order.

    Relocations are read when asked for, one RELA section at a time
    (:meth:`relocations_of`): a linker needs only those of sections it loads.
    """

    data: bytes
    machine: int
    headers: list[Header]
    names: _StringTable
    symbols: list[Symbol]
    loaded: list[int]
    unloaded: list[int]
    relas: list[int]
    groups: list[Group] = field(default_factory=list)
    _sections: list[Section] | None = None

    def section_name(self, index: int) -> str:
        return self.names[self.headers[index][0]]

    @property
    def relocations(self) -> dict[int, list[tuple[int, int, int, int]]]:
        """Every RELA entry, by target section index, as ``(offset, type,
        symbol_index, addend)`` tuples."""
        entries: dict[int, list[tuple[int, int, int, int]]] = {}
        for rela in self.relas:
            entries.setdefault(self.headers[rela][7], []).extend(self.relocations_of(rela))
        return entries

    def relocation_rows(self, rela: int) -> Iterator[tuple[int, int, int]]:
        """The raw ``(offset, info, addend)`` rows of RELA section ``rela``
        (its header checked; each row's symbol and offset are the reader's
        to check: see relocations_of)."""
        _n, _t, _f, _a, start, size, _link, _target, _align, _entsize = self.headers[rela]
        return _RELA.iter_unpack(self.data[start : start + size])

    def relocations_of(self, rela: int) -> list[tuple[int, int, int, int]]:
        """The entries of RELA section ``rela`` as ``(offset, type, symbol_index,
        addend)``, each checked against the symbol table and its target section."""
        target = self.headers[rela][7]
        nsyms, limit = len(self.symbols), self.headers[target][5]
        entries: list[tuple[int, int, int, int]] = []
        append = entries.append
        for offset, info, addend in self.relocation_rows(rela):
            sym = info >> 32
            if sym >= nsyms:
                raise self.bad_relocation_symbol(rela, sym)
            if offset >= limit:
                raise _bad(f"relocation in {self.section_name(rela)!r} at {offset:#x} is "
                           f"outside {self.section_name(target)!r} ({limit:#x} bytes)")
            append((offset, info & 0xFFFFFFFF, sym, addend))
        return entries

    def bad_relocation_symbol(self, rela: int, sym: int) -> InvalidObjectError:
        """The error for an entry of RELA section ``rela`` naming symbol ``sym``,
        which the symbol table does not have."""
        return _bad(f"relocation in {self.section_name(rela)!r} refers to symbol {sym}, "
                    f"but there are {len(self.symbols)}")

    @property
    def sections(self) -> list[Section]:
        if self._sections is None:
            names = self.names
            self._sections = [Section(i, names[n], t, f, off, sz, link, info, align or 1, ent)
                              for i, (n, t, f, _a, off, sz, link, info, align, ent)
                              in enumerate(self.headers)]
        return self._sections

    def section_data(self, section: Section) -> bytes:
        """The bytes of a section (zeros are not materialised for NOBITS)."""
        if section.type == SHT_NOBITS:
            return b""
        return self.data[section.offset : section.offset + section.size]


#: section types parse_object looks at (the rest are only content)
_TABLE_TYPES = frozenset({SHT_RELA, SHT_GROUP, SHT_SYMTAB, SHT_SYMTAB_SHNDX, SHT_REL})


def _bad(message: str) -> InvalidObjectError:
    return InvalidObjectError(f"malformed ELF object: {message}")


def _check_range(data_len: int, offset: int, size: int, what: str) -> None:
    if offset < 0 or size < 0 or offset + size > data_len:
        raise _bad(f"{what} [{offset:#x}, +{size:#x}) lies outside the file ({data_len:#x} bytes)")


class _StringTable(dict):
    """Bounds-checked NUL-terminated strings of one string table section.

    The table is split once into ``{offset: name}``; ``table[offset]`` is a
    plain dict lookup, and only an offset into the middle of a string
    (suffix sharing: ``.text`` inside ``.rela.text``) is searched for its
    end, once. Names are UTF-8 (undecodable bytes kept as surrogates).
    """

    __slots__ = ("_text", "_ascii", "_what")

    def __init__(self, data: bytes, offset: int, size: int, what: str):
        self._what = what           # (dict.__new__ made it empty: no dict.__init__ needed)
        table = data[offset:offset + size]
        self._ascii = table.isascii()
        self._text = text = table.decode("latin-1")    # one character per byte: offsets hold
        if text.endswith("\0"):
            offset = 0
            for name in text[:-1].split("\0"):
                self[offset] = name if self._ascii else _utf8(name)
                offset += len(name) + 1

    def __missing__(self, offset: int) -> str:
        text = self._text
        if offset < 0 or offset >= len(text):
            if offset == 0 and not text:
                return ""
            raise _bad(f"{self._what} name offset {offset:#x} outside its string table")
        end = text.find("\0", offset)
        if end < 0:
            raise _bad(f"{self._what} name at {offset:#x} is not NUL-terminated")
        name = self[offset] = text[offset:end] if self._ascii else _utf8(text[offset:end])
        return name


def _utf8(latin1: str) -> str:
    return latin1.encode("latin-1").decode("utf-8", "surrogateescape")


def parse_object(data: bytes | bytearray | memoryview) -> ObjectFile:
    """Parse and validate an ELF64 LE relocatable object.

    Raises InvalidObjectError for anything malformed: wrong magic, class,
    type, truncated tables, offsets or indices out of range.
    """
    data = bytes(data)
    size = len(data)
    if size < _EHDR.size or data[:4] != ELFMAG:
        raise InvalidObjectError("The file was not recognized as a valid object file "
                                 f"({size} bytes{', no ELF magic' if size >= 4 else ''})")
    (ident, e_type, e_machine, _version, _entry, _phoff, e_shoff, _flags, _ehsize,
     _phentsize, _phnum, e_shentsize, e_shnum, e_shstrndx) = _EHDR.unpack_from(data, 0)
    if ident[4] != ELFCLASS64 or ident[5] != ELFDATA2LSB:
        raise _bad("only 64-bit little-endian ELF is supported")
    if e_type != ET_REL:
        raise _bad(f"e_type {e_type} is not ET_REL (a relocatable object is required)")
    if e_shoff == 0:
        raise _bad("no section header table")
    if e_shentsize != _SHDR.size:
        raise _bad(f"section header size {e_shentsize}, expected {_SHDR.size}")
    shnum = e_shnum
    if not shnum or e_shstrndx == SHN_XINDEX:   # extended numbering: in section header 0
        _check_range(size, e_shoff, _SHDR.size, "section header 0")
        first = _SHDR.unpack_from(data, e_shoff)
        shnum = shnum or first[5]
        if e_shstrndx == SHN_XINDEX:
            e_shstrndx = first[6]
        if shnum == 0 or shnum > 0xFFFFFF:
            raise _bad(f"implausible section count {shnum}")
    if e_shoff + shnum * _SHDR.size > size:
        _check_range(size, e_shoff, shnum * _SHDR.size, "section header table")

    headers: list[Header] = list(_SHDR.iter_unpack(data[e_shoff : e_shoff + shnum * _SHDR.size]))
    if not 0 <= e_shstrndx < shnum or headers[e_shstrndx][1] != SHT_STRTAB:
        raise _bad(f"section name table index {e_shstrndx} is invalid")
    shstr = headers[e_shstrndx]
    if shstr[4] + shstr[5] > size:
        _check_range(size, shstr[4], shstr[5], "section name table")
    names = _StringTable(data, shstr[4], shstr[5], "section")
    symtab = -1
    index_tables = []      # SHT_SYMTAB_SHNDX
    loaded = []            # content with SHF_ALLOC
    unloaded = []          # other content (notes, comments, debug information)
    relas = []
    groups = []            # read once the symbols are
    for i, (n, t, flags, _a, offset, length, _l, info, align, entsize) in enumerate(headers):
        if offset + length > size and t != SHT_NOBITS and t != SHT_NULL:
            _check_range(size, offset, length, f"section {i}")
        if align & (align - 1):
            raise _bad(f"section {names[n]!r} alignment {align} is not a power of two")
        if t in _TABLE_TYPES:
            if t == SHT_RELA:
                if entsize != _RELA.size or length % _RELA.size:
                    raise _bad(f"relocation section {names[n]!r} entry size {entsize} invalid")
                if not 0 < info < shnum:
                    raise _bad(f"relocation section {names[n]!r} targets section {info}")
                relas.append(i)
            elif t == SHT_GROUP:
                groups.append(i)
            elif t == SHT_SYMTAB:
                if symtab >= 0:
                    raise _bad("more than one symbol table")
                symtab = i
            elif t == SHT_SYMTAB_SHNDX:
                index_tables.append(i)
            else:
                raise _bad(f"REL section {names[n]!r}: only RELA relocations are supported")
        elif t == SHT_STRTAB or t == SHT_NULL:
            continue
        elif flags & SHF_ALLOC:
            loaded.append(i)
        else:
            unloaded.append(i)

    # LLVM names sections and symbols from one string table: split it once
    symbols = (_read_symbols(data, headers, symtab, index_tables, names, e_shstrndx)
               if symtab >= 0 else [])
    obj = ObjectFile(data, e_machine, headers, names, symbols, loaded, unloaded, relas)
    if groups:
        obj.groups = [_read_group(obj, i) for i in groups]
    return obj


def _read_symbols(data: bytes, headers: list[Header], symtab: int, index_tables: list[int],
                  section_names: _StringTable, section_names_index: int) -> list[Symbol]:
    _n, _t, _f, _a, offset, size, link, _info, _align, entsize = headers[symtab]
    if entsize != _SYM.size or size % _SYM.size:
        raise _bad(f"symbol table entry size {entsize} / size {size} invalid")
    nsections = len(headers)
    if not 0 < link < nsections or headers[link][1] != SHT_STRTAB:
        raise _bad("symbol table does not link to a string table")
    if link == section_names_index:
        strings = section_names
    else:
        strings = _StringTable(data, headers[link][4], headers[link][5], "symbol")
    xindex: tuple[int, ...] = ()
    for i in index_tables:
        if headers[i][6] == symtab:
            if headers[i][5] != size // _SYM.size * 4:
                raise _bad("SHT_SYMTAB_SHNDX size does not match the symbol table")
            xindex = struct.unpack_from(f"<{headers[i][5] // 4}I", data, headers[i][4])
    plain_limit = min(nsections, SHN_LORESERVE)     # below it: an ordinary section index
    symbols = []
    table = data[offset : offset + size]
    for index, (name, info, other, shndx, value, sz) in enumerate(_SYM.iter_unpack(table)):
        section: int | None = shndx
        if shndx >= plain_limit:          # special, extended or out of range
            if shndx < SHN_LORESERVE:
                raise _bad(f"symbol {index} refers to section {shndx}, but there are {nsections}")
            if shndx == SHN_XINDEX:
                if index >= len(xindex):
                    raise _bad(f"symbol {index} uses SHN_XINDEX without an index table")
                shndx = section = xindex[index]
                if not 0 < shndx < nsections:
                    raise _bad(f"symbol {index} has extended section index {shndx}, "
                               f"but there are {nsections} sections")
            elif shndx not in (SHN_ABS, SHN_COMMON):
                raise _bad(f"symbol {index} has unsupported special section index {shndx:#x}")
            else:
                section = None
        elif not shndx:
            section = None
        symbols.append(Symbol(index, strings[name] if name else "", value, sz,
                              info >> 4, info & 0xF, other & 0x3, shndx, section))
    return symbols


def _read_group(obj: ObjectFile, index: int) -> Group:
    name = obj.section_name(index)
    _n, _t, _f, _a, offset, size, _link, info, _align, _entsize = obj.headers[index]
    if size < 4 or size % 4:
        raise _bad(f"group section {name!r} has size {size}")
    words = struct.unpack_from(f"<{size // 4}I", obj.data, offset)
    for member in words[1:]:
        if not 0 < member < len(obj.headers):
            raise _bad(f"group {name!r} names section {member}")
    if info >= len(obj.symbols):
        raise _bad(f"group {name!r} signature symbol {info} out of range")
    signature_symbol = obj.symbols[info]
    signature = signature_symbol.name
    if signature_symbol.type == STT_SECTION:
        if signature_symbol.section is None:
            raise _bad(f"group {name!r} is signed by a section symbol of no section")
        signature = obj.section_name(signature_symbol.section)
    return Group(index, signature, bool(words[0] & GRP_COMDAT), list(words[1:]))
