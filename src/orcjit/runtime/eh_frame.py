"""``.eh_frame``: dropping FDEs of discarded code, and registration with libgcc.

When a COMDAT group is provided by another module set, its code is not
loaded, so the FDEs that describe it must go too: an FDE whose initial
location points nowhere would confuse the unwinder. Records are copied in
order without those FDEs; CIE pointers (relative) are recomputed and the
edges of kept records shift with them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
from bisect import bisect_left
from typing import Any

from ..errors import InvalidObjectError


def prune_fdes(block: Any, discarded_targets: set[int], graph_name: str) -> None:
    """Remove from an eh_frame block the FDEs whose pc_begin edge targets a discarded symbol."""
    content = bytes(block.content or b"")
    edges = sorted(block.edges, key=lambda edge: edge[0])
    offsets = [edge[0] for edge in edges]
    edges_at = {edge[0]: edge for edge in edges}
    out = bytearray()
    new_edges = []
    cie_moves: dict[int, int] = {}
    pos = 0
    end = len(content)
    while pos + 4 <= end:
        length = struct.unpack_from("<I", content, pos)[0]
        if length == 0:
            break
        header = 4
        if length == 0xFFFFFFFF:
            if pos + 12 > end:
                raise InvalidObjectError(f"{graph_name}: truncated .eh_frame record")
            length = struct.unpack_from("<Q", content, pos + 4)[0]
            header = 12
        record_end = pos + header + length
        if record_end > end or length < 4:
            raise InvalidObjectError(f"{graph_name}: .eh_frame record overruns the section")
        id_pos = pos + header
        cie_pointer = struct.unpack_from("<I", content, id_pos)[0]
        pc_begin = edges_at.get(id_pos + 4)
        if cie_pointer != 0 and pc_begin is not None and pc_begin[2] in discarded_targets:
            pos = record_end
            continue                                   # an FDE of discarded code
        new_pos = len(out)
        out += content[pos:record_end]
        if cie_pointer == 0:
            cie_moves[pos] = new_pos
        else:
            cie_at = id_pos - cie_pointer
            if cie_at not in cie_moves:
                raise InvalidObjectError(f"{graph_name}: .eh_frame FDE points at no CIE")
            struct.pack_into("<I", out, new_pos + header, new_pos + header - cie_moves[cie_at])
        shift = new_pos - pos
        for edge in edges[bisect_left(offsets, pos):bisect_left(offsets, record_end)]:
            if edge[2] in discarded_targets:
                raise InvalidObjectError(f"{graph_name}: .eh_frame CIE refers to "
                                         "discarded code")
            new_edges.append([edge[0] + shift, edge[1], edge[2], edge[3]])
        pos = record_end
    block.content = bytes(out)
    block.size = len(out)
    block.edges = new_edges


class FrameRegistrar:
    """libgcc's ``__register_frame``/``__deregister_frame``, for in-process code.

    The linker hands their addresses to the executor as finalise and
    deallocate actions, so the same mechanism can work in another process.
    """

    def __init__(self) -> None:
        self.register_address = 0
        self.deregister_address = 0
        for name in ("libgcc_s.so.1", ctypes.util.find_library("gcc_s")):
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
            except OSError:
                continue
            # getattr: a literal ``lib.__register_frame`` would be name-mangled here
            self.register_address = _address(getattr(lib, "__register_frame"))
            self.deregister_address = _address(getattr(lib, "__deregister_frame"))
            self._lib = lib            # keep it loaded
            break


def _address(function: Any) -> int:
    return ctypes.cast(function, ctypes.c_void_p).value or 0
