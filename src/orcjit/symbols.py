"""Symbols and symbol resolvers.

A :class:`JITSymbol` is a name's address that may not exist yet: asking for
it (``address``) materialises what is needed -- links a pending set, or
compiles a lazy one. Resolvers answer "where is this name?" for symbols a
module set does not define; the layer consults its own sets first (the
"logical dylib"), then the set's resolver, typically a
:class:`ChainResolver` of user definitions, loaded libraries, the process.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Iterable
from enum import IntFlag
from typing import Protocol

from .errors import JITError


class JITSymbolFlags(IntFlag):
    NONE = 0
    EXPORTED = 1     # default or protected visibility
    WEAK = 2         # may be overridden by a strong definition
    CALLABLE = 4     # a function
    ABSOLUTE = 8     # an address outside JIT memory
    COMMON = 16      # a COMMON (tentative) definition


class JITSymbol:
    """A symbol whose address may still have to be materialised."""

    __slots__ = ("flags", "_address", "_materialize")

    def __init__(self, address: int | Callable[[], int],
                 flags: JITSymbolFlags = JITSymbolFlags.EXPORTED):
        self.flags = flags
        self._materialize: Callable[[], int] | None
        if callable(address):
            self._address, self._materialize = 0, address
        else:
            self._address, self._materialize = address, None

    @property
    def address(self) -> int:
        """The address, materialising on first use (may raise a JITError)."""
        if self._materialize is not None:
            self._address = self._materialize()
            self._materialize = None
        return self._address

    def get_address(self) -> int:
        return self.address

    @property
    def is_materialized(self) -> bool:
        return self._materialize is None

    def __repr__(self) -> str:
        where = f"{self._address:#x}" if self._materialize is None else "<not materialised>"
        return f"JITSymbol({where}, {self.flags!r})"


class WaitAndRetry(BaseException):
    """Raised by a resolver (or definition generator) that cannot answer
    without waiting for another thread.

    The object linking layer asks resolvers while it holds its lock, and
    the thread to wait for may need that lock to finish (another thread
    emitting the set that defines the name, say): so the resolver raises
    this instead, the layer releases its lock, calls :meth:`wait` and asks
    again. A BaseException, so that handlers of Exception let it through.
    """

    def __init__(self, wait: Callable[[], None] | None = None):
        super().__init__()
        self._wait = wait

    def wait(self) -> None:
        """Block until asking again may get an answer (called without locks)."""
        if self._wait is not None:
            self._wait()


class SymbolResolver(Protocol):
    """Finds addresses of names a module set references but does not define.

    The object linking layer also reads two optional attributes of a set's
    resolver: ``dylib`` (the JITDylib the set joins, see :class:`InDylib`)
    and ``dso_handle`` (the ``__dso_handle`` of the DSO the set belongs to,
    if not its own; see :meth:`ObjectLinkingLayer.run_atexit`). A lookup
    that would have to wait for another thread raises :class:`WaitAndRetry`.
    """

    def lookup(self, name: str) -> int | None:
        """The address of ``name``, or None if this resolver does not know it."""


class DefinitionsResolver:
    """Names the user defines: absolute addresses or Python callables.

    A Python callable needs a signature; the ctypes thunk made for it is kept
    alive as long as the definition exists (JIT'd code may call it any time).
    """

    def __init__(self) -> None:
        self._addresses: dict[str, int] = {}
        self._keepalive: dict[str, object] = {}
        self._lock = threading.Lock()

    def define(self, name: str, target: int | Callable[..., object],
               signature: str | type | None = None) -> int:
        from .signatures import CFuncPtr, to_prototype

        if isinstance(target, int):
            address, keep = target, None
        elif isinstance(target, CFuncPtr):       # already a C function pointer
            address = ctypes.cast(target, ctypes.c_void_p).value or 0  # type: ignore[arg-type]
            keep = target
        elif callable(target):
            if signature is None:
                raise JITError(f"defining {name!r} as a Python callable needs a signature, "
                               "e.g. signature='int(int)'")
            keep = to_prototype(signature)(target)
            address = ctypes.cast(keep, ctypes.c_void_p).value or 0
        else:
            raise JITError(f"cannot define {name!r} as {target!r}: give an address or a callable")
        with self._lock:
            self._addresses[name] = address
            if keep is None:
                self._keepalive.pop(name, None)
            else:
                self._keepalive[name] = keep
        return address

    def undefine(self, name: str) -> None:
        with self._lock:
            self._addresses.pop(name, None)
            self._keepalive.pop(name, None)

    def lookup(self, name: str) -> int | None:
        return self._addresses.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._addresses


class LibraryResolver:
    """Shared libraries the user loads, searched in load order."""

    def __init__(self, executor) -> None:
        self._executor = executor
        self._handles: list[tuple[str, int]] = []

    def load(self, path: str) -> None:
        self._handles.append((path, self._executor.load_library(path)))

    def lookup(self, name: str) -> int | None:
        for _path, handle in self._handles:
            address = self._executor.lookup(handle, name)
            if address:
                return address
        return None


#: libraries searched after the process itself, so C++ and libm IR works out
#: of the box as it does under lli (which links them)
RUNTIME_LIBRARIES = ("libstdc++.so.6", "libgcc_s.so.1", "libm.so.6")


class ProcessResolver:
    """Symbols of the executor's process, then of the common runtime libraries.

    Addresses found are remembered (every lazily compiled function of a
    program asks again for the same libc names); a name not found is asked
    again next time, as a library loaded since may define it.
    """

    def __init__(self, executor, runtime_libraries: Iterable[str] = RUNTIME_LIBRARIES) -> None:
        self._executor = executor
        self._process = executor.load_library(None)
        self._runtime_names = tuple(runtime_libraries)
        self._runtime: list[int] | None = None
        self._found: dict[str, int] = {}

    def lookup(self, name: str) -> int | None:
        address = self._found.get(name)
        if address is None:
            address = self._search(name)
            if address is not None:
                self._found[name] = address
        return address

    def _search(self, name: str) -> int | None:
        address = self._executor.lookup(self._process, name)
        if address:
            return address
        if self._runtime is None:
            self._runtime = []
            for lib in self._runtime_names:
                try:
                    self._runtime.append(self._executor.load_library(lib))
                except JITError:
                    pass
        for handle in self._runtime:
            address = self._executor.lookup(handle, name)
            if address:
                return address
        return None


class ChainResolver:
    """Asks each resolver in turn; the first answer wins."""

    def __init__(self, *resolvers: SymbolResolver) -> None:
        self.resolvers = list(resolvers)

    def lookup(self, name: str) -> int | None:
        for resolver in self.resolvers:
            address = resolver.lookup(name)
            if address is not None:
                return address
        return None


class InDylib:
    """A resolver for a set that joins JITDylib ``dylib``: hidden symbols of
    sets in other JITDylibs are invisible to it (and its to them)."""

    def __init__(self, resolver: SymbolResolver, dylib: str):
        self.resolver, self.dylib = resolver, dylib

    def lookup(self, name: str) -> int | None:
        return self.resolver.lookup(name)
