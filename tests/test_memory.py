"""Removal frees what it took: repeated add/call/remove keeps memory flat."""

from __future__ import annotations

import gc
import os

import pytest

import orcjit
from orcjit.executor.in_process import InProcessExecutor
from orcjit.link.graph import Segment
from orcjit.link.memory import CHUNK_PAGES, MemoryPool

SMALL = """
@counter = global i32 0
@message = private constant [6 x i8] c"cycle\\00"
declare i64 @strlen(ptr)
define i32 @step(i32 %x) {
  %c = load i32, ptr @counter
  %c1 = add i32 %c, 1
  store i32 %c1, ptr @counter
  %n = call i64 @strlen(ptr @message)
  %n32 = trunc i64 %n to i32
  %r = add i32 %x, %n32
  ret i32 %r
}
"""


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cycle(jit: orcjit.JIT, i: int) -> None:
    handle = jit.add_ir(SMALL)
    assert jit.lookup("step", "int(int)")(i) == i + 5
    jit.remove(handle)


@pytest.mark.parametrize("cycles", [600])
def test_rss_stays_flat_over_add_remove_cycles(cycles):
    """Everything a set took comes back on removal (bench/memory_cycles.py runs 10,000)."""
    with orcjit.JIT() as jit:
        for i in range(100):
            cycle(jit, i)
        gc.collect()
        after_warmup = rss_bytes()
        for i in range(cycles - 100):
            cycle(jit, i)
        gc.collect()
        growth = rss_bytes() - after_warmup
        assert jit.linker.handles() == []
    assert growth < 2 * 1024 * 1024, f"RSS grew {growth / 1024:.0f} KiB"


def test_removed_memory_is_reused():
    with orcjit.JIT() as jit:
        first = jit.add_ir(SMALL)
        address = jit.address("step")
        jit.remove(first)
        jit.add_ir(SMALL)
        assert jit.address("step") == address


def test_many_small_sets_share_a_few_mappings():
    """Segments of one protection sit together, so the kernel merges their mappings:
    thousands of sets (a lazily compiled program) must not exhaust vm.max_map_count."""
    with orcjit.JIT(opt_level=0) as jit:
        for i in range(300):
            jit.add_ir(SMALL.replace("@step", f"@step{i}").replace("@counter", f"@counter{i}"))
        pool = jit.linker.memory_pool
        with open("/proc/self/maps") as maps:
            mappings = [line for line in maps
                        if pool.base <= int(line.split("-")[0], 16) < pool.end]
        assert len(mappings) < 20, len(mappings)


class RecordingExecutor(InProcessExecutor):
    """Notes which pages are given back."""

    def __init__(self) -> None:
        super().__init__()
        self.discarded: list[tuple[int, int]] = []

    def discard(self, address: int, size: int) -> None:
        self.discarded.append((address, size))
        super().discard(address, size)


def test_small_segments_share_pages_and_give_them_back_together():
    executor = RecordingExecutor()
    pool = MemoryPool(executor)
    page = executor.page_size
    try:
        a = pool.allocate(100, Segment.CODE)
        b = pool.allocate(100, Segment.CODE, alignment=64)
        assert a % 64 == 0 and b == a + 128 and a // page == b // page
        executor.write(a, b"\x11" * 100)
        executor.write(b, b"\x22" * 100)
        pool.free(a, 100, Segment.CODE)
        assert executor.discarded == []                 # b still lives on that page
        assert executor.read(b, 100) == b"\x22" * 100
        pool.free(b, 100, Segment.CODE)
        assert executor.discarded == [(a - a % page, page)]
        assert executor.read(a, 228) == bytes(228)      # the memory went back: zeros
        assert pool.allocate(100, Segment.CODE) == a    # and the chunk is packed again
    finally:
        pool.close()


def test_large_segments_get_pages_of_their_own():
    executor = RecordingExecutor()
    pool = MemoryPool(executor)
    page = executor.page_size
    try:
        size = CHUNK_PAGES * page
        big = pool.allocate(size + 1, Segment.DATA)
        small = pool.allocate(8, Segment.DATA)
        assert big % page == 0 and not big <= small < big + size + page
        pool.free(big, size + 1, Segment.DATA)
        assert executor.discarded == [(big, size + page)]
    finally:
        pool.close()


def test_segment_alignment_is_honoured():
    pool = MemoryPool(InProcessExecutor())
    try:
        pool.allocate(3, Segment.RODATA)
        assert pool.allocate(16, Segment.RODATA, alignment=1024) % 1024 == 0
        big = 4 * pool.page_size
        for alignment in (2 * pool.page_size, 16 * pool.page_size):
            address = pool.allocate(16, Segment.RODATA, alignment=alignment)
            assert address % alignment == 0
            pool.free(address, 16, Segment.RODATA)
            address = pool.allocate(big + 1, Segment.DATA, alignment=alignment)
            assert address % alignment == 0
            pool.free(address, big + 1, Segment.DATA)
        # what over-aligned allocations took came back: the region is whole again
        assert pool.allocate(big, Segment.DATA) % pool.page_size == 0
    finally:
        pool.close()


def test_over_aligned_section_is_linked_aligned():
    """A section aligned beyond a page (``__attribute__((aligned(8192)))``) keeps its alignment."""
    with orcjit.JIT() as jit:
        jit.add_ir("@big = global [16 x i8] zeroinitializer, align 8192\n"
                   "@small = global i8 1, align 1\n"
                   "define ptr @where() {\n  ret ptr @big\n}")
        assert jit.address("big") % 8192 == 0
        assert jit.lookup("where", "void*()")() == jit.address("big")


def test_lazily_compiled_functions_share_code_pages():
    """A page per function would cost a lazy program two pages (code, unwind info) each."""
    source = "\n".join(f"define i64 @f{i}(i64 %x) {{\n  %r = add i64 %x, {i}\n  ret i64 %r\n}}"
                       for i in range(64))
    with orcjit.LazyJIT(opt_level=0) as jit:
        jit.add_ir(source)
        for i in range(64):
            assert jit.lookup(f"f{i}", "int64_t(int64_t)")(1) == 1 + i
        bodies = [jit.linker.get_symbol_address(f"f{i}.orc_body", exported_symbols_only=False)
                  for i in range(64)]
        assert all(bodies) and len(set(bodies)) == 64
        assert len({body // jit.linker.memory_pool.page_size for body in bodies}) <= 2
