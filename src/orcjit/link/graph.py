"""The link graph: an object's allocatable sections as blocks, with edges.

``build_graph`` reads an :class:`~orcjit.link.elf.ObjectFile` into blocks
(one per allocatable section, tagged with the segment it will live in) and
turns each RELA entry into an edge ``[offset, kind, target, addend]`` whose
target is a symbol index of the graph. Later passes add blocks (GOT, PLT,
COMMON) and retarget edges; the fix-up pass finally evaluates them.
COMDAT groups already provided elsewhere are dropped here, with the
``.eh_frame`` records that described their code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from types import ModuleType

from ..errors import InvalidObjectError, UnsupportedError
from ..runtime.eh_frame import prune_fdes
from . import elf
from .edges import WIDTH


class Segment(IntEnum):
    """Where a block lives once loaded; one protection each (W^X)."""

    CODE = 0     # read + execute (also the unwind tables of the code: .eh_frame)
    RODATA = 1   # read only (also relocated-then-sealed data: GOT, .data.rel.ro, init arrays)
    DATA = 2     # read + write


@dataclass(slots=True, eq=False)
class Block:
    """A contiguous piece of content that moves as one unit."""

    name: str
    content: bytes | bytearray | None   # None: zero-filled (bss)
    size: int
    alignment: int
    segment: Segment
    edges: list[list[int]] = field(default_factory=list)
    address: int = 0          # target address, set by layout
    segment_offset: int = 0   # offset in the segment's working memory


@dataclass(slots=True)
class InitEntry:
    """An init/fini pointer array and how it orders (GNU ld semantics)."""

    block: Block
    priority: int
    reverse: bool     # .ctors/.dtors run back to front


@dataclass(slots=True, eq=False)
class LinkGraph:
    """One object, ready to be resolved, laid out and fixed up."""

    name: str
    arch: ModuleType
    blocks: list[Block]
    symbols: list[elf.Symbol]
    symbol_blocks: list[Block | None]      # per symbol: the block defining it
    definitions: dict[str, int]            # exported candidates: name -> symbol index
    references: dict[str, int]             # names to resolve outside this graph
    commons: dict[str, int]                # COMMON symbols: name -> symbol index
    section_blocks: dict[int, Block]       # section index -> block
    object_data: bytes = b""               # the object itself, for debug objects
    # What most objects have none of is empty or None, replaced when there
    # is some: no containers to make for every lazily compiled function.
    initializers: Sequence[InitEntry] = ()
    finalizers: Sequence[InitEntry] = ()
    eh_frame: Block | None = None
    debug_sections: dict[str, bytes] | None = None
    got_symbol: int | None = None         # _GLOBAL_OFFSET_TABLE_, if referenced
    got_entries: dict[int, int] | None = None       # target -> GOT entry symbol
    direct_calls: Sequence[tuple[Block, int, int]] = ()   # rel32 calls
    function_count: int = 0               # functions defined (for statistics)

    def add_symbol(self, name: str, block: Block | None, offset: int, size: int = 0) -> int:
        """Add a synthetic local symbol (GOT entry, stub); returns its index."""
        index = len(self.symbols)
        self.symbols.append(elf.Symbol(index, name, offset, size, elf.STB_LOCAL,
                                       elf.STT_NOTYPE, elf.STV_DEFAULT,
                                       elf.SHN_ABS if block is None else elf.SHN_UNDEF))
        self.symbol_blocks.append(block)
        return index


#: (by plain name for build_graph: a class attribute is looked up without a
#: cache in this Python, ~70 ns against ~8 for a global)
_CODE = Segment.CODE

_INIT_PREFIXES = {".init_array": False, ".ctors": True, ".preinit_array": False}
_FINI_PREFIXES = {".fini_array": False, ".dtors": True}
_INIT_FINI_STARTS = tuple(_INIT_PREFIXES) + tuple(_FINI_PREFIXES)
_INIT_FINI_TYPES = frozenset({elf.SHT_INIT_ARRAY, elf.SHT_FINI_ARRAY, elf.SHT_PREINIT_ARRAY})
#: sections that are tables for the linker, never loaded
_NOT_LOADED = frozenset({elf.SHT_GROUP, elf.SHT_RELA, elf.SHT_SYMTAB, elf.SHT_STRTAB,
                         elf.SHT_NULL, elf.SHT_SYMTAB_SHNDX})


def _segment_of(flags: int, is_eh_frame: bool, name: str,
                init_kind: tuple[bool, int, bool] | None) -> Segment:
    if flags & elf.SHF_EXECINSTR:
        return Segment.CODE
    # Unwind tables go with the code they describe (read-only, as in GNU ld's
    # classic text segment): a lazily compiled function then needs one
    # allocation, not a code and a read-only one (5 us less per function).
    if is_eh_frame and not flags & elf.SHF_WRITE:
        return Segment.CODE
    # init/fini arrays and .data.rel.ro are only written by the linker: sealed once relocated
    if flags & elf.SHF_WRITE and init_kind is None and not name.startswith(".data.rel.ro"):
        return Segment.DATA
    return Segment.RODATA


def _init_kind(section_type: int, name: str) -> tuple[bool, int, bool] | None:
    """(is_initializer, priority, reverse) for init/fini array sections."""
    if section_type == elf.SHT_INIT_ARRAY or section_type == elf.SHT_PREINIT_ARRAY:
        default: tuple[bool, int, bool] | None = (True, 65535, False)
    elif section_type == elf.SHT_FINI_ARRAY:
        default = (False, 65535, False)
    else:
        default = None
    if not name.startswith(_INIT_FINI_STARTS):
        return default
    for table, is_init in ((_INIT_PREFIXES, True), (_FINI_PREFIXES, False)):
        for prefix, reverse in table.items():
            if name == prefix:
                return is_init, 65535, reverse
            if name.startswith(prefix + ".") and name[len(prefix) + 1:].isdigit():
                priority = int(name[len(prefix) + 1:])
                # .ctors.N corresponds to .init_array.(65535-N)
                return is_init, (65535 - priority) if reverse else priority, reverse
    return default


def build_graph(obj: elf.ObjectFile, arch: ModuleType, name: str = "<object>",
                keep_comdat: Callable[[str], bool] = lambda signature: True) -> LinkGraph:
    """Read an object into a link graph.

    ``keep_comdat(signature)`` says whether a COMDAT group is provided by
    this graph (True) or already elsewhere (False: its sections are dropped
    and its symbols become references).
    """
    if obj.machine != arch.MACHINE:
        raise UnsupportedError(f"{name}: object is for machine {obj.machine}, "
                               f"this linker targets {arch.NAME} ({arch.MACHINE})")
    dropped: set[int] = set()
    for group in obj.groups:
        if group.is_comdat and not keep_comdat(group.signature):
            dropped.update(group.members)

    blocks: list[Block] = []
    section_blocks: dict[int, Block] = {}
    graph = LinkGraph(name, arch, blocks, list(obj.symbols), [], {}, {}, {}, section_blocks,
                      obj.data)
    data = obj.data
    headers = obj.headers
    for index in obj.unloaded:
        section_name = obj.section_name(index)
        if section_name.startswith(".debug") and index not in dropped:
            if graph.debug_sections is None:
                graph.debug_sections = {}
            _n, _t, _f, _a, offset, size, _l, _i, _align, _e = headers[index]
            graph.debug_sections[section_name] = data[offset:offset + size]
    for index in obj.loaded:
        if dropped and index in dropped:
            continue
        _n, t, flags, _a, offset, size, _l, _i, align, _e = headers[index]
        section_name = obj.section_name(index)
        if flags & elf.SHF_TLS:
            raise UnsupportedError(f"{name}: thread-local storage (section {section_name!r}) "
                                   "is not supported yet")
        kind = (_init_kind(t, section_name)
                if t in _INIT_FINI_TYPES or section_name.startswith(_INIT_FINI_STARTS) else None)
        is_eh_frame = t == elf.SHT_X86_64_UNWIND or section_name == ".eh_frame"
        segment = (_CODE if flags & elf.SHF_EXECINSTR
                   else _segment_of(flags, is_eh_frame, section_name, kind))
        block = Block(section_name, None if t == elf.SHT_NOBITS else data[offset:offset + size],
                      size, align or 1, segment)
        section_blocks[index] = block
        blocks.append(block)
        if kind is not None:
            is_init, priority, reverse = kind
            entry = InitEntry(block, priority, reverse)
            if is_init:
                graph.initializers = [*graph.initializers, entry]
            else:
                graph.finalizers = [*graph.finalizers, entry]
        if is_eh_frame:
            graph.eh_frame = block

    _read_symbols(graph, section_blocks, dropped)
    _read_edges(graph, obj, section_blocks, dropped)
    return graph


def _read_symbols(graph: LinkGraph, section_blocks: dict[int, Block], dropped: set[int]) -> None:
    symbols = graph.symbols
    symbol_blocks: list[Block | None] = [None] * len(symbols)
    graph.symbol_blocks = symbol_blocks
    block_of = section_blocks.get
    functions = 0
    for sym in symbols:
        section = sym.section
        if section is not None:
            block = block_of(section)
            if block is not None:           # defined in a loaded section
                symbol_blocks[sym.index] = block
                if sym.value > block.size:
                    raise InvalidObjectError(f"{graph.name}: symbol {sym.name!r} lies outside "
                                             f"its section {block.name!r}")
                if sym.type == elf.STT_FUNC:
                    functions += 1
                if sym.bind != elf.STB_LOCAL and sym.name:
                    graph.definitions[sym.name] = sym.index
                continue
        # no block: undefined (most of a real object's symbols), absolute, COMMON,
        # or in a section not loaded
        if sym.type == elf.STT_TLS:
            raise UnsupportedError(f"{graph.name}: thread-local symbol {sym.name!r} "
                                   "is not supported yet")
        if sym.bind == elf.STB_LOCAL or not sym.name:
            continue
        if section is not None:
            if section not in dropped:
                raise InvalidObjectError(f"{graph.name}: global symbol {sym.name!r} is defined "
                                         f"in section {section}, which is not loaded")
        elif sym.shndx == elf.SHN_COMMON:
            if sym.value & (sym.value - 1):
                raise InvalidObjectError(f"{graph.name}: COMMON symbol {sym.name!r} has "
                                         f"alignment {sym.value}, not a power of two")
            graph.commons[sym.name] = sym.index
            continue
        elif sym.shndx == elf.SHN_ABS:
            graph.definitions[sym.name] = sym.index
            continue
        # undefined, or defined in a dropped COMDAT section: a reference
        if sym.name == "_GLOBAL_OFFSET_TABLE_":
            graph.got_symbol = sym.index
        else:
            graph.references[sym.name] = sym.index
    graph.function_count = functions


def _read_edges(graph: LinkGraph, obj: elf.ObjectFile, section_blocks: dict[int, Block],
                dropped: set[int]) -> None:
    relocations = graph.arch.RELOCATIONS
    unsupported = graph.arch.UNSUPPORTED
    symbols = graph.symbols
    nsyms = len(symbols)
    discarded_targets = {s.index for s in symbols
                         if s.bind == elf.STB_LOCAL and s.section in dropped} if dropped else set()
    headers = obj.headers
    for rela in obj.relas:
        block = section_blocks.get(headers[rela][7])
        if block is None:
            continue          # relocations of dropped or non-allocated sections: not read
        edges = block.edges
        limit = block.size
        # the rows themselves, checked here: no entry tuples on the way to edges
        for offset, info, addend in obj.relocation_rows(rela):
            sym = info >> 32
            if sym >= nsyms:
                raise obj.bad_relocation_symbol(rela, sym)
            rtype = info & 0xFFFFFFFF
            mapped = relocations.get(rtype)
            if mapped is None:
                if rtype == 0:
                    continue                     # R_*_NONE
                what = unsupported.get(rtype, f"type {rtype}")
                raise UnsupportedError(f"{graph.name}: relocation {what} in {block.name!r} "
                                       "is not supported")
            kind = mapped[1]
            if offset + WIDTH[kind] > limit:
                raise InvalidObjectError(f"{graph.name}: relocation {mapped[0]} at "
                                         f"{block.name}+{offset:#x} overruns the section")
            edges.append([offset, kind, sym, addend])
        if block is graph.eh_frame and discarded_targets:
            prune_fdes(block, discarded_targets, graph.name)
        elif discarded_targets:
            for edge in edges:
                if edge[2] in discarded_targets:
                    raise InvalidObjectError(
                        f"{graph.name}: {block.name!r} refers to a discarded COMDAT section "
                        f"through symbol {symbols[edge[2]].name!r}")
    if graph.eh_frame is not None:
        block = graph.eh_frame
        block.content = bytes(block.content or b"") + b"\0\0\0\0"   # terminator for libgcc
        block.size += 4
