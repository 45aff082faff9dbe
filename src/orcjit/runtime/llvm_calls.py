"""LLVM calls made without llvmlite's Python wrappers: the one module that
knows llvmlite's internals.

The heavy calls -- the IR pass pipeline, code generation -- are made by
the native worker (:mod:`orcjit.runtime.native_worker`).

Both run on the worker's core, so the IR the pipeline leaves warm in its
caches is what code generation reads next, and the calling thread's caches
keep the Python that links the result. They are the C entry points
llvmlite's own ``ModulePassManager.run`` and ``TargetMachine.emit_object``
call, in the same order; the LLVM call itself under llvmlite's lock. If
this llvmlite's internals differ (the entry points, their arity),
:meth:`LLVMOnWorker.get` returns None and callers use llvmlite's methods as
they are.

Parsing, naming and freeing a module (:func:`parse_assembly`) call
llvmlite's C entry points directly too: each lazily compiled function
does all three, and llvmlite's wrappers around those calls cost more
Python than the rest of the glue around LLVM. llvmlite's lock is held for
each call all the same.
"""

from __future__ import annotations

import ctypes
from typing import Any

import llvmlite.binding as llvm

from ..errors import CompileError, ConfigurationError
from .native_worker import shared_worker, supported, wanted

_RETURNS_POINTER = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)
_RETURNS_SIZE = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p)
_RETURNS_NOTHING = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

#: llvmlite's lock: one LLVM call at a time in the process
_LLVM_LOCK = llvm.ffi.lib._lock
#: what taking it comes down to while no callbacks (numba's, say) are
#: registered on it: its RLock alone; None where its internals differ
_LLVM_RLOCK = getattr(_LLVM_LOCK, "_lock", None)
_LOCK_CALLBACKS = getattr(_LLVM_LOCK, "_cblist", None)
if not isinstance(_LOCK_CALLBACKS, list):
    _LLVM_RLOCK = None


def _llvm_lock() -> Any:
    """llvmlite's lock to hold around an LLVM call, without the Python
    ``__enter__``/``__exit__`` of its wrapper when they would only take the RLock."""
    return _LLVM_LOCK if _LOCK_CALLBACKS or _LLVM_RLOCK is None else _LLVM_RLOCK


class LLVMOnWorker:
    """Runs pass pipelines and generates code on the process's native worker."""

    _instance: LLVMOnWorker | None = None
    _looked_up = False

    def __init__(self) -> None:
        wrapped = llvm.ffi.lib
        if (len(wrapped.LLVMPY_RunNewModulePassManager.argtypes) != 3
                or len(wrapped.LLVMPY_TargetMachineEmitToMemory.argtypes) != 4):
            raise AttributeError("llvmlite entry points changed")
        lib = wrapped._lib
        self._run_passes = _address_of(lib.LLVMPY_RunNewModulePassManager)
        self._emit = _address_of(lib.LLVMPY_TargetMachineEmitToMemory)
        self._buffer_start = _RETURNS_POINTER(_address_of(lib.LLVMPY_GetBufferStart))
        self._buffer_size = _RETURNS_SIZE(_address_of(lib.LLVMPY_GetBufferSize))
        self._dispose_buffer = _RETURNS_NOTHING(_address_of(lib.LLVMPY_DisposeMemoryBuffer))
        self._dispose_string = _RETURNS_NOTHING(_address_of(lib.LLVMPY_DisposeString))
        #: (target machine, its pointer) of the latest emit: machines rarely change
        self._machine: tuple[Any, int] = (None, 0)
        if not all((self._run_passes, self._emit)):
            raise AttributeError("llvmlite entry points not found")

    @classmethod
    def get(cls) -> LLVMOnWorker | None:
        """The process's, or None where llvmlite's internals differ."""
        if not cls._looked_up:
            try:
                cls._instance = cls()
            except AttributeError:
                cls._instance = None
            cls._looked_up = True
        return cls._instance

    def run_passes(self, manager: Any, module: llvm.ModuleRef, builder: Any) -> None:
        """``manager.run(module, builder)`` for a new-style ModulePassManager."""
        arguments = _pointer(manager), _pointer(module), _pointer(builder)
        worker = shared_worker()
        with _llvm_lock():
            worker.call(self._run_passes, *arguments)

    def emit_object(self, target_machine: llvm.TargetMachine, module: llvm.ModuleRef) -> bytes:
        """``target_machine.emit_object(module)``; RuntimeError with LLVM's message."""
        machine, pointer = self._machine
        if machine is not target_machine or target_machine._closed:
            pointer = _pointer(target_machine)
            self._machine = target_machine, pointer
        error = ctypes.c_void_p()
        arguments = pointer, _pointer(module), 1, ctypes.addressof(error)
        worker = shared_worker()
        with _llvm_lock():
            buffer = worker.call(self._emit, *arguments)
        message = ""
        if error.value:
            message = ctypes.string_at(error.value).decode("utf-8", "replace")
            self._dispose_string(error.value)
        if not buffer:
            raise RuntimeError(message or "LLVM did not say why")
        try:
            return ctypes.string_at(self._buffer_start(buffer), self._buffer_size(buffer))
        finally:
            self._dispose_buffer(buffer)


def llvm_on_worker(native_worker: bool | None) -> LLVMOnWorker | None:
    """What a compiler or pass pipeline given the ``native_worker`` option
    calls: the worker's calls (True, or None where a worker pays: see
    :func:`~orcjit.runtime.native_worker.wanted`), or None for llvmlite's
    own methods. The worker starts now, not within the first compile."""
    if native_worker and not supported():
        raise ConfigurationError("no native worker here (it needs x86-64 Linux)")
    use = wanted() if native_worker is None else native_worker
    calls = LLVMOnWorker.get() if use else None
    if calls is not None:
        shared_worker()
    return calls


def _address_of(function: Any) -> int:
    return ctypes.cast(function, ctypes.c_void_p).value or 0


def _pointer(reference: Any) -> int:
    """An llvmlite object's C pointer; a closed one raises (llvmlite's own
    calls refuse it too) rather than reach LLVM as NULL."""
    if getattr(reference, "_closed", False):
        raise CompileError(f"cannot use a {type(reference).__name__} that was closed")
    pointer = ctypes.c_void_p.from_buffer(reference._ptr).value
    if not pointer:
        raise CompileError(f"cannot use a {type(reference).__name__} that is a null pointer")
    return pointer


class ParsedModule(llvm.ModuleRef):
    """A ModuleRef that :func:`parse_assembly` made: its name is also kept
    on the Python side, and it is freed through the C entry point directly."""

    _name: str | None = None

    @property
    def name(self) -> str:
        if self._name is None:
            self._name = llvm.ModuleRef.name.fget(self)  # type: ignore[attr-defined]
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        llvm.ModuleRef.name.fset(self, value)  # type: ignore[attr-defined]
        self._name = value

    def close(self) -> None:
        if not self._closed:
            if not self._owned:          # (an execution engine may own it now)
                with _llvm_lock():
                    _MODULE_CALLS.dispose(self._ptr)  # type: ignore[union-attr]  # (made only with them)
            self.detach()

    def __del__(self) -> None:
        if not self._closed:             # freed already, as modules usually are
            super().__del__()


class _ModuleCalls:
    """llvmlite's entry points for parsing, naming and freeing a module (with
    llvmlite's own argument and result types), and its lock."""

    def __init__(self) -> None:
        wrapped = llvm.ffi.lib
        if (len(wrapped.LLVMPY_ParseAssembly.argtypes) != 3
                or len(wrapped.LLVMPY_SetModuleName.argtypes) != 2
                or len(wrapped.LLVMPY_DisposeModule.argtypes) != 1
                or not all(hasattr(llvm.ModuleRef, attribute)
                           for attribute in ("_closed", "_owned", "detach", "__del__"))):
            raise AttributeError("llvmlite entry points changed")
        lib = wrapped._lib
        self.parse = lib.LLVMPY_ParseAssembly
        self.set_name = lib.LLVMPY_SetModuleName
        self.dispose = lib.LLVMPY_DisposeModule
        self.dispose_string = _RETURNS_NOTHING(_address_of(lib.LLVMPY_DisposeString))

    @staticmethod
    def find() -> _ModuleCalls | None:
        try:
            return _ModuleCalls()
        except AttributeError:
            return None


_MODULE_CALLS = _ModuleCalls.find()


def parse_assembly(text: str, context: llvm.ContextRef, name: str | None = None) -> llvm.ModuleRef:
    """``llvm.parse_assembly(text, context)``, named ``name`` if given;
    RuntimeError with LLVM's message, as llvmlite raises."""
    calls = _MODULE_CALLS
    if calls is None:
        module = llvm.parse_assembly(text, context=context)
        if name:
            module.name = name
        return module
    error = ctypes.c_char_p()
    with _llvm_lock():
        pointer = calls.parse(context, text.encode(), ctypes.byref(error))
        if pointer and name and not error:
            calls.set_name(pointer, name.encode())
    if error or not pointer:
        message = (error.value or b"").decode("utf-8", "replace")
        with _llvm_lock():
            calls.dispose(pointer)
            calls.dispose_string(ctypes.cast(error, ctypes.c_void_p))
        raise RuntimeError(f"LLVM IR parsing error\n{message}")
    module = ParsedModule(pointer, context)
    module._name = name or None
    return module
