"""Memory managers: one per object set, carved from one shared reservation.

A :class:`MemoryPool` reserves one large range of address space from the
executor on first use, so every JIT'd section of a session lies within
+-2 GiB of every other and the small code model works between sets. The
range is split into one region per protection (code RX, read-only R, data
RW): sets' segments of one kind sit side by side with the same protection,
so the kernel keeps them in one mapping -- tens of thousands of small sets
(a lazily compiled program) do not run into its limit on mappings.

Small segments (a lazily compiled function is a few hundred bytes) share
pages: they are packed into chunks of a few pages, and a chunk's pages go
back to the system when its last segment is freed. A page per segment
would cost a lazily compiled function two pages of memory and two fresh-page
faults. Since regions are never remapped and the linker writes through a
separate view, packing never needs a page to be writable and executable.

Each set gets a :class:`SetMemoryManager` that takes its segments from the
regions, commits them through the executor and frees everything on
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

#: pages per chunk of packed small segments; segments up to a quarter chunk are packed
CHUNK_PAGES = 16
#: alignment of a segment's start unless the caller asks for more
DEFAULT_ALIGNMENT = 64


class _Chunk:
    """Pages that small segments are packed into, start to end."""

    __slots__ = ("live", "size", "start", "used")

    def __init__(self, start: int, size: int):
        self.start, self.size = start, size
        self.used = 0      # bytes handed out so far (packing never goes back)
        self.live = 0      # segments not freed yet


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
    """Page ranges (and packed small segments) out of one reservation, from
    one region per protection."""

    def __init__(self, executor: Executor, reservation_size: int = DEFAULT_RESERVATION):
        if reservation_size > (1 << 31):
            raise ConfigurationError("the reservation must stay within 2 GiB for PC-relative reach")
        self.executor = executor
        self.page_size = executor.page_size
        self.reservation_size = reservation_size
        self.base = 0
        self._regions: dict[Segment, _FreeRanges] = {}
        self._chunk_size = CHUNK_PAGES * self.page_size
        self._open_chunks: dict[Segment, _Chunk] = {}     # where the next small segment goes
        self._chunk_of: dict[int, _Chunk] = {}            # small segment address -> its chunk
        self._over_aligned: dict[int, tuple[int, int]] = {}   # address -> (start, size) taken
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
            # Free pages are discarded (they read as zeros), never W and X at once.
            for i, segment in enumerate(Segment):
                self.executor.protect(self.base + i * share, share, PROTECTIONS[segment])

    def allocate(self, size: int, segment: Segment = Segment.CODE,
                 alignment: int = DEFAULT_ALIGNMENT) -> int:
        """Room for ``size`` bytes in the region of ``segment``, aligned to
        ``alignment`` (page-aligned pages of its own if large)."""
        with self._lock:
            if not self.base:
                self._ensure_reserved()
            if size <= self._chunk_size // 4 and alignment <= self.page_size:
                return self._allocate_small(size, segment, alignment)
            pages = -(-size // self.page_size) * self.page_size
            if alignment <= self.page_size:
                return self._take(pages, segment)
            # over-aligned (a section asking for more than a page): take extra, align within
            span = pages + alignment - self.page_size
            start = self._take(span, segment)
            address = -(-start // alignment) * alignment
            self._over_aligned[address] = (start, span)
            return address

    def _take(self, size: int, segment: Segment) -> int:
        address = self._regions[segment].take(size)
        if address is None:
            raise ExecutorError(f"JIT memory exhausted: {size} bytes of {segment.name.lower()} "
                                f"requested from a {self.reservation_size >> 20} MiB reservation "
                                "(remove unused sets or raise reservation_size)")
        return address

    def _allocate_small(self, size: int, segment: Segment, alignment: int) -> int:
        """Pack the segment after the last one in the open chunk (a new chunk if full)."""
        chunk = self._open_chunks.get(segment)
        offset = 0
        if chunk is not None:
            offset = -(-chunk.used // alignment) * alignment
        if chunk is None or offset + size > chunk.size:
            if chunk is not None and not chunk.live:
                self._release_chunk(chunk, segment)
            chunk = self._open_chunks[segment] = _Chunk(self._take(self._chunk_size, segment),
                                                        self._chunk_size)
            offset = 0
        chunk.used = offset + size
        chunk.live += 1
        address = chunk.start + offset
        self._chunk_of[address] = chunk
        return address

    def free(self, address: int, size: int, segment: Segment = Segment.CODE) -> None:
        """Give back what :meth:`allocate` returned; pages nothing uses any more
        are discarded (their memory returns to the system)."""
        with self._lock:
            chunk = self._chunk_of.pop(address, None)
            if chunk is None:
                address, size = self._over_aligned.pop(
                    address, (address, -(-size // self.page_size) * self.page_size))
                self.executor.discard(address, size)
                self._regions[segment].give_back(address, size)
                return
            chunk.live -= 1
            if chunk.live:
                return
            if self._open_chunks.get(segment) is chunk:
                # keep packing into it, from the start, on fresh pages
                self.executor.discard(chunk.start, -(-chunk.used // self.page_size)
                                      * self.page_size)
                chunk.used = 0
            else:
                self._release_chunk(chunk, segment)

    def _release_chunk(self, chunk: _Chunk, segment: Segment) -> None:
        self.executor.discard(chunk.start, chunk.size)
        self._regions[segment].give_back(chunk.start, chunk.size)

    def create_memory_manager(self) -> SetMemoryManager:
        return SetMemoryManager(self)

    def close(self) -> None:
        with self._lock:
            if self.base:
                self.executor.release(self.base)
                self.base = 0
                self._open_chunks.clear()
                self._chunk_of.clear()
                self._over_aligned.clear()


class SetMemoryManager:
    """The memory of one object set: allocate, finalise, deallocate."""

    __slots__ = ("_initialized_key", "pool", "segments")

    def __init__(self, pool: MemoryPool):
        self.pool = pool
        #: (segment number, base, size) of each non-empty segment: plain ints in
        #: a tuple, which the collector skips (one per lazily compiled function lives on)
        self.segments: tuple[tuple[int, int, int], ...] = ()
        self._initialized_key: int | None = None

    def allocate(self, segment_sizes: Sequence[int],
                 alignments: Sequence[int] = (DEFAULT_ALIGNMENT,) * 3) -> list[int]:
        """Room for each non-empty segment, aligned as asked, in its protection's
        region; returns their target bases (0 for empty segments)."""
        if self.segments:
            raise ExecutorError("memory manager already holds an allocation")
        bases = [0, 0, 0]
        taken: list[tuple[int, int, int]] = []
        try:
            for segment, size in enumerate(segment_sizes):
                if size:
                    bases[segment] = base = self.pool.allocate(size, SEGMENTS[segment],
                                                               alignments[segment])
                    taken.append((segment, base, size))
        except BaseException:
            self.segments = tuple(taken)
            self._free_segments()
            raise
        self.segments = tuple(taken)
        return bases

    def finalize(self, contents: Sequence[bytes | bytearray],
                 actions: Sequence[tuple[ActionCall, ActionCall | None]] = ()) -> None:
        """Commit working memory with final protections, then run the actions."""
        writes = []
        for segment, base, size in self.segments:
            writes.append(SegmentWrite(base, size, contents[segment], None))
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
        segments, self.segments = self.segments, ()
        for segment, base, size in segments:
            self.pool.free(base, size, SEGMENTS[segment])
