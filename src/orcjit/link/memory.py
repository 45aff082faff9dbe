"""Memory managers: one per object set, carved from one shared reservation.

A :class:`MemoryPool` reserves one large range of address space from the
executor on first use, so every JIT'd section of a session lies within
+-2 GiB of every other and the small code model works between sets. The
range is split into one region per protection (code RX, read-only R, data
RW): sets' segments of one kind sit side by side with the same protection,
so the kernel keeps them in one mapping -- tens of thousands of small sets
(a lazily compiled program) do not run into its limit on mappings. Each set
gets a :class:`SetMemoryManager` that takes its segments from the regions,
commits them through the executor and frees everything on
:meth:`~SetMemoryManager.deallocate`.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence

from ..errors import ConfigurationError, ExecutorError
from ..executor.base import ActionCall, Executor, FinalizeRequest, Protection, SegmentWrite
from .graph import Segment

PROTECTIONS = {
    Segment.CODE: Protection.READ | Protection.EXEC,
    Segment.RODATA: Protection.READ,
    Segment.DATA: Protection.READ | Protection.WRITE,
}

DEFAULT_RESERVATION = 1 << 30

#: the members, listed once: iterating an Enum class runs a generator each time
SEGMENTS = tuple(Segment)


class _FreeRanges:
    """Free page ranges of one region: first fit, coalescing on free."""

    def __init__(self, start: int, size: int):
        self.starts = [start]              # sorted
        self.sizes = {start: size}

    def take(self, size: int) -> int | None:
        for i, start in enumerate(self.starts):
            free = self.sizes[start]
            if free >= size:
                del self.starts[i]
                del self.sizes[start]
                if free > size:
                    self.starts.insert(i, start + size)
                    self.sizes[start + size] = free - size
                return start
        return None

    def give_back(self, address: int, size: int) -> None:
        i = bisect.bisect_left(self.starts, address)
        if i < len(self.starts) and self.starts[i] == address + size:      # merge after
            size += self.sizes.pop(self.starts[i])
            del self.starts[i]
        if i > 0 and self.starts[i - 1] + self.sizes[self.starts[i - 1]] == address:
            self.sizes[self.starts[i - 1]] += size                          # merge before
        else:
            self.starts.insert(i, address)
            self.sizes[address] = size


class MemoryPool:
    """Page ranges out of one reservation, from one region per protection."""

    def __init__(self, executor: Executor, reservation_size: int = DEFAULT_RESERVATION):
        if reservation_size > (1 << 31):
            raise ConfigurationError("the reservation must stay within 2 GiB for PC-relative reach")
        self.executor = executor
        self.page_size = executor.page_size
        self.reservation_size = reservation_size
        self.base = 0
        self._regions: dict[Segment, _FreeRanges] = {}
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
            share = self.reservation_size // len(Segment) // self.page_size * self.page_size
            self._regions = {segment: _FreeRanges(self.base + i * share, share)
                             for i, segment in enumerate(Segment)}
            # Each region gets its final protection once: committing a set is then
            # a copy, with no protection change (no syscalls, no split mappings).
            # Free pages are punched out (they read as zeros), never W and X at once.
            for i, segment in enumerate(Segment):
                self.executor.protect(self.base + i * share, share, PROTECTIONS[segment])

    def allocate(self, size: int, segment: Segment = Segment.CODE) -> int:
        """Page-aligned room for ``size`` bytes in the region of ``segment``."""
        size = -(-size // self.page_size) * self.page_size
        with self._lock:
            self._ensure_reserved()
            address = self._regions[segment].take(size)
        if address is None:
            raise ExecutorError(f"JIT memory exhausted: {size} bytes of {segment.name.lower()} "
                                f"requested from a {self.reservation_size >> 20} MiB reservation "
                                "(remove unused sets or raise reservation_size)")
        return address

    def free(self, address: int, size: int, segment: Segment = Segment.CODE) -> None:
        size = -(-size // self.page_size) * self.page_size
        with self._lock:
            self._regions[segment].give_back(address, size)

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
        self.segment_bases: list[int] = [0, 0, 0]
        self.segment_sizes: list[int] = [0, 0, 0]
        self._initialized_key: int | None = None

    def allocate(self, segment_sizes: Sequence[int]) -> list[int]:
        """Page-aligned room for each non-empty segment, in its protection's
        region; returns their target bases (0 for empty segments)."""
        if any(self.segment_bases):
            raise ExecutorError("memory manager already holds an allocation")
        try:
            for segment in SEGMENTS:
                size = self.segment_sizes[segment] = segment_sizes[segment]
                if size:
                    self.segment_bases[segment] = self.pool.allocate(size, segment)
        except BaseException:
            self._free_segments()
            raise
        return list(self.segment_bases)

    def finalize(self, contents: Sequence[bytes | bytearray],
                 actions: Sequence[tuple[ActionCall, ActionCall | None]] = ()) -> None:
        """Commit working memory with final protections, then run the actions."""
        writes = [SegmentWrite(self.segment_bases[s], self.segment_sizes[s], contents[s], None)
                  for s in range(len(contents)) if self.segment_sizes[s]]
        if writes or actions:
            self._initialized_key = self.pool.executor.initialize(
                FinalizeRequest(writes, actions))

    def deallocate(self) -> None:
        """Undo finalisation (deallocate actions first) and free the pages."""
        if self._initialized_key is not None:
            key, self._initialized_key = self._initialized_key, None
            self.pool.executor.deinitialize(key)
        self._free_segments()

    def _free_segments(self) -> None:
        for segment in SEGMENTS:
            base = self.segment_bases[segment]
            if base:
                self.pool.free(base, self.segment_sizes[segment], segment)
                self.segment_bases[segment] = 0
