"""The layer stack every ready-made JIT starts from.

Read top down::

    optimizer = IRTransformLayer(optimisation pipeline at -O<ir level>)
    compiler  = IRCompileLayer(SimpleCompiler(target machine at -O<opt level>))
    linker    = ObjectLinkingLayer(executor, resolver: user defs -> libraries -> process)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from .errors import JITError
from .executor.base import Executor
from .executor.in_process import InProcessExecutor
from .layers.compile import IRCompileLayer, SimpleCompiler, create_target_machine
from .layers.object_linking import ObjectLinkingLayer
from .layers.transform import IRTransformLayer, ir_level, optimization_pipeline
from .symbols import (
    ChainResolver,
    DefinitionsResolver,
    LibraryResolver,
    ProcessResolver,
    SymbolResolver,
)

#: an object file or archive: its bytes, or a path to read them from
BinaryInput = bytes | bytearray | memoryview | str | os.PathLike[str]


def read_binary(data: BinaryInput, name: str) -> tuple[bytes, str]:
    """(bytes, name for messages) of an object or archive given directly or by path."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), name
    if not isinstance(data, (str, os.PathLike)):
        raise JITError(f"expected the bytes of {name} or a path, not {type(data).__name__}")
    path = Path(data)
    try:
        return path.read_bytes(), str(path)
    except OSError as e:
        raise JITError(f"cannot read {path}: {e.strerror}") from None


class LayerStack:
    """Executor, resolvers, linker, compiler and optimiser, wired together."""

    def __init__(self, *, opt_level: int = 2, triple: str | None = None,
                 cpu: str | None = None, features: str | None = None,
                 code_model: str = "small", reloc_model: str = "pic",
                 executor: Executor | None = None, process_symbols: bool = True,
                 ir_opt_level: int | None = None, native_worker: bool | None = None,
                 wrap_compiler: Callable[[SimpleCompiler], Any] = lambda compiler: compiler):
        self.executor = executor or InProcessExecutor()
        self.definitions = DefinitionsResolver()
        self.libraries = LibraryResolver(self.executor)
        resolvers: list[SymbolResolver] = [self.definitions, self.libraries]
        if process_symbols:
            resolvers.append(ProcessResolver(self.executor))
        self.target_machine = create_target_machine(triple, cpu, features, opt_level,
                                                    code_model, reloc_model)
        self.linker = ObjectLinkingLayer(self.executor, resolver=ChainResolver(*resolvers))
        compiler = SimpleCompiler(self.target_machine, native_worker)
        #: (triple, data layout) that modules without their own are given
        self.target = compiler.target
        self.compiler = IRCompileLayer(self.linker, wrap_compiler(compiler))
        self.optimizer = IRTransformLayer(
            self.compiler, optimization_pipeline(self.target_machine,
                                                 ir_level(opt_level, ir_opt_level),
                                                 native_worker))
        self.opt_level = opt_level

    def load_library(self, path: str) -> None:
        """Let JIT'd code use a shared library's symbols (searched before the process)."""
        self.libraries.load(path)

    def close(self) -> None:
        """Remove every set (running destructors) and release JIT memory."""
        self.linker.close()
        self.executor.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
