"""The one small interface every layer implements, so layers stack.

``add_module_set`` takes ownership of a set of modules and returns a
handle; ``remove_module_set`` frees everything of that set; ``find_symbol``
and ``find_symbol_in`` return a :class:`~orcjit.symbols.JITSymbol` whose
address may still be materialised on demand; the address getters finalise
as needed and return 0 for names that are not defined (also after removal).
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from ..symbols import JITSymbol, SymbolResolver

_handle_ids = itertools.count(1)


class Handle:
    """Identifies one module (or object) set in a layer stack."""

    __slots__ = ("id", "__weakref__")

    def __init__(self) -> None:
        self.id = next(_handle_ids)

    def __repr__(self) -> str:
        return f"<Handle {self.id}>"


class Layer(ABC):
    """Common interface of IR and object layers."""

    @abstractmethod
    def add_module_set(self, modules: Sequence[Any], memory_manager: Any = None,
                       resolver: SymbolResolver | None = None) -> Handle:
        """Take ownership of a set of modules (objects, for object layers)."""

    @abstractmethod
    def remove_module_set(self, handle: Handle) -> None:
        """Free all memory of a set; its symbols become undefined."""

    @abstractmethod
    def find_symbol(self, name: str, exported_symbols_only: bool = True) -> JITSymbol | None:
        """A symbol of any set, or None."""

    @abstractmethod
    def find_symbol_in(self, handle: Handle, name: str,
                       exported_symbols_only: bool = True) -> JITSymbol | None:
        """A symbol of one set, or None."""

    def get_symbol_address(self, name: str, exported_symbols_only: bool = True) -> int:
        """Ready-to-use address of a symbol (linking as needed), or 0."""
        symbol = self.find_symbol(name, exported_symbols_only)
        return symbol.address if symbol is not None else 0

    def lookup_symbol_address_in(self, handle: Handle, name: str,
                                 exported_symbols_only: bool = True) -> int:
        """Ready-to-use address of a symbol of one set, or 0."""
        symbol = self.find_symbol_in(handle, name, exported_symbols_only)
        return symbol.address if symbol is not None else 0


class ForwardingLayer(Layer):
    """A layer that transforms what it is given and hands it to ``base``.

    Handles are the base layer's, so symbol queries and removal forward.
    """

    def __init__(self, base: Layer):
        self.base = base

    def remove_module_set(self, handle: Handle) -> None:
        self.base.remove_module_set(handle)

    def find_symbol(self, name: str, exported_symbols_only: bool = True) -> JITSymbol | None:
        return self.base.find_symbol(name, exported_symbols_only)

    def find_symbol_in(self, handle: Handle, name: str,
                       exported_symbols_only: bool = True) -> JITSymbol | None:
        return self.base.find_symbol_in(handle, name, exported_symbols_only)

    def emit(self, handle: Handle) -> None:
        """Finalise a set now (errors surface here rather than at first lookup)."""
        self.base.emit(handle)  # type: ignore[attr-defined]

    def observe_call_sites(self, observer: Any) -> None:
        """Forwarded to the object layer (see ObjectLinkingLayer.observe_call_sites)."""
        self.base.observe_call_sites(observer)  # type: ignore[attr-defined]

    def run_atexit(self, dso_handle: int) -> None:
        """Forwarded to the object layer (see ObjectLinkingLayer.run_atexit)."""
        self.base.run_atexit(dso_handle)  # type: ignore[attr-defined]
