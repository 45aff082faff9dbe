"""Memory managers: one per object set, carved from one shared reservation.

A :class:`MemoryPool` reserves one large range of address space from the
executor on first use and hands out page ranges from it, so every JIT'd
section of a session lies within +-2 GiB of every other and the small code
model works between sets. Each set gets a :class:`SetMemoryManager` that
lays its segments out (code, read-only, read-write; each page-aligned so it
gets its own protection), commits them through the executor and frees
everything on :meth:`~SetMemoryManager.deallocate`.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence

from ..errors import ExecutorError
from ..executor.base import ActionCall, Executor, FinalizeRequest, Protection, SegmentWrite
from .graph import Segment

PROTECTIONS = {
    Segment.CODE: Protection.READ | Protection.EXEC,
    Segment.RODATA: Protection.READ,
    Segment.DATA: Protection.READ | Protection.WRITE,
}

DEFAULT_RESERVATION = 1 << 30


class MemoryPool:
    """Page ranges out of one reservation; first fit, coalescing on free."""

    def __init__(self, executor: Executor, reservation_size: int = DEFAULT_RESERVATION):
        if reservation_size > (1 << 31):
            raise ValueError("the reservation must stay within 2 GiB for PC-relative reach")
        self.executor = executor
        self.page_size = executor.page_size
        self.reservation_size = reservation_size
        self.base = 0
        self._starts: list[int] = []       # free ranges, sorted by start
        self._sizes: dict[int, int] = {}
        self._lock = threading.Lock()

    @property
    def end(self) -> int:
        return self.base + self.reservation_size

    def contains(self, address: int) -> bool:
        """Whether ``address`` is JIT memory (nothing is before the first reservation)."""
        return bool(self.base) and self.base <= address < self.base + self.reservation_size

    def _ensure_reserved(self) -> None:
        if not self.base:
            self.base = self.executor.reserve(self.reservation_size)
            self._starts = [self.base]
            self._sizes = {self.base: self.reservation_size}

    def reserve_address_space(self) -> int:
        """Reserve now (normally lazy); returns the base."""
        with self._lock:
            self._ensure_reserved()
        return self.base

    def allocate(self, size: int) -> int:
        size = -(-size // self.page_size) * self.page_size
        with self._lock:
            self._ensure_reserved()
            for i, start in enumerate(self._starts):
                free = self._sizes[start]
                if free >= size:
                    del self._starts[i]
                    del self._sizes[start]
                    if free > size:
                        self._starts.insert(i, start + size)
                        self._sizes[start + size] = free - size
                    return start
        raise ExecutorError(f"JIT memory exhausted: {size} bytes requested from a "
                            f"{self.reservation_size >> 20} MiB reservation "
                            "(remove unused sets or raise reservation_size)")

    def free(self, address: int, size: int) -> None:
        size = -(-size // self.page_size) * self.page_size
        with self._lock:
            i = bisect.bisect_left(self._starts, address)
            # merge with the following range
            if i < len(self._starts) and self._starts[i] == address + size:
                size += self._sizes.pop(self._starts[i])
                del self._starts[i]
            # merge with the preceding range
            if i > 0 and self._starts[i - 1] + self._sizes[self._starts[i - 1]] == address:
                self._sizes[self._starts[i - 1]] += size
            else:
                self._starts.insert(i, address)
                self._sizes[address] = size

    def create_memory_manager(self) -> SetMemoryManager:
        return SetMemoryManager(self)

    def close(self) -> None:
        with self._lock:
            if self.base:
                self.executor.release(self.base)
                self.base = 0


class SetMemoryManager:
    """The memory of one object set: allocate, finalise, deallocate."""

    def __init__(self, pool: MemoryPool):
        self.pool = pool
        self.base = 0
        self.size = 0
        self.segment_bases: list[int] = [0, 0, 0]
        self.segment_sizes: list[int] = [0, 0, 0]
        self._initialized_key: int | None = None

    def allocate(self, segment_sizes: Sequence[int]) -> list[int]:
        """Reserve page-aligned room for each segment; returns their target bases."""
        if self.base:
            raise ExecutorError("memory manager already holds an allocation")
        page = self.pool.page_size
        spans = [-(-s // page) * page for s in segment_sizes]
        total = sum(spans) or page
        self.base = self.pool.allocate(total)
        self.size = total
        address = self.base
        for segment, span in enumerate(spans):
            self.segment_bases[segment] = address
            self.segment_sizes[segment] = segment_sizes[segment]
            address += span
        return list(self.segment_bases)

    def finalize(self, contents: Sequence[bytes | bytearray],
                 actions: Sequence[tuple[ActionCall, ActionCall | None]] = ()) -> None:
        """Commit working memory with final protections, then run the actions."""
        writes = [SegmentWrite(self.segment_bases[s], self.segment_sizes[s], contents[s],
                               PROTECTIONS[Segment(s)])
                  for s in range(len(contents)) if self.segment_sizes[s]]
        self._initialized_key = self.pool.executor.initialize(FinalizeRequest(writes, actions))

    def deallocate(self) -> None:
        """Undo finalisation (deallocate actions first) and free the pages."""
        if self._initialized_key is not None:
            key, self._initialized_key = self._initialized_key, None
            self.pool.executor.deinitialize(key)
        if self.base:
            base, self.base = self.base, 0
            self.pool.free(base, self.size)
