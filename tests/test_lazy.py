"""Lazy compilation: stubs in front of every function, bodies compiled on first call."""

from __future__ import annotations

import ctypes
import random
import threading

import pytest

import orcjit

CHAIN = """
@counter = internal global i32 0
@table = global [2 x ptr] [ptr @first, ptr @second]

define internal i32 @helper(i32 %x) {
  %c = load i32, ptr @counter
  %c1 = add i32 %c, 1
  store i32 %c1, ptr @counter
  %r = mul i32 %x, 2
  ret i32 %r
}
define i32 @first(i32 %x) {
  %r = call i32 @helper(i32 %x)
  ret i32 %r
}
define i32 @second(i32 %x) {
  %r = call i32 @first(i32 %x)
  %s = add i32 %r, 1
  ret i32 %s
}
define ptr @address_of_first() {
  ret ptr @first
}
define i32 @calls_so_far() {
  %c = load i32, ptr @counter
  ret i32 %c
}
"""


@pytest.fixture
def lazy():
    with orcjit.LazyJIT() as jit:
        yield jit


def test_nothing_is_compiled_until_called(lazy):
    lazy.add_ir(CHAIN)
    assert lazy.stats()["functions_compiled"] == 0
    assert lazy.lookup("second", "int(int)")(20) == 41
    assert lazy.stats()["functions_compiled"] == 3           # second, first, helper
    assert not lazy.lazy.is_compiled("address_of_first")
    assert lazy.lookup("calls_so_far", "int()")() == 1


def test_function_pointer_equality(lazy):
    lazy.add_ir(CHAIN)
    address = lazy.address("first")
    assert lazy.lookup("address_of_first", "void*()")() == address
    table = (ctypes.c_void_p * 2).from_address(lazy.address("table"))
    assert table[0] == address and table[1] == lazy.address("second")
    assert ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(table[1])(1) == 3
    assert lazy.address("first") == address                 # unchanged once compiled


def test_internal_symbols_of_two_modules_do_not_clash(lazy):
    lazy.add_ir(CHAIN)
    lazy.add_ir(CHAIN.replace("@first", "@other_first").replace("@second", "@other_second")
                .replace("@table", "@other_table").replace("@address_of_first", "@aof2")
                .replace("@calls_so_far", "@other_calls").replace("mul i32 %x, 2", "mul i32 %x, 3"))
    assert lazy.lookup("first", "int(int)")(5) == 10
    assert lazy.lookup("other_first", "int(int)")(5) == 15
    assert lazy.lookup("calls_so_far", "int()")() == 1
    assert lazy.lookup("other_calls", "int()")() == 1


def test_removal_frees_compiled_and_uncompiled_functions(lazy):
    handle = lazy.add_ir(CHAIN)
    assert lazy.lookup("first", "int(int)")(1) == 2
    lazy.remove(handle)
    assert lazy.address("first") == 0 and lazy.address("second") == 0
    assert lazy.linker.handles() == []
    lazy.add_ir(CHAIN)
    assert lazy.lookup("second", "int(int)")(1) == 3


def test_stats_cover_lazy_work(lazy):
    lazy.add_ir(CHAIN)
    lazy.lookup("second", "int(int)")(1)
    stats = lazy.stats()
    assert stats["codegen_seconds"] > 0 and stats["link_seconds"] > 0
    assert stats["total_seconds"] >= stats["codegen_seconds"] + stats["link_seconds"]
    assert stats["overhead_seconds"] >= 0


def many_functions(n: int) -> str:
    """n functions that each call a shared helper; f_i(x) = x * i + 7."""
    parts = ["define internal i64 @seven() {\n  ret i64 7\n}"]
    for i in range(n):
        parts.append(f"define i64 @f{i}(i64 %x) {{\n  %m = mul i64 %x, {i}\n"
                     f"  %s = call i64 @seven()\n  %r = add i64 %m, %s\n  ret i64 %r\n}}")
    return "\n".join(parts)


def test_sixteen_threads_first_call_a_thousand_functions_in_random_order():
    """Each body is compiled exactly once and every caller gets the right result."""
    threads, functions = 16, 1000
    with orcjit.LazyJIT(opt_level=0) as jit:
        jit.add_ir(many_functions(functions))
        prototype = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)
        stubs = [prototype(jit.address(f"f{i}")) for i in range(functions)]
        errors = []
        start = threading.Barrier(threads)

        def worker(seed: int) -> None:
            order = list(range(functions))
            random.Random(seed).shuffle(order)
            start.wait()
            for i in order:
                if stubs[i](3) != 3 * i + 7:
                    errors.append(i)

        pool = [threading.Thread(target=worker, args=(seed,)) for seed in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        assert errors == []
        assert jit.stats()["functions_compiled"] == functions + 1    # + the helper
