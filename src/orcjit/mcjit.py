"""MCJITReplacement: LLVM's ExecutionEngine interface, composed from our layers.

MCJIT's contract, kept here: modules are added, then linked together by
``finalize_object`` (or the first address lookup), so they may refer to each
other in any order; objects and static archives can be added beside IR
(archive members are linked only when one of their symbols is needed); an
object cache can hand back compiled objects instead of compiling.

The composition, read top down::

    IRTransformLayer(optimisation pipeline)
      -> IRCompileLayer(SimpleCompiler, through the object cache if set)
        -> ObjectLinkingLayer(executor, resolver: user defs -> libraries -> process)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import llvmlite.binding as llvm

from .errors import JITError
from .executor.base import Executor
from .frontends.ir import IRSource, dispose, parse_ir
from .layers.base import Handle
from .layers.compile import SimpleCompiler
from .link.archive import Archive, ArchiveMembers
from .signatures import to_prototype
from .stack import BinaryInput, LayerStack, read_binary


class ObjectCache(Protocol):
    """LLVM's ObjectCache: objects keyed by module identifier."""

    def get_object(self, module_id: str) -> bytes | None:
        """A previously compiled object for this module, or None."""

    def notify_object_compiled(self, module_id: str, obj: bytes) -> None:
        """A module was compiled; keep its object if you like."""


class DirectoryObjectCache:
    """lli's cache manager: ``<dir>/<input path, extension .o>`` for module ids ``file:<path>``."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)

    def _path(self, module_id: str) -> Path | None:
        if not module_id.startswith("file:"):
            return None
        relative = module_id[len("file:"):].lstrip("/")
        return (self.directory / relative).with_suffix(".o")

    def get_object(self, module_id: str) -> bytes | None:
        path = self._path(module_id)
        if path is None or not path.is_file():
            return None
        return read_binary(path, str(path))[0]

    def notify_object_compiled(self, module_id: str, obj: bytes) -> None:
        path = self._path(module_id)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(obj)
            except OSError as e:
                raise JITError(f"cannot write {path} to the object cache: {e.strerror}") from None


class _CachingCompiler:
    """Asks the object cache first; tells it about what had to be compiled."""

    def __init__(self, compiler: SimpleCompiler, owner: MCJITReplacement):
        self.compiler, self.owner = compiler, owner

    def __call__(self, module: llvm.ModuleRef) -> bytes:
        cache = self.owner.object_cache
        if cache is not None:
            cached = cache.get_object(module.name)
            if cached is not None:
                return cached
        obj = self.compiler(module)
        if cache is not None:
            cache.notify_object_compiled(module.name, obj)
        return obj


class MCJITReplacement(LayerStack):
    """An MCJIT-compatible execution engine built from orcjit's layers."""

    def __init__(self, *, opt_level: int = 2, triple: str | None = None,
                 cpu: str | None = None, features: str | None = None,
                 code_model: str = "small", reloc_model: str = "pic",
                 executor: Executor | None = None, process_symbols: bool = True,
                 ir_opt_level: int | None = None):
        self.object_cache: ObjectCache | None = None
        super().__init__(opt_level=opt_level, triple=triple, cpu=cpu, features=features,
                         code_model=code_model, reloc_model=reloc_model, executor=executor,
                         process_symbols=process_symbols, ir_opt_level=ir_opt_level,
                         wrap_compiler=lambda compiler: _CachingCompiler(compiler, self))
        self.archives = ArchiveMembers(self.linker)
        self.linker.definition_generators.append(self.archives)
        self._destructors_run = False

    # -- adding -----------------------------------------------------------------
    def add_module(self, source: IRSource, module_id: str | None = None) -> Handle:
        """Add a module (IR text, bitcode, llvmlite module); compiled now, linked later."""
        module = parse_ir(source, module_id)
        try:
            if self.object_cache is not None and module_id is not None:
                module.name = module_id
            return self.optimizer.add_module_set([module])
        finally:
            dispose(module)

    def add_object_file(self, data: BinaryInput) -> Handle:
        """Add a relocatable ELF object (bytes or a path)."""
        data, name = read_binary(data, "<object>")
        return self.linker.add_object_set([data], names=[name])

    def add_archive(self, data: BinaryInput) -> None:
        """Add a static archive: a member is linked when one of its symbols is needed."""
        self.archives.add(Archive(*read_binary(data, "<archive>")))

    def remove_module(self, handle: Handle) -> None:
        self.linker.remove_object_set(handle)

    def set_object_cache(self, cache: ObjectCache | None) -> None:
        self.object_cache = cache

    # -- linking and lookup ------------------------------------------------------------
    def finalize_object(self) -> None:
        """Link every module added so far (constructors of new sets run)."""
        for handle in self.linker.pending_handles():
            self.linker.emit(handle)

    def get_function_address(self, name: str) -> int:
        return self.linker.get_symbol_address(name, exported_symbols_only=False)

    def get_global_value_address(self, name: str) -> int:
        return self.linker.get_symbol_address(name, exported_symbols_only=False)

    def run_function(self, name: str, signature: str | type, *args: Any) -> Any:
        address = self.get_function_address(name)
        if not address:
            raise JITError(f"function {name!r} is not defined")
        return to_prototype(signature)(address)(*args)

    def run_main(self, argv: Sequence[str], envp: Sequence[str] | None = None,
                 entry: str = "main") -> int:
        self.finalize_object()
        address = self.get_function_address(entry)
        if not address:
            raise JITError(f"no {entry!r} function to run")
        return self.executor.run_as_main(address, list(argv), envp)

    def run_static_constructors_destructors(self, is_dtors: bool) -> None:
        """Constructors run when a set is linked; destructors with ``is_dtors=True``
        (and at the latest when modules are removed or the engine closes)."""
        if not is_dtors:
            self.finalize_object()
        elif not self._destructors_run:
            self._destructors_run = True
            self.linker.run_exit_handlers()     # while every set is still there
            for handle in reversed(self.linker.handles()):
                self.linker.remove_object_set(handle)

    # -- symbols from outside ------------------------------------------------------------
    def add_global_mapping(self, name: str, address: int) -> None:
        self.definitions.define(name, address)
