"""Indirect stubs and compile callbacks, below any layer."""

from __future__ import annotations

import ctypes
import threading

import pytest

from orcjit.lazy import CompileCallbackManager, IndirectStubsManager

MANY_ARGS = """
define double @body(i32 %a, double %b, i64 %c, double %d, i32 %e, i32 %f, i32 %g,
                    double %h, double %i, double %j, double %k, double %l, double %m) {
  %x = sitofp i32 %a to double
  %s1 = fadd double %x, %b
  %z = sitofp i64 %c to double
  %s2 = fadd double %s1, %z
  %s3 = fadd double %s2, %d
  %i1 = add i32 %e, %f
  %i2 = add i32 %i1, %g
  %fi = sitofp i32 %i2 to double
  %s4 = fadd double %s3, %fi
  %s5 = fadd double %s4, %h
  %s6 = fadd double %s5, %i
  %s7 = fadd double %s6, %j
  %s8 = fadd double %s7, %k
  %s9 = fadd double %s8, %l
  %s10 = fadd double %s9, %m
  ret double %s10
}
"""
PROTOTYPE = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_int, ctypes.c_double, ctypes.c_int64,
                             ctypes.c_double, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                             *[ctypes.c_double] * 6)
ARGS = (1, 2.5, 3, 4.25, 5, 6, 7, 0.5, 0.25, 0.125, 1.0, 2.0, 4.0)


@pytest.fixture
def managers(jit):
    pool = jit.linker.memory_pool
    stubs, callbacks = IndirectStubsManager(pool, block_size=8), CompileCallbackManager(pool)
    yield stubs, callbacks
    stubs.close()
    callbacks.close()


def test_stub_redirects_atomically_and_keeps_its_address(jit, managers):
    stubs, _ = managers
    jit.add_ir("define i32 @one() {\n  ret i32 1\n}\ndefine i32 @two() {\n  ret i32 2\n}\n")
    stub = stubs.create_stub("f", jit.address("one"))
    f = ctypes.CFUNCTYPE(ctypes.c_int)(stub)
    assert f() == 1
    stubs.update_pointer("f", jit.address("two"))
    assert f() == 2 and stubs.find_stub("f") == stub
    assert stubs.target("f") == jit.address("two")


def test_stub_blocks_grow_and_reuse(jit, managers):
    stubs, _ = managers
    addresses = {stubs.create_stub(f"s{i}", 0x1000 + i) for i in range(20)}   # 3 blocks of 8
    assert len(addresses) == 20
    stubs.remove_stub("s3")
    assert stubs.create_stub("again", 0) in addresses


def test_callback_compiles_once_and_preserves_every_argument_register(jit, managers):
    stubs, callbacks = managers
    compiled = []

    def compile_body() -> int:
        compiled.append(1)
        jit.add_ir(MANY_ARGS)
        stubs.update_pointer("body", jit.address("body"))
        return jit.address("body")

    stub = stubs.create_stub("body", callbacks.get_compile_callback(compile_body))
    f = PROTOTYPE(stub)
    expected = sum(ARGS)
    assert f(*ARGS) == expected
    assert f(*ARGS) == expected
    assert compiled == [1]


def test_callbacks_from_threads_python_never_created(jit, managers):
    """JIT'd code starts pthreads that call a lazy stub: ctypes takes the GIL for them."""
    stubs, callbacks = managers
    jit.add_ir("define i32 @square(i32 %x) {\n  %r = mul i32 %x, %x\n  ret i32 %r\n}\n")
    stubs.create_stub("lazy_square", callbacks.get_compile_callback(
        lambda: jit.address("square")))
    seen_threads = []
    jit.define("note_thread", lambda: seen_threads.append(threading.get_ident()), "void()")
    jit.define("lazy_square", stubs.find_stub("lazy_square"))
    jit.add_ir("""
        declare i32 @pthread_create(ptr, ptr, ptr, ptr)
        declare i32 @pthread_join(i64, ptr)
        declare i32 @lazy_square(i32)
        declare void @note_thread()
        @result = global i32 0
        define ptr @worker(ptr %arg) {
          call void @note_thread()
          %r = call i32 @lazy_square(i32 12)
          store i32 %r, ptr @result
          ret ptr null
        }
        define i32 @run_in_pthread() {
          %t = alloca i64
          call i32 @pthread_create(ptr %t, ptr null, ptr @worker, ptr null)
          %id = load i64, ptr %t
          call i32 @pthread_join(i64 %id, ptr null)
          %r = load i32, ptr @result
          ret i32 %r
        }""")
    assert jit.lookup("run_in_pthread", "int()")() == 144
    assert seen_threads and seen_threads[0] != threading.get_ident()
