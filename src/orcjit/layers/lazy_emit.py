"""LazyEmitLayer: hold a module set back until one of its symbols is wanted.

``add_module_set`` returns at once: the layer reads which names the modules
define (cheap: no compilation) and keeps the modules. The first time an
address of one of those names is asked for -- by the user, or by the
linker resolving another set's reference -- the whole set goes to the layer
below. Sets that are never used are never compiled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import llvmlite.binding as llvm

from ..errors import JITError
from ..frontends.ir import dispose
from ..symbols import JITSymbol, JITSymbolFlags, SymbolResolver, WaitAndRetry
from .base import Handle, Layer

_LOCAL = {llvm.Linkage.internal, llvm.Linkage.private}


@dataclass(eq=False)
class _Deferred:
    modules: list[Any]
    memory_manager: Any
    resolver: SymbolResolver | None
    names: dict[str, JITSymbolFlags]
    emitted: Handle | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class _EmittingResolver:
    """Resolves names of still-deferred sets by emitting them, then asks ``fallback``.

    The linker asks it with its lock held, and a thread already emitting
    the set needs that lock to finish: rather than wait for that thread
    here, it raises WaitAndRetry (the linker waits without its lock).
    """

    def __init__(self, layer: LazyEmitLayer, fallback: SymbolResolver | None):
        self.layer, self.fallback = layer, fallback

    @property
    def dylib(self) -> str:
        return getattr(self.fallback, "dylib", "")

    def lookup(self, name: str) -> int | None:
        symbol = self.layer._find(name, False, waiting=False)
        if symbol is not None:
            return symbol.address
        return self.fallback.lookup(name) if self.fallback is not None else None


class LazyEmitLayer(Layer):
    """Defers each set until one of its symbols is looked up."""

    def __init__(self, base: Layer, resolver: SymbolResolver | None = None):
        self.base = base
        self.resolver = resolver
        self._sets: dict[Handle, _Deferred] = {}
        self._lock = threading.RLock()
        self.sets_emitted = 0
        #: called with each module (and its function names) as its set is emitted
        self.on_emit: Callable[[Any, list[str]], None] | None = None

    def add_module_set(self, modules: Sequence[Any], memory_manager: Any = None,
                       resolver: SymbolResolver | None = None) -> Handle:
        names: dict[str, JITSymbolFlags] = {}
        for module in modules:
            for function in module.functions:
                if not function.is_declaration and function.linkage not in _LOCAL:
                    names[function.name] = _flags(function) | JITSymbolFlags.CALLABLE
            for variable in module.global_variables:
                if not variable.is_declaration and variable.linkage not in _LOCAL:
                    names[variable.name] = _flags(variable)
        handle = Handle()
        with self._lock:
            self._sets[handle] = _Deferred(list(modules), memory_manager,
                                           _EmittingResolver(self, resolver or self.resolver),
                                           names)
        return handle

    def _emit(self, deferred: _Deferred, waiting: bool = True) -> Handle:
        """Send the set down, once; ``waiting=False``: raise WaitAndRetry
        instead of waiting for another thread that is sending it."""
        if not deferred.lock.acquire(waiting):
            raise WaitAndRetry(lambda: _wait_for_lock(deferred.lock))
        try:
            if deferred.emitted is None:
                if self.on_emit is not None:
                    for module in deferred.modules:
                        self.on_emit(module, [f.name for f in module.functions
                                              if not f.is_declaration])
                deferred.emitted = self.base.add_module_set(
                    deferred.modules, deferred.memory_manager, deferred.resolver)
                for module in deferred.modules:
                    dispose(module)
                deferred.modules = []
                self.sets_emitted += 1
            return deferred.emitted
        finally:
            deferred.lock.release()

    def _symbol(self, deferred: _Deferred, name: str, exported_symbols_only: bool,
                waiting: bool) -> JITSymbol | None:
        flags = deferred.names[name]
        if exported_symbols_only and not flags & JITSymbolFlags.EXPORTED:
            return None
        if deferred.emitted is not None:
            return self.base.find_symbol_in(deferred.emitted, name, exported_symbols_only)
        return JITSymbol(lambda: self.base.lookup_symbol_address_in(
            self._emit(deferred, waiting), name, exported_symbols_only), flags)

    def find_symbol(self, name: str, exported_symbols_only: bool = True) -> JITSymbol | None:
        return self._find(name, exported_symbols_only, waiting=True)

    def _find(self, name: str, exported_symbols_only: bool, waiting: bool) -> JITSymbol | None:
        with self._lock:
            candidates = [d for d in self._sets.values() if name in d.names]
        for deferred in candidates:
            symbol = self._symbol(deferred, name, exported_symbols_only, waiting)
            if symbol is not None:
                return symbol
        return None

    def find_symbol_in(self, handle: Handle, name: str,
                       exported_symbols_only: bool = True) -> JITSymbol | None:
        deferred = self._sets.get(handle)
        if deferred is None or name not in deferred.names:
            return None
        return self._symbol(deferred, name, exported_symbols_only, waiting=True)

    def emit(self, handle: Handle) -> None:
        """Send a set down now."""
        deferred = self._sets.get(handle)
        if deferred is None:
            raise JITError(f"unknown or removed handle {handle!r}")
        self.base.emit(self._emit(deferred))  # type: ignore[attr-defined]

    def is_emitted(self, handle: Handle) -> bool:
        deferred = self._sets.get(handle)
        return deferred is not None and deferred.emitted is not None

    def remove_module_set(self, handle: Handle) -> None:
        with self._lock:
            deferred = self._sets.pop(handle, None)
        if deferred is None:
            raise JITError(f"unknown or already removed handle {handle!r}")
        with deferred.lock:
            if deferred.emitted is not None:
                self.base.remove_module_set(deferred.emitted)
            for module in deferred.modules:
                dispose(module)
            deferred.modules = []

    def handles(self) -> list[Handle]:
        return list(self._sets)

    def owns(self, handle: Handle) -> bool:
        return handle in self._sets


def _wait_for_lock(lock: threading.Lock) -> None:
    """Block until whoever holds ``lock`` lets it go."""
    with lock:
        pass


def _flags(value: Any) -> JITSymbolFlags:
    flags = JITSymbolFlags.NONE
    if value.visibility != llvm.Visibility.hidden:
        flags |= JITSymbolFlags.EXPORTED
    if value.linkage in (llvm.Linkage.weak_any, llvm.Linkage.weak_odr,
                         llvm.Linkage.linkonce_any, llvm.Linkage.linkonce_odr):
        flags |= JITSymbolFlags.WEAK
    return flags
