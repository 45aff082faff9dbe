"""The fix-up pass: evaluate every edge of a graph into working memory.

Runs after layout, when every symbol has a target address. Each final
edge kind (see :mod:`orcjit.link.edges`) has one formula and one range
check; a value that does not fit raises RelocationOverflowError naming the
kind, symbol and place -- never truncated. Writes go to the segment's
working buffer at an offset already bounds-checked against the block.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence

from ..errors import RelocationOverflowError
from .edges import EdgeKind as K
from .graph import LinkGraph

_MASK64 = (1 << 64) - 1

# formula codes
_ABS, _PCREL, _GOTREL, _SIZE = range(4)

# kind -> (formula, packer, wraps to 64 bits)
_FIXUPS: dict[int, tuple[int, struct.Struct, bool]] = {
    K.POINTER64: (_ABS, struct.Struct("<Q"), True),
    K.POINTER32: (_ABS, struct.Struct("<I"), False),
    K.POINTER32_SIGNED: (_ABS, struct.Struct("<i"), False),
    K.DELTA64: (_PCREL, struct.Struct("<Q"), True),
    K.DELTA32: (_PCREL, struct.Struct("<i"), False),
    K.DELTA16: (_PCREL, struct.Struct("<h"), False),
    K.DELTA8: (_PCREL, struct.Struct("<b"), False),
    K.DELTA64_FROM_GOT: (_GOTREL, struct.Struct("<Q"), True),
    K.SIZE64: (_SIZE, struct.Struct("<Q"), True),
    K.SIZE32: (_SIZE, struct.Struct("<I"), False),
}
# 8/16-bit absolute values may be read as signed or unsigned: either fits
_EITHER: dict[int, tuple[struct.Struct, struct.Struct]] = {K.POINTER16: (struct.Struct("<h"), struct.Struct("<H")),
           K.POINTER8: (struct.Struct("<b"), struct.Struct("<B"))}


def apply_fixups(graph: LinkGraph, addresses: Mapping[int, int], size_of: Callable[[int], int],
                 buffers: Sequence[bytearray]) -> int:
    """Apply every edge of ``graph``; returns the number applied.

    ``addresses[i]`` is the address of what symbol ``i`` (any an edge targets)
    is bound to, and ``size_of(i)`` its size (only SIZE edges ask);
    ``buffers[s]`` is the working memory of segment ``s``. Values are
    reduced to 64 bits (two's complement) before a narrower field is
    range-checked, as a 64-bit linker computes them.
    """
    got = addresses[graph.got_symbol] if graph.got_symbol is not None else 0
    symbols = graph.symbols
    count = 0
    for block in graph.blocks:
        if not block.edges:
            continue
        buf = buffers[block.segment]
        base = block.segment_offset
        place = block.address
        for offset, kind, target, addend in block.edges:
            fixup = _FIXUPS.get(kind)
            if fixup is None:
                value = _signed64(addresses[target] + addend)
                signed, unsigned = _EITHER[kind]
                packer = signed if value < 0 else unsigned
                wraps = False
            else:
                formula, packer, wraps = fixup
                if formula == _PCREL:
                    value = addresses[target] + addend - place - offset
                elif formula == _ABS:
                    value = addresses[target] + addend
                elif formula == _GOTREL:
                    value = addresses[target] + addend - got
                else:
                    value = size_of(target) + addend
                value &= _MASK64
                if not wraps and value >> 63:
                    value -= 1 << 64        # as a signed 64-bit value
            try:
                packer.pack_into(buf, base + offset, value)
            except struct.error:
                raise RelocationOverflowError(K(kind).name, symbols[target].name, value,
                                              block.name, offset) from None
        count += len(block.edges)
    return count


def _signed64(value: int) -> int:
    """``value`` modulo 2**64, as a signed 64-bit integer."""
    return ((value + (1 << 63)) & _MASK64) - (1 << 63)
