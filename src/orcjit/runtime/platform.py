"""Platform runtime for JIT'd code: constructors, destructors, atexit, eh-frames.

Each object set is its own "DSO": a set whose code mentions ``__dso_handle``
gets its own (the partitions of a lazily compiled module share one), so the
destructors JIT'd code registers with ``__cxa_atexit`` (C++ globals and
function-local statics) are kept per set and run when that set is removed,
before its memory goes -- not at process exit, when it would be gone.
``atexit`` registrations, which name no DSO, run when the JIT closes,
before any set is removed.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence

from ..executor.base import ActionCall, Executor
from .debugger import GDBJITRegistrar
from .eh_frame import FrameRegistrar

_CXA_ATEXIT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_ATEXIT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


class Platform:
    """Runs static initialisers and finalisers, routes atexit registrations."""

    def __init__(self, executor: Executor):
        self.executor = executor
        self.frames = FrameRegistrar()
        self.debugger = GDBJITRegistrar()
        self._registrations: dict[int, list[tuple[int, int]]] = {}
        self._lock = threading.Lock()
        self._cxa_atexit = _CXA_ATEXIT(self._register)
        self._atexit = _ATEXIT(lambda function: self._register(function, 0, 0))
        #: the runtime functions the platform provides, by name (the linker binds to
        #: them before asking a set's resolver)
        self.symbols: dict[str, int] = {
            "__cxa_atexit": ctypes.cast(self._cxa_atexit, ctypes.c_void_p).value or 0,
            "atexit": ctypes.cast(self._atexit, ctypes.c_void_p).value or 0,
            # GDB's JIT interface (ours unless the process has its own)
            "__jit_debug_descriptor": self.debugger.descriptor_address,
            "__jit_debug_register_code": self.debugger.register_code_address,
        }

    def _register(self, function: int | None, argument: int | None, dso: int | None) -> int:
        with self._lock:
            self._registrations.setdefault(dso or 0, []).append((function or 0, argument or 0))
        return 0

    def has_registrations(self, dso_handle: int) -> bool:
        """Whether JIT'd code registered destructors under ``dso_handle`` (not 0)."""
        return bool(dso_handle) and dso_handle in self._registrations

    def run_initializers(self, initializers: Sequence[int]) -> None:
        for address in initializers:
            self.executor.call(ActionCall(address))

    def run_finalizers(self, dso_handle: int, finalizers: Sequence[int]) -> None:
        """atexit-registered destructors of the set (latest first), then its fini arrays."""
        if dso_handle:
            with self._lock:
                registered = self._registrations.pop(dso_handle, [])
            for function, argument in reversed(registered):
                self.executor.call(ActionCall(function, (argument,)))
        for address in finalizers:
            self.executor.call(ActionCall(address))

    def run_exit_handlers(self) -> None:
        """Run the registrations that named no set (plain ``atexit``), latest
        first -- before any set is removed: their code must still be there."""
        with self._lock:
            registered = self._registrations.pop(0, [])
        for function, argument in reversed(registered):
            self.executor.call(ActionCall(function, (argument,)))

    def close(self) -> None:
        """Run the exit handlers registered since :meth:`run_exit_handlers`
        (by destructors, say; if their code went with its set, so be it)."""
        self.run_exit_handlers()
