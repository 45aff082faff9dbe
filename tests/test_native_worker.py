"""The native worker: C calls run on a thread of machine code, no GIL hand-off."""

from __future__ import annotations

import ctypes
import faulthandler
import gc
import os
import signal
import threading
import time

import pytest

import orcjit
from orcjit.errors import CompileError, ConfigurationError
from orcjit.frontends.ir import parse_ir
from orcjit.layers.compile import SimpleCompiler, create_target_machine
from orcjit.layers.transform import optimization_pipeline
from orcjit.runtime import native_worker
from orcjit.runtime.llvm_calls import LLVMOnWorker
from orcjit.runtime.native_worker import NativeWorker

pytestmark = pytest.mark.skipif(not native_worker.supported(), reason="x86-64 Linux only")

LIBC = ctypes.CDLL(None)
USLEEP = ctypes.cast(LIBC.usleep, ctypes.c_void_p).value
LABS = ctypes.cast(LIBC.labs, ctypes.c_void_p).value
SYSCALL = ctypes.cast(LIBC.syscall, ctypes.c_void_p).value
SYS_GETTID = 186
SUM4 = """
define i64 @sum4(i64 %a, i64 %b, i64 %c, i64 %d) {
  %ab = add i64 %a, %b
  %cd = add i64 %c, %d
  %s = mul i64 %ab, %cd
  ret i64 %s
}
"""


@pytest.fixture(autouse=True)
def no_hang():
    """A lost wake-up would hang: fail loudly instead."""
    faulthandler.dump_traceback_later(60, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def wait_until_asleep(w: NativeWorker, timeout: float = 5.0) -> bool:
    """Its few yields may take a while on a busy machine: wait for the futex."""
    deadline = time.monotonic() + timeout
    while not w.asleep and time.monotonic() < deadline:
        time.sleep(0.001)
    return w.asleep


@pytest.fixture
def worker():
    w = NativeWorker()
    yield w
    w.close()


def test_a_call_runs_on_the_worker_and_returns_its_result(worker):
    assert worker.call(LABS, (-42) & (2**64 - 1)) == 42
    assert worker.call(SYSCALL, SYS_GETTID) != threading.get_native_id()
    with orcjit.JIT() as jit:
        jit.add_ir(SUM4)
        assert worker.call(jit.address("sum4"), 1, 2, 3, 4) == 21


def test_more_than_four_arguments_are_refused(worker):
    with pytest.raises(ConfigurationError, match="four"):
        worker.call(LABS, 1, 2, 3, 4, 5)


def test_a_sleeping_worker_is_woken_and_a_long_job_waited_for():
    w = NativeWorker(wait_seconds=1e-5)       # both sides sleep almost at once
    try:
        assert wait_until_asleep(w)
        start = time.perf_counter()
        assert w.call(USLEEP, 30_000) == 0    # the caller sleeps on the futex too
        assert time.perf_counter() - start >= 0.03
        assert w.call(LABS, 7) == 7
    finally:
        w.close()


def test_other_python_threads_run_while_a_job_runs(worker):
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)
    t = threading.Thread(target=tick)
    t.start()
    try:
        worker.call(USLEEP, 100_000)
        during = len(ticks)
    finally:
        stop.set()
        t.join()
    assert during >= 10, "the GIL was held while the worker ran"


def test_calls_from_many_threads_each_get_their_own_result(worker):
    results: dict[int, int] = {}

    def run(n: int) -> None:
        for i in range(50):
            results[n * 1000 + i] = worker.call(LABS, (-(n * 1000 + i)) & (2**64 - 1))
    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    assert results == {k: k for k in results} and len(results) == 400


def test_a_closed_worker_refuses_calls():
    w = NativeWorker(wait_seconds=1e-5)
    assert wait_until_asleep(w)               # close must wake it
    w.close()
    w.close()                                 # twice is fine
    with pytest.raises(ConfigurationError, match="stopped"):
        w.call(LABS, 1)


def test_the_compiler_makes_the_same_object_on_the_worker_and_inline():
    assert LLVMOnWorker.get() is not None     # (not the fallback)
    tm = create_target_machine(opt_level=2)
    objects = []
    for on_worker in (True, False):
        compiler = SimpleCompiler(tm, native_worker=on_worker)
        objects.append(compiler(parse_ir(SUM4)))
    assert objects[0] == objects[1]
    assert objects[0][:4] == b"\x7fELF"


def test_the_pass_pipeline_does_the_same_on_the_worker_and_inline():
    tm = create_target_machine(opt_level=2)
    texts = []
    for on_worker in (True, False):
        optimize = optimization_pipeline(tm, 2, native_worker=on_worker)
        texts.append(str(optimize(parse_ir(SUM4))))
    assert texts[0] == texts[1]
    assert "mul i64" in texts[0]


def test_the_worker_is_used_where_it_pays_and_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("ORCJIT_NATIVE_WORKER", "0")
    assert not native_worker.wanted()
    assert SimpleCompiler(create_target_machine()).native_worker is False
    monkeypatch.delenv("ORCJIT_NATIVE_WORKER")
    assert native_worker.wanted() == (len(os.sched_getaffinity(0)) >= 2)


def _in_child(body) -> int:
    """Run ``body()`` (returning an exit status) in a forked child, with an alarm."""
    pid = os.fork()
    if pid == 0:
        status = 99
        try:
            signal.alarm(20)
            status = body()
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_forked_child_compiles_on_a_worker_of_its_own():
    with orcjit.JIT(native_worker=True) as jit:     # the parent's worker is running
        jit.add_ir(SUM4)
        assert jit.lookup("sum4", "int64_t(int64_t, int64_t, int64_t, int64_t)")(1, 1, 1, 1) == 4
    parents = native_worker.shared_worker().call(SYSCALL, SYS_GETTID)

    def child() -> int:
        with orcjit.JIT(native_worker=True) as jit:
            jit.add_ir(SUM4)
            f = jit.lookup("sum4", "int64_t(int64_t, int64_t, int64_t, int64_t)")
            if f(1, 2, 3, 4) != 21:
                return 2
        own = native_worker.shared_worker().call(SYSCALL, SYS_GETTID)
        return 0 if own not in (parents, threading.get_native_id()) else 3
    assert _in_child(child) == 0


def test_a_fork_while_a_worker_starts_does_not_hang_the_child():
    native_worker.shared_worker()
    with native_worker._Code._lock:            # as if another thread were starting one
        status = _in_child(lambda: 0 if NativeWorker().call(LABS, 3) == 3 else 2)
    assert status == 0


def test_a_worker_dropped_without_close_stops():
    w = NativeWorker(wait_seconds=1e-5)
    thread = w._thread
    del w
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_stopped_shared_worker_is_replaced():
    first = native_worker.shared_worker()
    first.close()
    second = native_worker.shared_worker()
    assert second is not first and second.alive
    assert second.call(LABS, 9) == 9


def test_close_waits_for_the_job_in_flight():
    w = NativeWorker()
    results = []
    t = threading.Thread(target=lambda: results.append(w.call(USLEEP, 50_000)))
    t.start()
    time.sleep(0.01)
    w.close()
    t.join(timeout=10)
    assert results == [0] and not w.alive


def test_closed_modules_and_target_machines_are_refused_not_crashed_on():
    tm = create_target_machine(opt_level=0)
    compiler = SimpleCompiler(tm, native_worker=True)
    module = parse_ir(SUM4)
    compiler(module)                          # fine; and the module is not freed by it
    module.close()
    with pytest.raises(CompileError, match="disposed"):
        compiler(module)
    closing = create_target_machine(opt_level=0)
    compiler = SimpleCompiler(closing, native_worker=True)
    closing.close()
    with pytest.raises(CompileError, match="closed"):
        compiler(parse_ir(SUM4))
