"""IRCompileLayer: LLVM modules in, relocatable ELF objects to the layer below.

The compiler is any callable ``module -> object bytes``;
:class:`SimpleCompiler` wraps an llvmlite TargetMachine (host triple, CPU
and features by default; triple, optimisation level, code model and
relocation model configurable).
"""

from __future__ import annotations

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
from ..runtime.llvm_calls import llvm_on_worker
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
        self.target_machine = target_machine
        #: (triple, data layout) that modules without their own are given
        self.target = target_description(target_machine)
        self._on_worker = llvm_on_worker(native_worker)
        self.native_worker = self._on_worker is not None
        self._lock = threading.Lock()    # a TargetMachine is not re-entrant

    def __call__(self, module: llvm.ModuleRef) -> bytes:
        if getattr(module, "closed", False):
            raise CompileError("cannot compile a module that was disposed")
        prepare_for_target(module, *self.target)
        with self._lock:
            try:
                if self._on_worker is not None:
                    return self._on_worker.emit_object(self.target_machine, module)
                return self.target_machine.emit_object(module)
            except RuntimeError as e:
                raise CompileError(f"code generation failed for module {module.name!r}: {e}") from None


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
