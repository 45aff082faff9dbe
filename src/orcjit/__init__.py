"""orcjit: build JIT compilers out of composable layers.

The everyday API is :class:`JIT`; layers, resolvers, memory managers and
executors for people building their own JITs are in :mod:`orcjit.layers`,
:mod:`orcjit.symbols`, :mod:`orcjit.link` and :mod:`orcjit.executor`.
"""

from .errors import (
    CompileError,
    ConfigurationError,
    DuplicateDefinitionError,
    ExecutorError,
    InvalidIRError,
    InvalidObjectError,
    JITError,
    LinkError,
    RelocationOverflowError,
    SignatureError,
    UnresolvedSymbolsError,
    UnsupportedError,
)
from .jits import JIT, LazyJIT
from .mcjit import MCJITReplacement
from .layers.base import Handle
from .symbols import JITSymbol, JITSymbolFlags

__version__ = "0.1.0"

__all__ = [
    "JIT",
    "LazyJIT",
    "MCJITReplacement",
    "Handle",
    "JITSymbol",
    "JITSymbolFlags",
    "JITError",
    "InvalidIRError",
    "InvalidObjectError",
    "UnsupportedError",
    "LinkError",
    "UnresolvedSymbolsError",
    "DuplicateDefinitionError",
    "RelocationOverflowError",
    "CompileError",
    "ExecutorError",
    "SignatureError",
    "ConfigurationError",
    "__version__",
]
