"""IRCompileLayer: LLVM modules in, relocatable ELF objects to the layer below.

The compiler is any callable ``module -> object bytes``;
:class:`SimpleCompiler` wraps an llvmlite TargetMachine (host triple, CPU
and features by default; triple, optimisation level, code model and
relocation model configurable).
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import llvmlite.binding as llvm

from ..errors import CompileError, ConfigurationError
from ..frontends.ir import (
    dispose,
    initialize_llvm,
    prepare_for_target,
    target_description,
)
from ..runtime.native_worker import NativeWorker, shared_worker
from ..runtime.native_worker import supported as native_worker_supported
from ..runtime.native_worker import wanted as native_worker_wanted
from ..symbols import SymbolResolver
from .base import ForwardingLayer, Handle, Layer

CODE_MODELS = ("small", "kernel", "medium", "large", "default", "jitdefault")
RELOC_MODELS = ("pic", "static", "dynamicnopic", "default")


def create_target_machine(triple: str | None = None, cpu: str | None = None,
                          features: str | None = None, opt_level: int = 2,
                          code_model: str = "small", reloc_model: str = "pic") -> llvm.TargetMachine:
    """A TargetMachine for the host unless told otherwise."""
    initialize_llvm()
    if code_model not in CODE_MODELS:
        raise ConfigurationError(f"code_model must be one of {CODE_MODELS}, not {code_model!r}")
    if reloc_model not in RELOC_MODELS:
        raise ConfigurationError(f"reloc_model must be one of {RELOC_MODELS}, not {reloc_model!r}")
    if not 0 <= opt_level <= 3:
        raise ConfigurationError(f"opt_level must be 0..3, not {opt_level!r}")
    host = triple is None
    if host:
        triple = llvm.get_process_triple()
        cpu = llvm.get_host_cpu_name() if cpu is None else cpu
        features = llvm.get_host_cpu_features().flatten() if features is None else features
    try:
        target = llvm.Target.from_triple(triple)
    except RuntimeError as e:
        raise ConfigurationError(f"unknown target triple {triple!r}: {e}") from None
    return target.create_target_machine(cpu=cpu or "", features=features or "", opt=opt_level,
                                        reloc=reloc_model, codemodel=code_model)


class SimpleCompiler:
    """Compiles a module to an ELF relocatable object with one TargetMachine.

    ``native_worker``: generate code on the process's native worker thread
    (:mod:`orcjit.runtime.native_worker`), which keeps LLVM from evicting
    the caller's caches; None (the default) uses it where it pays (x86-64
    Linux with two CPUs or more, not turned off by ``ORCJIT_NATIVE_WORKER=0``).
    """

    def __init__(self, target_machine: llvm.TargetMachine, native_worker: bool | None = None):
        if native_worker and not native_worker_supported():
            raise ConfigurationError("no native worker here (it needs x86-64 Linux)")
        self.target_machine = target_machine
        #: (triple, data layout) that modules without their own are given
        self.target = target_description(target_machine)
        self.native_worker = native_worker_wanted() if native_worker is None else native_worker
        self._lock = threading.Lock()    # a TargetMachine is not re-entrant

    def __call__(self, module: llvm.ModuleRef) -> bytes:
        prepare_for_target(module, *self.target)
        emit = _EmitObject.get() if self.native_worker else None
        with self._lock:
            try:
                if emit is not None:
                    return emit(shared_worker(), self.target_machine, module)
                return self.target_machine.emit_object(module)
            except RuntimeError as e:
                raise CompileError(f"code generation failed for module {module.name!r}: {e}") from None


_RETURNS_POINTER = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)
_RETURNS_SIZE = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p)
_RETURNS_NOTHING = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _EmitObject:
    """``TargetMachine.emit_object`` with its LLVM call made by a native
    worker: the C entry points llvmlite's own method calls, in its order."""

    _instance: _EmitObject | None = None
    _looked_up = False

    def __init__(self) -> None:
        lib = llvm.ffi.lib
        self._emit = _address_of(lib._lib.LLVMPY_TargetMachineEmitToMemory)
        self._buffer_start = _RETURNS_POINTER(_address_of(lib._lib.LLVMPY_GetBufferStart))
        self._buffer_size = _RETURNS_SIZE(_address_of(lib._lib.LLVMPY_GetBufferSize))
        self._dispose_buffer = _RETURNS_NOTHING(_address_of(lib._lib.LLVMPY_DisposeMemoryBuffer))
        self._dispose_string = _RETURNS_NOTHING(_address_of(lib._lib.LLVMPY_DisposeString))
        self._llvm_lock = lib._lock      # llvmlite's: one LLVM call at a time

    @classmethod
    def get(cls) -> _EmitObject | None:
        """The process's, or None if this llvmlite's internals differ (then
        ``emit_object`` is called as it is)."""
        if not cls._looked_up:
            try:
                cls._instance = cls()
            except AttributeError:
                cls._instance = None
            cls._looked_up = True
        return cls._instance

    def __call__(self, worker: NativeWorker, target_machine: llvm.TargetMachine,
                 module: llvm.ModuleRef) -> bytes:
        error = ctypes.c_void_p()
        with self._llvm_lock:
            buffer = worker.call(self._emit, _address_of(target_machine._ptr),
                                 _address_of(module._ptr), 1, ctypes.addressof(error))
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


def _address_of(pointer: Any) -> int:
    return ctypes.cast(pointer, ctypes.c_void_p).value or 0


class IRCompileLayer(ForwardingLayer):
    """Compiles each module of a set and adds the objects as one set below.

    Modules are consumed: once compiled, those :func:`~orcjit.frontends.ir.parse_ir`
    made are freed (others are left to their owner).
    """

    def __init__(self, base: Layer, compiler: Callable[[Any], bytes]):
        super().__init__(base)
        self.compiler = compiler
        self.codegen_seconds = 0.0

    def add_module_set(self, modules: Sequence[Any], memory_manager: Any = None,
                       resolver: SymbolResolver | None = None) -> Handle:
        objects, names = [], []
        for module in modules:
            start = time.perf_counter()
            objects.append(self.compiler(module))
            names.append(module.name or "<module>")
            dispose(module)     # compiled: the IR is done with (LLVM's work, timed with it)
            self.codegen_seconds += time.perf_counter() - start
        return self.base.add_module_set(objects, memory_manager, resolver, names=names)  # type: ignore[call-arg]
