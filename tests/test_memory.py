"""Removal frees what it took: repeated add/call/remove keeps memory flat."""

from __future__ import annotations

import gc
import os

import pytest

import orcjit

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
