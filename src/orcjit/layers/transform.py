"""IRTransformLayer: apply a transform to every module before the layer below.

A transform is any callable ``module -> module`` (it may change the module
in place and return it). :func:`optimization_pipeline` builds the standard
-O0..-O3 pipelines through llvmlite's new pass manager.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import llvmlite.binding as llvm

from ..errors import ConfigurationError
from ..runtime.llvm_calls import llvm_on_worker
from ..symbols import SymbolResolver
from .base import ForwardingLayer, Handle, Layer


def ir_level(opt_level: int, ir_opt_level: int | None) -> int:
    """The IR pipeline's level: ``ir_opt_level`` if given, else the codegen level."""
    return opt_level if ir_opt_level is None else ir_opt_level


#: modules one PassBuilder optimises before it is replaced (see optimization_pipeline)
BUILDER_RUNS = 64


def optimization_pipeline(target_machine: llvm.TargetMachine, level: int = 2,
                          native_worker: bool | None = None
                          ) -> Callable[[llvm.ModuleRef], llvm.ModuleRef]:
    """The default module pipeline at ``-O<level>`` for ``target_machine``.

    Works around three llvmlite 0.50 pitfalls, each measured (see
    bench/README.md): a module pass manager cannot run twice (the process
    aborts), is never freed by its own ``close`` (~85 KB per module), and
    every run adds callbacks to the PassBuilder that are never removed (a
    shared builder gets 10x slower over 2,000 modules), while each new
    builder keeps ~1.5 KB after it is closed. So each module gets a fresh
    pass manager, freed explicitly, and a builder serves ``BUILDER_RUNS``
    modules. Measured on a 3-function module (per module: bytes kept, time):
    a builder per module 1,450 B / 568 us; per 16: 149 B / 569 us; per 32:
    102 B / 614 us; per 64: 71 B / 709 us. Long-running hosts add and remove
    modules for hours, so memory wins: 64.

    At -O0 the pipeline only inlines always-inline functions, instruments
    functions for -finstrument-functions and lowers coroutines. A module that
    :func:`~orcjit.frontends.ir.parse_ir` read from text with none of these
    (``_orcjit_inert_at_o0``) would come out unchanged, so it skips the
    pipeline: ~90 us per lazily compiled function (bench/README.md). A
    transform that adds any of them to such a module before this one must
    delete that attribute.

    ``native_worker``: run the pipeline on the native worker, where code
    generation runs too (see :class:`~orcjit.layers.compile.SimpleCompiler`).
    """
    if not 0 <= level <= 3:
        raise ConfigurationError(f"optimisation level must be 0..3, not {level!r}")
    on_worker = llvm_on_worker(native_worker)
    lock = threading.Lock()      # the target machine and builder are shared
    tuning = llvm.create_pipeline_tuning_options(speed_level=level)
    state: dict[str, Any] = {"builder": None, "runs": 0}

    def optimize(module: llvm.ModuleRef) -> llvm.ModuleRef:
        if level == 0 and getattr(module, "_orcjit_inert_at_o0", False):
            return module
        with lock:
            if state["builder"] is None or state["runs"] >= BUILDER_RUNS:
                if state["builder"] is not None:
                    state["builder"].close()
                state["builder"], state["runs"] = llvm.create_pass_builder(target_machine,
                                                                           tuning), 0
            builder = state["builder"]
            state["runs"] += 1
            manager = builder.getModulePassManager()
            try:
                if on_worker is not None:
                    on_worker.run_passes(manager, module, builder)
                else:
                    manager.run(module, builder)
            finally:
                _free_pass_manager(manager)
        return module

    # llvmlite does not keep these alive for each other: hold them
    optimize.keepalive = (target_machine, tuning)  # type: ignore[attr-defined]
    optimize.level = level  # type: ignore[attr-defined]
    return optimize


def _free_pass_manager(manager: Any) -> None:
    """Really free a module pass manager.

    In llvmlite 0.50 ``ModulePassManager`` inherits ``ObjectRef._dispose`` (a
    no-op) ahead of ``NewPassManager._dispose``, so ``close`` frees nothing.
    """
    from llvmlite.binding import ffi
    from llvmlite.binding.newpassmanagers import NewPassManager

    if type(manager)._dispose is ffi.ObjectRef._dispose:
        NewPassManager._dispose(manager)
        manager.detach()
    else:
        manager.close()


class IRTransformLayer(ForwardingLayer):
    """Runs ``transform`` on each module, then adds the set to ``base``."""

    def __init__(self, base: Layer, transform: Callable[[Any], Any]):
        super().__init__(base)
        self.transform = transform
        self.transform_seconds = 0.0

    def add_module_set(self, modules: Sequence[Any], memory_manager: Any = None,
                       resolver: SymbolResolver | None = None) -> Handle:
        start = time.perf_counter()
        transformed = list(map(self.transform, modules))
        self.transform_seconds += time.perf_counter() - start
        return self.base.add_module_set(transformed, memory_manager, resolver)
