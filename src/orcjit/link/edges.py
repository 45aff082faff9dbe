"""Target-independent edge kinds: the fix-ups the linker knows how to apply.

Each architecture maps its relocation types onto these kinds (see
``orcjit.arch``); GOT and PLT building rewrites the "request" kinds into
plain ones before fix-up, so the fix-up pass only evaluates the formulas
below. Symbols: S target address, A addend, P address of the fixed-up
field, GOT the graph's GOT base, Z the target symbol's size.

========================  ================  =====  =================
kind                      formula           bytes  range check
========================  ================  =====  =================
POINTER64                 S + A             8      none (wraps)
POINTER32                 S + A             4      unsigned 32
POINTER32_SIGNED          S + A             4      signed 32
POINTER16 / POINTER8      S + A             2 / 1  signed or unsigned
DELTA64                   S + A - P         8      none
DELTA32                   S + A - P         4      signed 32
DELTA16 / DELTA8          S + A - P         2 / 1  signed
DELTA64_FROM_GOT          S + A - GOT       8      none
SIZE64 / SIZE32           Z + A             8 / 4  none / unsigned 32
========================  ================  =====  =================

Request kinds, rewritten before fix-up:

- ``BRANCH32``: a call; DELTA32 to S, or to a PLT stub when S is out of reach.
- ``GOT_DELTA32`` / ``GOT_DELTA64``: DELTA to the GOT entry holding S.
- ``GOT_LOAD_DELTA32``: as GOT_DELTA32, from an instruction that loads the
  entry; where S is in reach and stays bound, the architecture may rewrite
  the load to compute S itself (x86-64: ``mov`` to ``lea``) and the edge
  becomes DELTA32 to S -- no GOT entry, one memory access less.
- ``GOT_ENTRY_FROM_GOT64``: DELTA64_FROM_GOT to the GOT entry holding S.
- ``PLT_FROM_GOT64``: DELTA64_FROM_GOT to S's PLT stub (or S).
"""

from __future__ import annotations

from enum import IntEnum


class EdgeKind(IntEnum):
    POINTER64 = 1
    POINTER32 = 2
    POINTER32_SIGNED = 3
    POINTER16 = 4
    POINTER8 = 5
    DELTA64 = 6
    DELTA32 = 7
    DELTA16 = 8
    DELTA8 = 9
    DELTA64_FROM_GOT = 10
    SIZE64 = 11
    SIZE32 = 12
    # requests, rewritten by the GOT/PLT pass
    BRANCH32 = 20
    GOT_DELTA32 = 21
    GOT_DELTA64 = 22
    GOT_ENTRY_FROM_GOT64 = 23
    PLT_FROM_GOT64 = 24
    GOT_LOAD_DELTA32 = 25


#: kinds that need a GOT entry for their target, and what they become
GOT_REQUESTS: dict[int, EdgeKind] = {
    EdgeKind.GOT_DELTA32: EdgeKind.DELTA32,
    EdgeKind.GOT_LOAD_DELTA32: EdgeKind.DELTA32,
    EdgeKind.GOT_DELTA64: EdgeKind.DELTA64,
    EdgeKind.GOT_ENTRY_FROM_GOT64: EdgeKind.DELTA64_FROM_GOT,
}

#: kinds that go through a PLT stub when the target is out of reach
PLT_REQUESTS: dict[int, EdgeKind] = {
    EdgeKind.BRANCH32: EdgeKind.DELTA32,
    EdgeKind.PLT_FROM_GOT64: EdgeKind.DELTA64_FROM_GOT,
}

#: kinds whose value depends on the GOT base address
USES_GOT_BASE = frozenset({EdgeKind.DELTA64_FROM_GOT, EdgeKind.GOT_ENTRY_FROM_GOT64,
                           EdgeKind.PLT_FROM_GOT64})

#: byte width of every final kind
WIDTH = {
    EdgeKind.POINTER64: 8, EdgeKind.POINTER32: 4, EdgeKind.POINTER32_SIGNED: 4,
    EdgeKind.POINTER16: 2, EdgeKind.POINTER8: 1, EdgeKind.DELTA64: 8,
    EdgeKind.DELTA32: 4, EdgeKind.DELTA16: 2, EdgeKind.DELTA8: 1,
    EdgeKind.DELTA64_FROM_GOT: 8, EdgeKind.SIZE64: 8, EdgeKind.SIZE32: 4,
    EdgeKind.BRANCH32: 4, EdgeKind.GOT_DELTA32: 4, EdgeKind.GOT_DELTA64: 8,
    EdgeKind.GOT_ENTRY_FROM_GOT64: 8, EdgeKind.PLT_FROM_GOT64: 8, EdgeKind.GOT_LOAD_DELTA32: 4,
}
