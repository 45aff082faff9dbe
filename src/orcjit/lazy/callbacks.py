"""CompileCallbackManager: trampolines that call back into Python to compile.

Each trampoline is ``call *resolver(%rip)``; the resolver routine (machine
code, see :func:`orcjit.arch.x86_64.resolver_code`) saves every argument
register, calls our ctypes callback with the trampoline's return address,
and jumps to whatever address the callback returns, restoring the
registers first. ctypes takes the GIL for the callback, also on threads
Python never created (pthreads started by JIT'd code).

If compilation fails there is nothing sensible to return into: the error
is printed (with a traceback if ``ORCJIT_DEBUG`` is set) and the callback
returns the address of a trap (``ud2``), so the process stops at once
instead of jumping into garbage.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import traceback
from collections.abc import Callable
from types import ModuleType

from ..arch import x86_64
from ..errors import JITError
from ..link.memory import MemoryPool

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64)
_TRAP = b"\x0f\x0b"   # ud2


class CompileCallbackManager:
    """Hands out trampolines; calling one runs its Python ``compile`` function once."""

    def __init__(self, pool: MemoryPool, arch: ModuleType = x86_64, block_size: int = 512):
        self.pool = pool
        self.arch = arch
        self.block_size = block_size
        self._entry = _CALLBACK(self._on_call)       # kept alive as long as we are
        self._callbacks: dict[int, Callable[[], int]] = {}
        self._free: list[int] = []
        self._memories: list[object] = []
        self._lock = threading.Lock()
        self.resolver_address = 0
        self.trap_address = 0
        #: called instead of returning the trap when a compilation fails; it
        #: must not return (e.g. a command-line tool exits with a status)
        self.on_failure: Callable[[BaseException], None] | None = None

    def _ensure_resolver(self) -> None:
        if self.resolver_address:
            return
        code = self.arch.resolver_code(ctypes.cast(self._entry, ctypes.c_void_p).value,
                                       xsave=self.arch.host_supports_xsave())
        memory = self.pool.create_memory_manager()
        base, _, _ = memory.allocate([len(code) + len(_TRAP) + 16, 0, 0])
        memory.finalize([code + b"\xcc" * 16 + _TRAP, b"", b""])
        self._memories.append(memory)
        self.resolver_address = base
        self.trap_address = base + len(code) + 16

    def _grow(self) -> None:
        self._ensure_resolver()
        n = self.block_size
        size = self.arch.TRAMPOLINE_SIZE
        memory = self.pool.create_memory_manager()
        code_base, slot, _ = memory.allocate([n * size, 8, 0])
        code = b"".join(self.arch.trampoline_code(code_base + i * size, slot) for i in range(n))
        memory.finalize([code, self.resolver_address.to_bytes(8, "little"), b""])
        self._memories.append(memory)
        self._free.extend(code_base + i * size for i in reversed(range(n)))

    def get_compile_callback(self, compile: Callable[[], int]) -> int:
        """A trampoline address; the first call through it runs ``compile()``,
        which must return the address to continue at (and usually repoints
        the stub that led here, so later calls skip the trampoline)."""
        with self._lock:
            if not self._free:
                self._grow()
            trampoline = self._free.pop()
            self._callbacks[trampoline] = compile
        return trampoline

    def release(self, trampoline: int) -> None:
        with self._lock:
            if self._callbacks.pop(trampoline, None) is not None:
                self._free.append(trampoline)

    def _on_call(self, return_address: int) -> int:
        trampoline = return_address - self.arch.TRAMPOLINE_RETURN_OFFSET
        compile = self._callbacks.get(trampoline)
        try:
            if compile is None:
                raise JITError(f"no compile callback at {trampoline:#x}")
            return compile()
        except BaseException as error:
            # nothing to return into: say why, then stop at a ud2
            print(f"orcjit: JIT session error: {error}", file=sys.stderr, flush=True)
            if os.environ.get("ORCJIT_DEBUG"):
                traceback.print_exc()
            if self.on_failure is not None:
                self.on_failure(error)
            return self.trap_address

    def close(self) -> None:
        with self._lock:
            for memory in self._memories:
                memory.deallocate()  # type: ignore[attr-defined]
            self._memories.clear()
            self._callbacks.clear()
            self._free.clear()
            self.resolver_address = 0
