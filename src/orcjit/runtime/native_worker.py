"""A worker thread of machine code that runs C calls for Python threads.

Why: LLVM's code generation for one small function touches megabytes of
code and data. Run on the calling thread, it evicts that core's caches, and
the Python work around it (linking the object, repointing a stub) then runs
about twice as slow as it does warm. Run on another core, code generation
leaves the caller's caches alone -- and keeps its own warm for the next
function.

A Python thread cannot take that hand-off cheaply: waking one that waits
for the GIL costs 70-110 us here. So the worker never takes the GIL: its
loop (``serve``, machine code from :mod:`orcjit.arch.x86_64`) runs inside
one foreign call that released it, and a caller hands a job over in another
(``submit``). Both sides wait by yielding their CPU for a while (about 2 ms:
longer than an -O0 compile, and than most gaps between first calls in a
burst), then sleep on a futex. Yielding rather than spinning keeps a busy
machine's other threads running.

One worker serves the process: llvmlite runs one LLVM call at a time
anyway, so a second one would only wait.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import threading
import time
import weakref
from collections.abc import Callable

from ..arch import x86_64
from ..errors import ConfigurationError
from ..executor.base import Protection
from ..executor.in_process import InProcessExecutor

#: seconds the worker waits for the next job before it sleeps, and a caller
#: waits for its job before it sleeps
DEFAULT_WAIT_SECONDS = 0.002

_SUBMIT = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64,
                           ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64)
_SERVE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_YIELD_LOOP = ctypes.CFUNCTYPE(None, ctypes.c_uint64)


class _Code:
    """``serve``, ``submit`` and ``yield_loop``, written once per process into
    a page that is never freed (a worker may still be in it at exit), and the
    pages job blocks are carved from, never freed either: a worker left
    waiting at exit reads its block until the process is gone."""

    _instance: _Code | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        executor = InProcessExecutor()
        page = executor.page_size
        base = executor.reserve(page)
        code = bytearray(b"\xcc" * x86_64.WORKER_YIELD_LOOP_OFFSET)     # int3 between
        code[:len(x86_64.WORKER_SERVE_CODE)] = x86_64.WORKER_SERVE_CODE
        submit = x86_64.WORKER_SUBMIT_OFFSET
        code[submit:submit + len(x86_64.WORKER_SUBMIT_CODE)] = x86_64.WORKER_SUBMIT_CODE
        code += x86_64.WORKER_YIELD_LOOP_CODE
        executor.write(base, bytes(code))
        executor.protect(base, page, Protection.READ | Protection.EXEC)
        self._executor = executor        # kept: its reservation is the code
        self.serve = _SERVE(base)
        self.submit = _SUBMIT(base + submit)
        self.yield_seconds = _time_one_yield(_YIELD_LOOP(base + x86_64.WORKER_YIELD_LOOP_OFFSET))
        self._blocks: list[int] = []
        self._block_pages: list[mmap.mmap] = []

    def new_block(self) -> int:
        """The address of a zeroed job block that stays mapped for good."""
        with self._lock:
            if not self._blocks:
                page = mmap.mmap(-1, mmap.PAGESIZE)
                self._block_pages.append(page)
                base = ctypes.addressof(ctypes.c_char.from_buffer(page))
                self._blocks = [base + offset for offset in
                                range(0, mmap.PAGESIZE, x86_64.WORKER_BLOCK_SIZE)]
            return self._blocks.pop()

    @classmethod
    def get(cls) -> _Code:
        code = cls._instance
        if code is None:
            with cls._lock:
                if cls._instance is None:
                    cls._instance = cls()
                code = cls._instance
        return code


def _time_one_yield(yield_loop: Callable[[int], None]) -> float:
    """What one ``sched_yield`` costs here, from a few batches: ~10 us on an
    idle machine, and bounded on a busy one, where a yield may give the CPU
    away for milliseconds (the wait times need not be exact)."""
    best, total = float("inf"), 0.0
    for _ in range(4):
        start = time.perf_counter()
        yield_loop(16)
        elapsed = time.perf_counter() - start
        best, total = min(best, elapsed), total + elapsed
        if total > 0.001:
            break
    return max(best / 16, 1e-8)


class NativeWorker:
    """A thread that runs ``function(a0, a1, a2, a3)`` (integer arguments and
    result) for whichever Python thread calls :meth:`call`, one job at a
    time. The function must not call into Python; a job cannot be
    interrupted (Ctrl-C is seen when it returns). The thread's stack is
    ``threading.stack_size()``'s, like any thread's."""

    def __init__(self, wait_seconds: float = DEFAULT_WAIT_SECONDS):
        if not supported():
            raise ConfigurationError("the native worker needs x86-64 Linux")
        self._code = _Code.get()
        self._submit = self._code.submit
        self._address = self._code.new_block()
        words = (ctypes.c_uint64 * (x86_64.WORKER_BLOCK_SIZE // 8)).from_address(self._address)
        yields = max(1, int(wait_seconds / self._code.yield_seconds))
        words[x86_64.WORKER_SPIN_SLOT] = words[x86_64.SUBMITTER_SPIN_SLOT] = yields
        self._lock = threading.Lock()
        #: False once closed or forked away from: read per call instead of
        #: asking threading whether the thread lives (nothing else ends it)
        self._running = True
        self._thread = threading.Thread(target=self._code.serve, args=(self._address,),
                                        name="orcjit-native-worker", daemon=True)
        self._thread.start()
        # dropped without close(): the thread leaves its loop (not joined: no waiting in a finaliser)
        self._finalizer = weakref.finalize(self, _tell_to_stop, self._address)
        _workers.add(self)

    @property
    def alive(self) -> bool:
        return self._running and self._thread.is_alive()

    @property
    def asleep(self) -> bool:
        """Whether the thread sleeps on its futex (rather than waiting awake)."""
        return bool(ctypes.c_uint32.from_address(self._address + 4).value)

    def call(self, function: int, a0: int = 0, a1: int = 0, a2: int = 0, a3: int = 0,
             *more: int) -> int:
        """Run ``function(a0, a1, a2, a3)`` on the worker and wait for its
        result; the GIL is released meanwhile."""
        if more:
            raise ConfigurationError("the native worker passes at most four arguments")
        with self._lock:
            if not self._running:
                raise ConfigurationError("the native worker has stopped")
            return self._submit(self._address, function, a0, a1, a2, a3)

    def close(self) -> None:
        """Stop the thread once it has finished the job it is running."""
        with self._lock:
            self._running = False
            if self._thread.is_alive():
                self._finalizer()          # tells it to stop (once)
                self._thread.join()


def _tell_to_stop(address: int) -> None:
    """Set the state word (only: the asleep word beside it is the worker's)
    to STOP and wake the worker in case it sleeps."""
    ctypes.c_uint32.from_address(address).value = x86_64.WORKER_STOP
    _futex_wake(address)


def supported() -> bool:
    """x86-64 Linux: where the worker's machine code and futexes exist."""
    return platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64")


def wanted() -> bool:
    """Whether a worker pays off: another CPU to run it on, and it was not
    turned off with ``ORCJIT_NATIVE_WORKER=0``."""
    if os.environ.get("ORCJIT_NATIVE_WORKER", "1") == "0" or not supported():
        return False
    return len(os.sched_getaffinity(0)) >= 2


_shared: NativeWorker | None = None
_shared_lock = threading.Lock()
#: every worker not yet collected (a forked child marks them stopped)
_workers: weakref.WeakSet[NativeWorker] = weakref.WeakSet()


def shared_worker() -> NativeWorker:
    """The process's worker, started on first use, or again if it was
    stopped (callers ask :func:`wanted` whether to use it)."""
    global _shared
    worker = _shared
    if worker is None or not worker._running:
        with _shared_lock:
            if _shared is None or not _shared._running:
                _shared = NativeWorker()
            worker = _shared
    return worker


def _forget_after_fork() -> None:
    """A forked child has no worker thread, and locks another thread may
    have held at the fork: it starts anew."""
    global _shared, _shared_lock
    for worker in list(_workers):
        worker._running = False
    _shared, _shared_lock = None, threading.Lock()
    _Code._lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)

_syscall = ctypes.CDLL(None, use_errno=True).syscall
_syscall.restype = ctypes.c_long


def _futex_wake(address: int) -> None:
    _syscall(ctypes.c_long(x86_64.SYS_FUTEX), ctypes.c_void_p(address),
             ctypes.c_int(x86_64.FUTEX_WAKE_PRIVATE), ctypes.c_int(1))
