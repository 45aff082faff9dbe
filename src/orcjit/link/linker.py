"""Linking one object set, in named phases.

``LinkedSet`` holds the graphs of one set and walks them through:

1. **definitions** (at add time): choose the set's definition of each name
   (strong over weak over COMMON, first of equals), allocate COMMON
   symbols, give the set its own ``__dso_handle`` if it needs one;
2. **allocate**, once every name is bound: build GOT and PLT, lay blocks
   out per segment, take memory, assign addresses;
3. **fix up** every edge into working memory (after every set that this
   one binds to is allocated too);
4. **finalise**: commit through the memory manager (protections, eh-frame
   registration) -- then the layer publishes the set, or has its static
   constructors run first, after releasing its lock (see :class:`Transition`).

The layer decides *which* definition a name binds to across sets; this
module only applies the decision.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..errors import DuplicateDefinitionError
from ..executor.base import ActionCall
from ..symbols import JITSymbolFlags, SymbolResolver
from . import elf
from .got_plt import build_got_and_plt
from .graph import Block, LinkGraph, Segment
from .memory import DEFAULT_ALIGNMENT, SetMemoryManager
from ..runtime.debugger import debug_object
from .relocate import apply_fixups

STRONG, WEAK, COMMON = 2, 1, 0
#: working memory of every empty segment: nothing is ever written to it (no
#: block, so no edge, is in an empty segment)
_NOTHING = bytearray()


class State(Enum):
    PENDING = "pending"        # added, not linked
    INITIALIZING = "initializing"  # in memory; its closure's static constructors due or running
    FINALIZED = "finalized"    # in memory, constructors run
    REMOVING = "removing"      # destructors running; removal finishes next
    FAILED = "failed"          # linking or constructors failed; only removal is possible
    REMOVED = "removed"


# The states by plain name too, for the linking path: in this Python an
# attribute of a class is looked up without a cache (~70 ns, a global ~8).
PENDING, FINALIZED, FAILED = State.PENDING, State.FINALIZED, State.FAILED


@dataclass(eq=False, slots=True)
class Transition:
    """Sets whose code one thread runs outside the layer's lock.

    Static constructors of sets linked together (state INITIALIZING: the
    sets are published together once every constructor has returned) or
    the destructors of one set being removed (REMOVING). Meanwhile the
    sets' addresses are fixed, but only ``thread`` -- whose constructors may
    call the set's own functions -- and its ``guests`` may use them; other
    threads wait until ``done``.
    """

    sets: list[LinkedSet]
    thread: int                # threading.get_ident() of the thread running the code
    #: constructors: per set (by id), the unpublished sets it binds to (see
    #: ObjectLinkingLayer._construct); empty for destructors
    needs: dict[int, frozenset[int]] = field(default_factory=dict)
    #: other threads that may use the sets meanwhile: each waits for a
    #: transition whose thread waits for it (see ObjectLinkingLayer._wait_for)
    guests: frozenset[int] = frozenset()
    #: names whose rebindable GOT slots wait for the constructors to move to the sets
    rebind: set[str] = field(default_factory=set)
    done: bool = False


@dataclass(slots=True)
class Definition:
    """A set's definition of a global name."""

    owner: LinkedSet
    graph: LinkGraph | None     # None once the set is linked (see settle)
    index: int
    strength: int
    flags: JITSymbolFlags
    settled: tuple[int, int] = (0, 0)   # (address, size) once the set is linked

    @property
    def address(self) -> int:
        if self.graph is None:
            return self.settled[0]
        block = self.graph.symbol_blocks[self.index]
        value = self.graph.symbols[self.index].value
        return value if block is None else block.address + value

    @property
    def size(self) -> int:
        return self.settled[1] if self.graph is None else self.graph.symbols[self.index].size

    def settle(self) -> None:
        """Keep the final address and size, let the graph go."""
        self.settled = (self.address, self.size)
        self.graph = None


#: what a name is bound to for linking: a definition in JIT memory, or an address
Binding = Definition | int


@dataclass(eq=False, slots=True)
class LinkedSet:
    """The graphs of one object set and their linking state."""

    graphs: Sequence[LinkGraph]       # () once settled
    memory: SetMemoryManager
    resolver: SymbolResolver
    definitions: dict[str, Definition] = field(default_factory=dict)
    local_definitions: dict[str, Definition] = field(default_factory=dict)
    state: State = State.PENDING
    error: BaseException | None = None
    # Empty ones are shared tuples: a lazily compiled program keeps a set per
    # function, and every list it keeps is memory and work for the collector.
    initializers: Sequence[int] = ()
    finalizers: Sequence[int] = ()
    relocation_count: int = 0
    rebindable_slots: Sequence[tuple[str, int]] = ()
    handle: Any = None        # the layer's Handle, once added
    debug_registrations: Sequence[Any] = ()
    dylib: str = ""           # JITDylib: hidden symbols are seen only within one
    shared_dso_handle: int = 0    # the DSO it belongs to, if another's (see _define_dso_handle)
    transition: Transition | None = None  # while INITIALIZING or REMOVING
    constructed: bool = False  # its closure's constructors reached it; set only for closures
                               # that have some (removal runs the destructors of such a set
                               # also when it FAILED in a constructor)
    _segment_sizes: Sequence[int] = ()         # laid out (allocate)
    _buffers: Sequence[bytearray] = ()         # working memory (fix_up to finalize)

    # -- phase 1 -----------------------------------------------------------
    def collect_definitions(self) -> None:
        """Choose this set's definition of every name it defines."""
        duplicates = []
        commons: dict[str, list[tuple[LinkGraph, int]]] = {}
        for graph in self.graphs:
            for name, index in graph.definitions.items():
                sym = graph.symbols[index]
                strength = WEAK if sym.bind == elf.STB_WEAK else STRONG
                current = self.definitions.get(name)
                if current is not None:
                    if strength == STRONG and current.strength == STRONG:
                        duplicates.append(name)
                    if strength <= current.strength:
                        continue
                self.definitions[name] = Definition(self, graph, index, strength,
                                                    _flags_of(sym, strength))
            for name, index in graph.commons.items():
                commons.setdefault(name, []).append((graph, index))
        if duplicates:
            raise DuplicateDefinitionError(duplicates)
        for name, places in commons.items():
            if name not in self.definitions:
                self.definitions[name] = self._allocate_common(name, places)
        self._define_dso_handle()

    def _allocate_common(self, name: str, places: list[tuple[LinkGraph, int]]) -> Definition:
        size = max(g.symbols[i].size for g, i in places)
        align = max(g.symbols[i].value for g, i in places) or 1
        graph, index = places[0]
        block = Block(f"COMMON.{name}", None, size, align, Segment.DATA)
        graph.blocks.append(block)
        graph.symbol_blocks[index] = block
        graph.symbols[index].value = 0
        return Definition(self, graph, index, COMMON, JITSymbolFlags.EXPORTED | JITSymbolFlags.COMMON)

    def _define_dso_handle(self) -> None:
        """Each set is its own "DSO": ``__cxa_atexit`` registrations name it.

        Only code that mentions ``__dso_handle`` can register, so only such
        a set gets one -- unless its resolver names the DSO it belongs to
        (``dso_handle``: the partitions of a lazily compiled module share
        their module set's).
        """
        if "__dso_handle" in self.definitions or not self.references_dso_handle:
            return
        self.shared_dso_handle = getattr(self.resolver, "dso_handle", 0)
        if self.shared_dso_handle:
            return
        graph = self.graphs[0]
        block = Block("$__dso_handle", bytes(8), 8, 8, Segment.RODATA)
        graph.blocks.append(block)
        index = graph.add_symbol("__dso_handle", block, 0)
        self.local_definitions["__dso_handle"] = Definition(self, graph, index, STRONG,
                                                            JITSymbolFlags.NONE)

    @property
    def references_dso_handle(self) -> bool:
        for graph in self.graphs:
            if "__dso_handle" in graph.references:
                return True
        return False

    def referenced_names(self) -> set[str]:
        """Every global name this set's code may bind to something."""
        names: set[str] = set()
        for graph in self.graphs:
            names.update(graph.references)
            names.update(graph.definitions)
            names.update(graph.commons)
        names.difference_update(self.local_definitions)
        return names

    def weak_references(self) -> set[str]:
        """Undefined weak references: they may stay unresolved (address 0)."""
        weak = set()
        for graph in self.graphs:
            for name, index in graph.references.items():
                if graph.symbols[index].bind == elf.STB_WEAK:
                    weak.add(name)
        return weak

    @property
    def dso_handle(self) -> int:
        definition = self.local_definitions.get("__dso_handle")
        return definition.address if definition else 0

    # -- phases 2-3 ----------------------------------------------------------
    def allocate(self, bindings: dict[str, Binding], in_reach: Callable[[int], bool]) -> None:
        """Build GOT and PLT, lay out, take memory: every block gets its address.

        References to a weak or COMMON definition go through GOT slots (calls
        through PLT stubs) and are listed in ``rebindable_slots``, so a strong
        definition added later can take them over.
        """
        for graph in self.graphs:
            def needs_stub(index: int, graph: LinkGraph = graph) -> bool:
                sym = graph.symbols[index]
                if sym.bind == elf.STB_LOCAL or graph.symbol_blocks[index] is not None \
                        and sym.name not in bindings:
                    # in this graph's memory, or (a local absolute symbol) anywhere
                    return graph.symbol_blocks[index] is None and not in_reach(sym.value)
                binding = bindings.get(sym.name, 0)
                if isinstance(binding, int):
                    return not in_reach(binding)
                if binding.flags in _ABSOLUTE_FLAGS:
                    return not in_reach(binding.address)
                return binding.strength != STRONG
            build_got_and_plt(graph, needs_stub)
        self._allocate()

    def fix_up(self, bindings: dict[str, Binding]) -> None:
        """Copy content to working memory and apply every edge (all targets allocated)."""
        self._buffers = buffers = [_NOTHING, _NOTHING, _NOTHING]
        for segment, size in enumerate(self._segment_sizes):
            if size:
                buffers[segment] = bytearray(size)
        for graph in self.graphs:
            for block in graph.blocks:
                if block.content:
                    buffers[block.segment][
                        block.segment_offset:block.segment_offset + len(block.content)] = block.content
        has_init_arrays = False
        for graph in self.graphs:
            addresses = self._addresses(graph, bindings)

            def size_of(index: int, graph: LinkGraph = graph) -> int:
                """Size of what symbol ``index`` is bound to (SIZE32/64 only ask)."""
                sym = graph.symbols[index]
                binding = None if sym.bind == elf.STB_LOCAL else bindings.get(sym.name)
                return binding.size if isinstance(binding, Definition) else sym.size
            self.relocation_count += apply_fixups(graph, addresses, size_of, self._buffers)
            if graph.got_entries:
                slots = self._rebindable_slots_of(graph, graph.got_entries, bindings, addresses)
                if slots:
                    self.rebindable_slots = [*self.rebindable_slots, *slots]
            has_init_arrays = has_init_arrays or bool(graph.initializers or graph.finalizers)
        if has_init_arrays:
            self._collect_init_entries()

    def external_calls(self, bindings: dict[str, Binding]) -> list[tuple[str, int]]:
        """Direct rel32 calls to addresses outside JIT definitions, as (name,
        address of the field); asked only when someone observes call sites."""
        calls = []
        for graph in self.graphs:
            symbols = graph.symbols
            for block, offset, target in graph.direct_calls:
                sym = symbols[target]
                if sym.bind != elf.STB_LOCAL and isinstance(bindings.get(sym.name), int):
                    calls.append((sym.name, block.address + offset))
        return calls

    @staticmethod
    def _rebindable_slots_of(graph: LinkGraph, got_entries: dict[int, int],
                             bindings: dict[str, Binding],
                             addresses: dict[int, int]) -> list[tuple[str, int]]:
        """The GOT slots of ``graph`` (its ``got_entries``) bound to a weak or
        COMMON definition."""
        slots = []
        for target, entry in got_entries.items():
            name = graph.symbols[target].name
            binding = bindings.get(name)
            if isinstance(binding, Definition) and binding.strength != STRONG:
                slots.append((name, addresses[entry]))
        return slots

    def _allocate(self) -> None:
        sizes = [0, 0, 0]
        alignments = [DEFAULT_ALIGNMENT] * 3
        for graph in self.graphs:
            for block in graph.blocks:
                segment = block.segment
                alignment = block.alignment
                offset = -(-sizes[segment] // alignment) * alignment
                block.segment_offset = offset
                sizes[segment] = offset + block.size
                alignments[segment] = max(alignments[segment], alignment)
        self._segment_sizes = sizes
        bases = self.memory.allocate(sizes, alignments)
        for graph in self.graphs:
            for block in graph.blocks:
                block.address = bases[block.segment] + block.segment_offset

    def _addresses(self, graph: LinkGraph, bindings: dict[str, Binding]) -> dict[int, int]:
        """Address of what each symbol an edge of ``graph`` targets (and its
        GOT base) is bound to, by symbol index: only those (objects define
        and reference more symbols than their edges target)."""
        addresses: dict[int, int] = {}
        symbols, symbol_blocks, local = graph.symbols, graph.symbol_blocks, self.local_definitions
        for block in graph.blocks:
            for edge in block.edges:
                index = edge[2]
                if index in addresses:
                    continue
                sym = symbols[index]
                binding = None if sym.bind == elf.STB_LOCAL else bindings.get(sym.name)
                if binding is None:
                    target_block = symbol_blocks[index]
                    if target_block is not None:
                        addresses[index] = target_block.address + sym.value
                    elif sym.name in local:
                        addresses[index] = local[sym.name].address
                    else:
                        addresses[index] = sym.value if sym.is_absolute else 0
                elif isinstance(binding, int):
                    addresses[index] = binding
                else:
                    addresses[index] = binding.address
        got = graph.got_symbol
        if got is not None:      # a symbol of the GOT block (see got_plt.add_to_graph)
            addresses[got] = symbol_blocks[got].address + symbols[got].value  # type: ignore[union-attr]
        return addresses

    def _collect_init_entries(self) -> None:
        """Read the relocated init/fini arrays in the order they must run."""
        def pointers(entries) -> list[int]:
            out: list[int] = []
            for entry in sorted(entries, key=lambda e: e.priority):
                block = entry.block
                data = self._buffers[block.segment][block.segment_offset:
                                                    block.segment_offset + block.size]
                values = [v for (v,) in struct.iter_unpack("<Q", data[:len(data) // 8 * 8])]
                if entry.reverse:
                    values.reverse()
                out.extend(v for v in values if v not in (0, (1 << 64) - 1))
            return out
        initializers: list[int] = []
        finalizers: list[int] = []
        for graph in self.graphs:
            initializers.extend(pointers(graph.initializers))
            finalizers.extend(pointers(graph.finalizers))
        finalizers.reverse()
        self.initializers, self.finalizers = initializers, finalizers

    # -- phase 4 ---------------------------------------------------------
    def finalize(self, register_frame: int, deregister_frame: int) -> None:
        """Commit memory with final protections; register eh-frames."""
        actions = []
        for graph in self.graphs:
            if graph.eh_frame is not None and graph.eh_frame.size > 4 and register_frame:
                address = graph.eh_frame.address
                actions.append((ActionCall(register_frame, (address,)),
                                ActionCall(deregister_frame, (address,))))
        self.memory.finalize(self._buffers, actions)
        self._buffers = self._segment_sizes = ()

    def debug_objects(self) -> list[bytes]:
        """Debug objects (see runtime.debugger) of the graphs that carry DWARF."""
        images = []
        for graph in self.graphs:
            if graph.debug_sections and ".debug_info" in graph.debug_sections:
                images.append(debug_object(graph.object_data, {
                    index: block.address for index, block in graph.section_blocks.items()}))
        return images

    def settle(self) -> None:
        """After linking: keep what lookups and removal need, free the graphs
        (their blocks, symbols and edges) -- a long-lived JIT holds many sets."""
        for definition in self.definitions.values():
            definition.settle()
        for definition in self.local_definitions.values():
            definition.settle()
        self.graphs = ()

    def release_memory(self) -> None:
        self.memory.deallocate()


#: every combination, made once: combining IntFlag members costs ~20 us each time
_FLAGS = [JITSymbolFlags(value) for value in range(2 * max(JITSymbolFlags))]
_EXPORTED, _WEAK, _CALLABLE, _ABSOLUTE = (flag.value for flag in (
    JITSymbolFlags.EXPORTED, JITSymbolFlags.WEAK, JITSymbolFlags.CALLABLE, JITSymbolFlags.ABSOLUTE))
#: the combinations with ABSOLUTE (``flags & ABSOLUTE`` on a flag is two calls of enum's Python)
_ABSOLUTE_FLAGS = frozenset(flags for flags in _FLAGS if flags.value & _ABSOLUTE)


def _flags_of(sym: elf.Symbol, strength: int) -> JITSymbolFlags:
    flags = 0
    if sym.visibility == elf.STV_DEFAULT or sym.visibility == elf.STV_PROTECTED:
        flags = _EXPORTED
    if strength == WEAK:
        flags |= _WEAK
    if sym.type == elf.STT_FUNC or sym.type == elf.STT_GNU_IFUNC:
        flags |= _CALLABLE
    if sym.shndx == elf.SHN_ABS and sym.section is None:    # (sym.is_absolute, without a call)
        flags |= _ABSOLUTE
    return _FLAGS[flags]
