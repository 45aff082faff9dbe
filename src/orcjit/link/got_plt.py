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


def build_got_and_plt(graph: LinkGraph, needs_stub: Callable[[int], bool]) -> None:
    """Add GOT and PLT blocks to ``graph`` and retarget its request edges.

    ``needs_stub(symbol_index)`` tells whether a branch to that symbol must
    go through a PLT stub: the target may be too far for a 32-bit
    displacement, or may be re-bound later (a weak definition).
    """
    arch = graph.arch
    got_entries: dict[int, int] = {}
    direct_calls: list[tuple[Block, int, int]] = []
    plt_stubs: dict[int, int] = {}
    got: Block | None = None
    plt: Block | None = None

    def got_entry(target: int) -> int:
        nonlocal got
        entry = got_entries.get(target)
        if entry is None:
            if got is None:
                got = _empty_got()
            offset = got.size
            got.size += arch.GOT_ENTRY_SIZE
            got.edges.append([offset, EdgeKind.POINTER64, target, 0])
            entry = got_entries[target] = graph.add_symbol(
                f"$got.{graph.symbols[target].name}", got, offset)
        return entry

    def plt_stub(target: int) -> int:
        nonlocal plt
        stub = plt_stubs.get(target)
        if stub is None:
            if plt is None:
                plt = Block("$__PLT", None, 0, arch.PLT_STUB_ALIGN, Segment.CODE)
            offset = plt.size
            plt.size += arch.PLT_STUB_SIZE
            slot = got_entry(target)
            plt.edges.append([offset + arch.PLT_STUB_EDGE_OFFSET, EdgeKind.DELTA32, slot,
                              arch.PLT_STUB_EDGE_ADDEND])
            stub = plt_stubs[target] = graph.add_symbol(
                f"$plt.{graph.symbols[target].name}", plt, offset)
        return stub

    needs_got_base = graph.got_symbol is not None
    for block in list(graph.blocks):
        for edge in block.edges:
            kind = edge[1]
            if kind in GOT_REQUESTS:
                edge[2] = got_entry(edge[2])
                edge[1] = GOT_REQUESTS[kind]
            elif kind in PLT_REQUESTS:
                if needs_stub(edge[2]):
                    edge[2] = plt_stub(edge[2])
                elif kind == EdgeKind.BRANCH32:
                    direct_calls.append((block, edge[0], edge[2]))
                edge[1] = PLT_REQUESTS[kind]
            if kind in USES_GOT_BASE:
                needs_got_base = True

    if got_entries:
        graph.got_entries = got_entries
    if direct_calls:
        graph.direct_calls = direct_calls
    if needs_got_base and got is None:
        got = _empty_got()
    if got is not None:
        if graph.got_symbol is None:
            graph.got_symbol = graph.add_symbol("_GLOBAL_OFFSET_TABLE_", got, 0)
        else:
            graph.symbol_blocks[graph.got_symbol] = got
            graph.symbols[graph.got_symbol].value = 0
        got.size = max(got.size, arch.GOT_ENTRY_SIZE)
        got.content = bytes(got.size)
        graph.blocks.append(got)
    if plt is not None:
        plt.content = arch.PLT_STUB * (plt.size // arch.PLT_STUB_SIZE)
        graph.blocks.append(plt)


def _empty_got() -> Block:
    return Block("$__GOT", None, 0, 8, Segment.RODATA)
