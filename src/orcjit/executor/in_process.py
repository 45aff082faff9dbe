"""The in-process executor: JIT'd code runs in this Python process.

Memory is a memfd mapped twice: a *target view* whose pages get their final
protection (RX, R or RW) and a *write view* that is always RW and never
executable. No mapping is ever writable and executable at once, code can
be patched later (stubs) without flipping protections, and freed ranges
are punched out of the memfd so their memory goes back to the system.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ExecutorError
from .base import ActionCall, Executor, FinalizeRequest, Protection

_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                  ctypes.c_int, ctypes.c_long]
_munmap = _libc.munmap
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_mprotect = _libc.mprotect
_mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_fallocate = _libc.fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
_dlopen = _libc.dlopen
_dlopen.restype = ctypes.c_void_p
_dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
_dlsym = _libc.dlsym
_dlsym.restype = ctypes.c_void_p
_dlsym.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_dlerror = _libc.dlerror
_dlerror.restype = ctypes.c_char_p

_MAP_FAILED = ctypes.c_void_p(-1).value
_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 0x1, 0x2
_PROT_NONE = 0
_MASK64 = (1 << 64) - 1
_RTLD_NOW, _RTLD_GLOBAL = 0x2, 0x100


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise ExecutorError(f"{what} failed: {os.strerror(err)}")


@dataclass(slots=True)
class _Reservation:
    base: int
    size: int
    fd: int
    write_view: int            # the address of the write view (for munmap)
    #: the write view as a buffer: copies into it are one slice assignment
    view: memoryview
    #: the same as 64-bit words: a pointer is stored with one aligned 8-byte write
    words: memoryview


#: What one initialize did, for deinitialize: (ranges, deallocate actions) --
#: ((address, span, protected by initialize), ...) and ((function, args), ...).
#: Plain tuples of ints, which the collector stops tracking (a NamedTuple
#: instance it would track for good: one per lazily compiled function).
_Initialized = tuple[tuple[tuple[int, int, bool], ...], tuple[tuple[int, tuple[int, ...]], ...]]


class InProcessExecutor(Executor):
    """Runs JIT'd code in this process (the default executor)."""

    def __init__(self) -> None:
        self.page_size = mmap.PAGESIZE
        self._reservations: list[_Reservation] = []
        self._initialized: dict[int, _Initialized] = {}
        self._lock = threading.Lock()
        self._call_cache: dict[tuple[int, int], Any] = {}

    # -- memory ----------------------------------------------------------
    def reserve(self, size: int) -> int:
        size = -(-size // self.page_size) * self.page_size
        try:
            fd = os.memfd_create("orcjit", os.MFD_CLOEXEC)
        except OSError as e:
            raise ExecutorError(f"cannot create JIT memory: {e.strerror}") from None
        try:
            try:
                os.ftruncate(fd, size)
            except OSError as e:
                raise ExecutorError(f"cannot reserve {size} bytes: {e.strerror}") from None
            target = _mmap(None, size, _PROT_NONE, mmap.MAP_SHARED, fd, 0)
            if target in (None, _MAP_FAILED):
                raise ExecutorError(f"cannot reserve {size} bytes: "
                                    f"{os.strerror(ctypes.get_errno())}")
            write = _mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
            if write in (None, _MAP_FAILED):
                _munmap(target, size)
                raise ExecutorError(f"cannot map a write view: {os.strerror(ctypes.get_errno())}")
        except BaseException:
            os.close(fd)
            raise
        view = memoryview((ctypes.c_char * size).from_address(write)).cast("B")
        with self._lock:
            self._reservations.append(_Reservation(target, size, fd, write, view, view.cast("Q")))
        return target

    def _reservation(self, address: int, size: int) -> _Reservation:
        for r in self._reservations:
            if r.base <= address and address + size <= r.base + r.size:
                return r
        raise ExecutorError(f"[{address:#x}, +{size:#x}) is not in reserved JIT memory")

    def protect(self, address: int, size: int, protection: Protection) -> None:
        if protection & Protection.WRITE and protection & Protection.EXEC:
            raise ExecutorError("refusing pages that are writable and executable at once")
        self._reservation(address, size)
        _check(_mprotect(address, size, int(protection)), "mprotect")

    def initialize(self, request: FinalizeRequest) -> int:
        ranges = []
        key = 0
        for seg in request.segments:
            r = self._reservation(seg.address, seg.size)
            n = len(seg.content)
            if n > seg.size:
                raise ExecutorError("segment content larger than the segment")
            start = seg.address - r.base
            # freed pages were punched out of the memfd: the rest is zero already
            r.view[start:start + n] = seg.content
            span = -(-seg.size // self.page_size) * self.page_size
            if seg.protection is not None:
                self.protect(seg.address, span, seg.protection)
            ranges.append((seg.address, span, seg.protection is not None))
            if not key or seg.address < key:
                key = seg.address
        deallocate = []
        for finalize, undo in request.actions:
            self.call(finalize)
            if undo is not None:
                deallocate.append((undo.function, undo.args))   # a plain tuple: the collector skips it
        with self._lock:
            self._initialized[key] = (tuple(ranges), tuple(deallocate))
        return key

    def deinitialize(self, key: int) -> None:
        with self._lock:
            state = self._initialized.pop(key, None)
        if state is None:
            raise ExecutorError(f"no initialized allocation at {key:#x}")
        ranges, deallocate = state
        for action in reversed(deallocate):
            self.call(ActionCall(*action))
        for address, span, protected_here in ranges:
            if protected_here:
                _check(_mprotect(address, span, _PROT_NONE), "mprotect")
                self.discard(address, span)

    def discard(self, address: int, size: int) -> None:
        if address % self.page_size or size % self.page_size:
            raise ExecutorError(f"discard [{address:#x}, +{size:#x}) is not whole pages")
        r = self._reservation(address, size)
        _check(_fallocate(r.fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE,
                          address - r.base, size), "fallocate")

    def release(self, base: int) -> None:
        with self._lock:
            for i, r in enumerate(self._reservations):
                if r.base == base:
                    del self._reservations[i]
                    break
            else:
                raise ExecutorError(f"no reservation at {base:#x}")
        r.words.release()
        r.view.release()
        _munmap(r.write_view, r.size)
        _munmap(r.base, r.size)
        os.close(r.fd)

    def write(self, address: int, data: bytes) -> None:
        r = self._reservation(address, len(data))
        start = address - r.base
        r.view[start:start + len(data)] = data

    def write_pointer(self, address: int, value: int) -> None:
        if address % 8:
            raise ExecutorError(f"pointer at {address:#x} is not 8-byte aligned")
        r = self._reservation(address, 8)
        r.words[(address - r.base) >> 3] = value & _MASK64   # (wrapped, as a uint64_t store)

    def read(self, address: int, size: int) -> bytes:
        r = self._reservation(address, size)
        start = address - r.base
        return bytes(r.view[start:start + size])

    # -- symbols ---------------------------------------------------------
    def load_library(self, path: str | None) -> int:
        handle = _dlopen(None if path is None else os.fsencode(path), _RTLD_NOW | _RTLD_GLOBAL)
        if not handle:
            message = _dlerror()
            raise ExecutorError(f"cannot load library {path}: "
                                f"{message.decode(errors='replace') if message else 'dlopen failed'}")
        return handle

    def lookup(self, handle: int, name: str) -> int:
        return _dlsym(handle, name.encode("utf-8", "surrogateescape")) or 0

    # -- calls -----------------------------------------------------------
    def call(self, call: ActionCall) -> int:
        key = (call.function, len(call.args))
        function = self._call_cache.get(key)
        if function is None:      # the same few (eh-frame registration) come back again and again
            if len(self._call_cache) >= 64:
                self._call_cache.clear()          # constructors etc.: addresses come and go
            prototype = ctypes.CFUNCTYPE(ctypes.c_uint64, *[ctypes.c_uint64] * len(call.args))
            function = self._call_cache[key] = prototype(call.function)
        return function(*call.args)

    def run_as_main(self, address: int, argv: Sequence[str],
                    envp: Sequence[str] | None = None) -> int:
        args = [os.fsencode(a) for a in argv]
        c_argv = (ctypes.c_char_p * (len(args) + 1))(*args, None)
        if envp is None:
            envp = [f"{k}={v}" for k, v in os.environ.items()]
        env = [os.fsencode(e) for e in envp]
        c_envp = (ctypes.c_char_p * (len(env) + 1))(*env, None)
        char_pp = ctypes.POINTER(ctypes.c_char_p)
        main = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, char_pp, char_pp)(address)
        return main(len(args), c_argv, c_envp)   # a two-argument main ignores envp

    def close(self) -> None:
        for r in list(self._reservations):
            self.release(r.base)
