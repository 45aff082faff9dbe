"""Ready-made compositions of the layers.

:class:`JIT` is the JIT for people who do not want to stack layers. On the
shared :class:`~orcjit.stack.LayerStack` (optimiser -> compiler -> linker)
it adds, when asked::

    lazy=True:      CompileOnDemandLayer(stubs, compile callbacks) on top
    tiered=True:    a quick -O0 stack for first calls; the optimiser recompiles
    lazy="module":  LazyEmitLayer on top
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .errors import ConfigurationError, JITError
from .executor.base import Executor
from .frontends.ir import IRSource, dispose, parse_ir, prepare_for_target
from .layers.base import Handle, Layer
from .layers.compile import IRCompileLayer, SimpleCompiler, create_target_machine
from .layers.compile_on_demand import INDIRECTIONS, CompileOnDemandLayer
from .layers.lazy_emit import LazyEmitLayer
from .layers.transform import IRTransformLayer, optimization_pipeline
from .lazy import CompileCallbackManager
from .link.archive import Archive, ArchiveMembers
from .signatures import to_prototype
from .stack import BinaryInput, LayerStack, read_binary
from .symbols import InDylib


class JIT(LayerStack):
    """An eager JIT: IR in, ready-to-call functions out.

    >>> with JIT() as jit:
    ...     jit.add_ir("define i32 @add(i32 %a, i32 %b) { %s = add i32 %a, %b ret i32 %s }")
    ...     jit.lookup("add", "int(int, int)")(2, 3)
    5
    """

    def __init__(self, *, opt_level: int = 2, triple: str | None = None, cpu: str | None = None,
                 features: str | None = None, code_model: str = "small",
                 reloc_model: str = "pic", executor: Executor | None = None,
                 process_symbols: bool = True, ir_opt_level: int | None = None,
                 lazy: bool | str = False, indirection: str = "double",
                 tiered: bool = False, native_worker: bool | None = None):
        super().__init__(opt_level=opt_level, triple=triple, cpu=cpu, features=features,
                         code_model=code_model, reloc_model=reloc_model, executor=executor,
                         process_symbols=process_symbols, ir_opt_level=ir_opt_level,
                         native_worker=native_worker)
        self.top: Layer = self.optimizer
        self.lazy: CompileOnDemandLayer | None = None
        self._tier1_compiler: IRCompileLayer | None = None
        self._tier1_optimizer: IRTransformLayer | None = None
        self.deferred: LazyEmitLayer | None = None
        if lazy not in (False, True, "function", "module"):
            raise ConfigurationError(f"lazy must be False, True/'function' or 'module', not {lazy!r}")
        if indirection not in INDIRECTIONS:
            raise ConfigurationError(f"indirection must be one of {sorted(INDIRECTIONS)}, "
                             f"not {indirection!r}")
        if tiered and lazy not in (True, "function"):
            raise ConfigurationError("tiered=True needs lazy=True: only the stubs of "
                                     "per-function laziness let a body be swapped")
        if lazy == "module":
            self.deferred = LazyEmitLayer(self.optimizer, resolver=self.linker.resolver)
            self.top = self.deferred
        elif lazy:
            pool = self.linker.memory_pool
            stubs_kind, patch_call_sites = INDIRECTIONS[indirection]
            first_tier: Layer = self.optimizer
            if tiered:
                # tier 1: -O0 (FastISel), fast to compile; tier 2 (the stack above)
                # recompiles what ran in the background
                quick = create_target_machine(triple, cpu, features, 0, code_model, reloc_model)
                self._tier1_compiler = IRCompileLayer(self.linker,
                                                      SimpleCompiler(quick, native_worker))
                tier1_pipeline = optimization_pipeline(quick, 0, native_worker)
                self._tier1_optimizer = IRTransformLayer(self._tier1_compiler, tier1_pipeline)
                first_tier = self._tier1_optimizer
            self.lazy = CompileOnDemandLayer(first_tier, stubs_kind(pool),
                                             CompileCallbackManager(pool),
                                             resolver=self.linker.resolver,
                                             patch_call_sites=patch_call_sites,
                                             optimizing_base=self.optimizer if tiered else None)
            self.top = self.lazy
        self._archives: ArchiveMembers | None = None
        self._parse_seconds = 0.0
        self._add_seconds = 0.0
        self._closed = False

    # -- adding code ------------------------------------------------------------
    def add_ir(self, source: IRSource | list[IRSource], name: str | None = None,
               dylib: str = "") -> Handle:
        """Compile and link a module (text, bitcode, llvmlite module); returns its handle.

        A list of modules is added as one set: they may refer to each other.
        ``dylib`` names a JITDylib: hidden symbols are visible only inside
        their own (the default one is "").
        Eagerly, linking happens now, so errors (invalid IR, unresolved or
        duplicate symbols) surface here and leave the JIT exactly as it was;
        lazily, a set waits for its first call.
        """
        self._check_open()
        start = time.perf_counter()
        sources = source if isinstance(source, list) else [source]
        modules = []
        try:
            for item in sources:
                modules.append(self._parse(item, name))
            self._parse_seconds += time.perf_counter() - start
            resolver = InDylib(self.linker.resolver, dylib) if dylib else None
            handle = self.top.add_module_set(modules, None, resolver)
            if self.top is self.optimizer:
                self._emit(handle)
        finally:
            if self.deferred is None:
                for module in modules:
                    dispose(module)   # compiled (or cut into text): nothing else needs it
            self._add_seconds += time.perf_counter() - start
        return handle

    def _parse(self, source: IRSource, name: str | None = None) -> Any:
        """parse_ir, plus target lines for a lazy JIT: the module is printed and
        cut into partitions, and every partition should carry them."""
        module = parse_ir(source, name)
        if self.lazy is not None:
            prepare_for_target(module, *self.target)
        return module

    def add_object(self, data: BinaryInput, name: str | None = None) -> Handle:
        """Link a relocatable ELF object (its bytes or a path); returns its handle."""
        self._check_open()
        start = time.perf_counter()
        try:
            data, default = read_binary(data, "<object>")
            handle = self.linker.add_object_set([data], names=[name or default])
            self._emit(handle)
        finally:
            self._add_seconds += time.perf_counter() - start
        return handle

    def add_archive(self, data: BinaryInput, name: str | None = None) -> None:
        """Add a static archive (its bytes or a path): a member is linked when one
        of its symbols is needed."""
        self._check_open()
        data, default = read_binary(data, "<archive>")
        if self._archives is None:
            self._archives = ArchiveMembers(self.linker)
            self.linker.definition_generators.append(self._archives)
        self._archives.add(Archive(data, name or default))

    def _emit(self, handle: Handle) -> None:
        """Link a set now; if that fails, remove it and the archive members
        that failed with it: the JIT is left as it was."""
        try:
            self.linker.emit(handle)
        except BaseException:
            self.linker.remove_object_set(handle)
            if self._archives is not None:
                self._archives.drop_failed()
            raise

    def replace(self, handle: Handle, source: IRSource) -> None:
        """Swap in new bodies for the functions of a set while it runs (lazy JITs).

        Each call runs the old body or the new one; global variables the set
        already has keep their values. Old bodies are kept until
        :meth:`release_replaced` or :meth:`remove`, since a thread may still
        be inside one.
        """
        self._check_open()
        if self.lazy is None:
            raise JITError("replace() needs a lazy JIT (JIT(lazy=True)): only calls "
                           "through stubs can be redirected")
        module = self._parse(source)
        try:
            self.lazy.replace(handle, [module])
        finally:
            dispose(module)

    def wait_for_optimizations(self, timeout: float | None = None) -> bool:
        """With ``tiered=True``: wait until functions that ran are recompiled at
        full optimisation (True), or the timeout passes (False)."""
        if self.lazy is None or self.lazy.optimizer is None:
            return True
        return self.lazy.optimizer.wait(timeout)

    def release_replaced(self, handle: Handle) -> int:
        """Free bodies retired by :meth:`replace` -- once no thread can be running them."""
        self._check_open()
        if self.lazy is None:
            return 0
        return self.lazy.release_replaced(handle)

    def remove(self, handle: Handle) -> None:
        """Run the set's destructors and free all its memory."""
        self._check_open()
        for layer in (self.lazy, self.deferred):
            if layer is not None and layer.owns(handle):
                layer.remove_module_set(handle)
                return
        self.linker.remove_object_set(handle)

    # -- symbols ------------------------------------------------------------------
    def address(self, name: str) -> int:
        """Address of a JIT'd symbol, or 0 if none is defined."""
        self._check_open()
        return self.top.get_symbol_address(name, exported_symbols_only=False)

    def lookup(self, name: str, signature: str | type) -> Callable[..., Any]:
        """A ctypes callable for a JIT'd function; raises JITError if it is not defined."""
        address = self.address(name)
        if not address:
            raise JITError(f"symbol {name!r} is not defined in this JIT")
        function = to_prototype(signature)(address)
        function.__name__ = name
        return function

    def define(self, name: str, target: int | Callable[..., Any],
               signature: str | type | None = None) -> int:
        """Make ``name`` resolve to an address or a Python callable (needs a signature)."""
        self._check_open()
        return self.definitions.define(name, target, signature)

    def load_library(self, path: str) -> None:
        """Let JIT'd code use a shared library's symbols (searched before the process)."""
        self._check_open()
        super().load_library(path)

    def run_main(self, argv: Sequence[str] = ("main",), entry: str = "main") -> int:
        """Call ``int main(int argc, char **argv)`` and return its result."""
        address = self.address(entry)
        if not address:
            raise JITError(f"no {entry!r} function to run")
        return self.executor.run_as_main(address, list(argv))

    # -- statistics ---------------------------------------------------------------
    def stats(self) -> dict[str, float | int]:
        """Where the time went, in seconds, plus counts."""
        parse = self._parse_seconds
        total = self._add_seconds
        if self.lazy is not None:
            parse += self.lazy.parse_seconds
            total += self.lazy.compile_seconds
        optimize = self.optimizer.transform_seconds
        codegen = self.compiler.codegen_seconds
        if self._tier1_compiler is not None:
            optimize += self._tier1_optimizer.transform_seconds   # type: ignore[union-attr]
            codegen += self._tier1_compiler.codegen_seconds
        link = self.linker.link_seconds
        return {
            "parse_seconds": parse,
            "optimize_seconds": optimize,
            "codegen_seconds": codegen,
            "link_seconds": link,
            "overhead_seconds": max(0.0, total - parse - optimize - codegen - link),
            "total_seconds": total,
            # of total_seconds: recompiling in the background (tiered), beside the program
            "background_seconds": self.lazy.recompile_seconds if self.lazy is not None else 0.0,
            "functions_optimized": (self.lazy.optimizer.functions_optimized
                                    if self.lazy is not None and self.lazy.optimizer else 0),
            "functions_compiled": (self.lazy.functions_compiled if self.lazy is not None
                                   else self.linker.functions_added),
            "objects_linked": self.linker.objects_linked,
            "relocations_applied": self.linker.relocations_applied,
        }

    # -- lifetime -----------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise JITError("this JIT is closed")

    def close(self) -> None:
        """Remove every set (running destructors) and release JIT memory."""
        if not self._closed:
            self._closed = True
            if self.lazy is not None:
                self.lazy.close()           # background recompilation stops first
            self.linker.run_exit_handlers()     # while every set is still there
            for layer in (self.lazy, self.deferred):
                if layer is not None:
                    for handle in reversed(layer.handles()):
                        layer.remove_module_set(handle)
            super().close()


class LazyJIT(JIT):
    """A JIT that compiles each function on its first call (``JIT(lazy=True)``)."""

    def __init__(self, **options: Any):
        super().__init__(lazy=True, **options)
