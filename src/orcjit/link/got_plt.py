"""GOT and PLT building: rewrite request edges into plain ones.

Every edge that asks for a GOT entry gets one (one per target per graph):
an 8-byte slot in a read-only GOT block holding a POINTER64 edge to the
target, so the fix-up pass fills it like any other pointer. A branch whose
target is out of reach of the JIT's memory (libc, a Python callback) is sent
to a PLT stub, ``jmp *slot(%rip)``, that the linker writes next to the code.
After this pass the graph holds only final edge kinds.
"""

from __future__ import annotations

from collections.abc import Callable

from .edges import GOT_REQUESTS, PLT_REQUESTS, USES_GOT_BASE, EdgeKind
from .graph import Block, LinkGraph, Segment


# kinds by plain name for the loop over edges (a class attribute is looked up
# without a cache in this Python: ~70 ns, a global ~8)
_GOT_LOAD, _BRANCH32, _DELTA32 = EdgeKind.GOT_LOAD_DELTA32, EdgeKind.BRANCH32, EdgeKind.DELTA32
_CODE = Segment.CODE


def build_got_and_plt(graph: LinkGraph, needs_stub: Callable[[int], bool]) -> None:
    """Add GOT and PLT blocks to ``graph`` and retarget its request edges.

    ``needs_stub(symbol_index)`` tells whether references to that symbol
    must stay indirect -- a branch through a PLT stub, a load through its
    GOT entry: the target may be too far for a 32-bit displacement, or may
    be re-bound later (a weak definition). A load of a symbol that need not
    is relaxed where the architecture can (``GOT_LOAD_DELTA32``).
    """
    tables: _Tables | None = None          # made for the first entry or stub
    direct_calls: list[tuple[Block, int, int]] = []
    indirect: dict[int, bool] = {}          # needs_stub's answers (a target is asked often)
    needs_got_base = graph.got_symbol is not None
    relax: Callable[[bytearray, int], bool] = getattr(graph.arch, "relax_got_load", _cannot_relax)
    for block in list(graph.blocks):
        relaxable = block.segment == _CODE and bool(block.content)
        for edge in block.edges:
            kind = edge[1]
            if kind in PLT_REQUESTS or (kind == _GOT_LOAD and relaxable):
                # the requests that depend on where the target is: asked once per target
                target = edge[2]
                stays_indirect = indirect.get(target)
                if stays_indirect is None:
                    stays_indirect = indirect[target] = needs_stub(target)
                if kind in PLT_REQUESTS:
                    if stays_indirect:
                        tables = tables or _Tables(graph)
                        edge[2] = tables.plt_stub(target)
                    elif kind == _BRANCH32:
                        direct_calls.append((block, edge[0], target))
                    edge[1] = PLT_REQUESTS[kind]
                    if kind in USES_GOT_BASE:
                        needs_got_base = True
                    continue
                if not stays_indirect:
                    code = block.content
                    if not isinstance(code, bytearray):      # (the object's bytes stay)
                        code = block.content = bytearray(code or b"")
                    if relax(code, edge[0]):
                        edge[1] = _DELTA32       # to the target itself: no GOT entry
                        continue
                # (a load that stays: through a GOT entry, as any GOT request)
            if kind in GOT_REQUESTS:
                tables = tables or _Tables(graph)
                entry = tables.got_entries.get(edge[2])      # (a target's later requests)
                edge[2] = tables.got_entry(edge[2]) if entry is None else entry
                edge[1] = GOT_REQUESTS[kind]
            if kind in USES_GOT_BASE:
                needs_got_base = True
    if direct_calls:
        graph.direct_calls = direct_calls
    if tables is None and needs_got_base:
        tables = _Tables(graph)
    if tables is not None:
        tables.add_to_graph(needs_got_base)


def _cannot_relax(code: bytearray, offset: int) -> bool:
    """An architecture without GOT-load relaxation keeps every load."""
    return False


class _Tables:
    """The GOT and PLT of one graph, grown an entry at a time."""

    __slots__ = ("got", "got_entries", "graph", "plt", "plt_stubs")

    def __init__(self, graph: LinkGraph):
        self.graph = graph
        self.got: Block | None = None
        self.plt: Block | None = None
        self.got_entries: dict[int, int] = {}    # target -> GOT entry symbol
        self.plt_stubs: dict[int, int] = {}      # target -> PLT stub symbol

    def got_entry(self, target: int) -> int:
        entry = self.got_entries.get(target)
        if entry is None:
            if self.got is None:
                self.got = _empty_got()
            got, graph = self.got, self.graph
            offset = got.size
            got.size += graph.arch.GOT_ENTRY_SIZE
            got.edges.append([offset, EdgeKind.POINTER64, target, 0])
            entry = self.got_entries[target] = graph.add_symbol(
                f"$got.{graph.symbols[target].name}", got, offset)
        return entry

    def plt_stub(self, target: int) -> int:
        stub = self.plt_stubs.get(target)
        if stub is None:
            graph, arch = self.graph, self.graph.arch
            if self.plt is None:
                self.plt = Block("$__PLT", None, 0, arch.PLT_STUB_ALIGN, Segment.CODE)
            plt = self.plt
            offset = plt.size
            plt.size += arch.PLT_STUB_SIZE
            slot = self.got_entry(target)
            plt.edges.append([offset + arch.PLT_STUB_EDGE_OFFSET, EdgeKind.DELTA32, slot,
                              arch.PLT_STUB_EDGE_ADDEND])
            stub = self.plt_stubs[target] = graph.add_symbol(
                f"$plt.{graph.symbols[target].name}", plt, offset)
        return stub

    def add_to_graph(self, needs_got_base: bool) -> None:
        """Append the blocks made, with their content; the GOT also when only
        its base is needed (``_GLOBAL_OFFSET_TABLE_``)."""
        graph, arch = self.graph, self.graph.arch
        if self.got_entries:
            graph.got_entries = self.got_entries
        got = self.got
        if needs_got_base and got is None:
            got = self.got = _empty_got()
        if got is not None:
            if graph.got_symbol is None:
                graph.got_symbol = graph.add_symbol("_GLOBAL_OFFSET_TABLE_", got, 0)
            else:
                graph.symbol_blocks[graph.got_symbol] = got
                graph.symbols[graph.got_symbol].value = 0
            got.size = max(got.size, arch.GOT_ENTRY_SIZE)
            got.content = bytes(got.size)
            graph.blocks.append(got)
        if self.plt is not None:
            self.plt.content = arch.PLT_STUB * (self.plt.size // arch.PLT_STUB_SIZE)
            graph.blocks.append(self.plt)


def _empty_got() -> Block:
    return Block("$__GOT", None, 0, 8, Segment.RODATA)
