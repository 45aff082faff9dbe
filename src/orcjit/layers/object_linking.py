"""ObjectLinkingLayer: relocatable objects in, linked memory out.

The layer is a "logical dylib": every set it holds sees the others'
definitions first, then its resolver. Adding a set parses and checks it and
registers its definitions (so duplicates fail at once and leave nothing
behind); linking happens when an address is first asked for (or at
``emit``), together with every pending set the first one needs, so sets may
refer to each other in any order. Unresolved symbols are found before
anything is allocated: the sets stay pending and can link once the names
are defined. A set whose link fails later (an overflowing relocation) has
its memory freed and only accepts removal.

Precedence of definitions across sets: a strong definition beats weak and
COMMON ones, otherwise the first one added wins; two strong definitions
are an error. COMDAT groups already provided by a set are dropped from
later ones.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from ..arch import x86_64
from ..errors import ConfigurationError, DuplicateDefinitionError, JITError, LinkError, UnresolvedSymbolsError
from ..executor.base import Executor
from ..executor.in_process import InProcessExecutor
from ..link.elf import parse_object
from ..link.graph import build_graph
from ..link.linker import STRONG, Binding, Definition, LinkedSet, State
from ..link.memory import MemoryPool
from ..runtime.platform import Platform
from ..symbols import ChainResolver, JITSymbol, JITSymbolFlags, ProcessResolver, SymbolResolver
from .base import Handle, Layer


class ObjectLinkingLayer(Layer):
    """Links ELF relocatable objects into executor memory with our own linker."""

    def __init__(self, executor: Executor | None = None, resolver: SymbolResolver | None = None,
                 memory_pool: MemoryPool | None = None, arch: ModuleType = x86_64,
                 platform: Platform | None = None):
        self.executor = executor or InProcessExecutor()
        self.memory_pool = memory_pool or MemoryPool(self.executor)
        self.resolver = resolver if resolver is not None else ChainResolver(
            ProcessResolver(self.executor))
        self.arch = arch
        self.platform = platform or Platform(self.executor)
        self._sets: dict[Handle, LinkedSet] = {}
        self._candidates: dict[str, list[Definition]] = {}
        self._comdats: dict[str, LinkedSet] = {}
        # GOT slots bound to a weak/COMMON definition: name -> [(set, slot)]
        self._rebindable: dict[str, list[tuple[LinkedSet, int]]] = {}
        self._call_observers: list[Callable[[Handle, str, int], None]] = []
        #: called with a name nothing defines; may add a set defining it (an
        #: archive member, say) and return True -- ORC's "definition generators"
        self.definition_generators: list[Callable[[str], bool]] = []
        self._lock = threading.RLock()
        self.link_seconds = 0.0
        self.objects_linked = 0
        self.functions_added = 0
        self.relocations_applied = 0

    # -- adding ----------------------------------------------------------------
    def add_object_set(self, objects: Sequence[Any], memory_manager: Any = None,
                       resolver: SymbolResolver | None = None, *,
                       names: Sequence[str] | None = None) -> Handle:
        """Parse, check and register a set of objects; linking waits for a lookup."""
        start = time.perf_counter()
        if names is not None and len(names) != len(objects):
            raise ConfigurationError(f"{len(names)} names given for {len(objects)} objects")
        parsed = [parse_object(data) for data in objects]
        with self._lock:
            claimed: set[str] = set()

            def keep_comdat(signature: str) -> bool:
                if signature in self._comdats or signature in claimed:
                    return False
                claimed.add(signature)
                return True

            graphs = [build_graph(obj, self.arch, names[i] if names else f"<object {i}>",
                                  keep_comdat) for i, obj in enumerate(parsed)]
            linked = LinkedSet(graphs, memory_manager or self.memory_pool.create_memory_manager(),
                               resolver or self.resolver)
            # a resolver may say which JITDylib (symbol namespace) the set joins
            linked.dylib = getattr(resolver, "dylib", "")
            linked.collect_definitions()
            self._check_duplicates(linked)
            handle = Handle()
            linked.handle = handle
            self._sets[handle] = linked
            for name, definition in linked.definitions.items():
                self._candidates.setdefault(name, []).append(definition)
            for signature in claimed:
                self._comdats[signature] = linked
            self.functions_added += sum(graph.function_count for graph in graphs)
        self.link_seconds += time.perf_counter() - start
        return handle

    def add_module_set(self, modules: Sequence[Any], memory_manager: Any = None,
                       resolver: SymbolResolver | None = None, *,
                       names: Sequence[str] | None = None) -> Handle:
        """The layer interface: for this layer, the "modules" are objects."""
        return self.add_object_set(modules, memory_manager, resolver, names=names)

    def _check_duplicates(self, linked: LinkedSet) -> None:
        clashes = []
        for name, definition in linked.definitions.items():
            if definition.strength == STRONG:
                for candidate in self._candidates.get(name, ()):
                    if candidate.strength == STRONG:
                        clashes.append(name)
                        break
        if clashes:
            raise DuplicateDefinitionError(clashes)

    # -- symbol table ------------------------------------------------------------
    def _winner(self, name: str, seen_from: str | None = None) -> Definition | None:
        """The definition ``name`` binds to; from code in JITDylib ``seen_from``,
        hidden definitions of other JITDylibs do not count."""
        candidates = self._candidates.get(name)
        if not candidates:
            return None
        if seen_from is not None:
            candidates = [c for c in candidates if c.owner.dylib == seen_from
                          or c.flags & JITSymbolFlags.EXPORTED]
            if not candidates:
                return None
        return max(candidates, key=lambda c: c.strength)     # the first of equals

    def _symbol(self, definition: Definition) -> JITSymbol:
        if definition.owner.state is State.FINALIZED:
            return JITSymbol(definition.address, definition.flags)
        return JITSymbol(lambda: self._address_after_link(definition), definition.flags)

    def _address_after_link(self, definition: Definition) -> int:
        with self._lock:
            if definition.owner.state is State.REMOVED:
                return 0
            self._materialize(definition.owner)
            return definition.address

    def find_symbol(self, name: str, exported_symbols_only: bool = True) -> JITSymbol | None:
        with self._lock:
            definition = self._winner(name)
            if definition is None or (exported_symbols_only
                                      and not definition.flags & JITSymbolFlags.EXPORTED):
                return None
            return self._symbol(definition)

    def find_symbol_in(self, handle: Handle, name: str,
                       exported_symbols_only: bool = True) -> JITSymbol | None:
        with self._lock:
            linked = self._sets.get(handle)
            definition = linked.definitions.get(name) if linked else None
            if definition is None or (exported_symbols_only
                                      and not definition.flags & JITSymbolFlags.EXPORTED):
                return None
            return self._symbol(definition)

    def observe_call_sites(self, observer: Callable[[Handle, str, int], None]) -> None:
        """Call ``observer(handle, name, site)`` for every direct rel32 call a newly
        linked set makes to an address outside JIT definitions (``site`` is the
        address of the 32-bit displacement), e.g. to patch calls to lazy stubs."""
        self._call_observers.append(observer)

    def run_atexit(self, dso_handle: int) -> None:
        """Run the destructors JIT'd code registered with ``__cxa_atexit`` under
        ``dso_handle`` (latest first): for DSOs that are not one set's own
        (a resolver's ``dso_handle``), whose owner says when they go."""
        self.platform.run_finalizers(dso_handle, [])

    # -- linking -------------------------------------------------------------------
    def emit(self, handle: Handle) -> None:
        """Link and finalise a set (and any pending set it needs) now."""
        with self._lock:
            linked = self._sets.get(handle)
            if linked is None:
                raise JITError(f"unknown or removed handle {handle!r}")
            self._materialize(linked)

    def _materialize(self, root: LinkedSet) -> None:
        if root.state is State.FINALIZED:
            return
        if root.state is State.FAILED:
            raise root.error  # type: ignore[misc]
        start = time.perf_counter()
        closure, bindings = self._bind_closure(root)
        # resolvers may have linked some of them meanwhile (a lazily emitted set)
        closure = [linked for linked in closure if linked.state is State.PENDING]
        linked_so_far: list[LinkedSet] = []
        try:
            for linked in closure:
                linked_so_far.append(linked)
                linked.allocate(bindings[id(linked)], self._out_of_reach)
            for linked in closure:
                linked.fix_up(bindings[id(linked)])
            frames = self.platform.frames
            for linked in closure:
                linked.finalize(frames.register_address, frames.deregister_address)
        except BaseException as error:
            # later lookups see why; an interrupt is not the set's fault to report again
            failure = error if isinstance(error, JITError) else LinkError(
                f"linking this set was interrupted earlier: {error!r}")
            for linked in linked_so_far:
                linked.release_memory()
                linked.state, linked.error = State.FAILED, failure
            raise
        finally:
            self.link_seconds += time.perf_counter() - start
        for linked in closure:
            self.objects_linked += len(linked.graphs)
            self.relocations_applied += linked.relocation_count
            for name, slot in linked.rebindable_slots:
                self._rebindable.setdefault(name, []).append((linked, slot))
        if self._rebindable:
            for linked in closure:
                for name in linked.definitions.keys() & self._rebindable.keys():
                    self._rebind(name)
        for linked in closure:
            images = linked.debug_objects()
            if images:
                linked.debug_registrations = [self.platform.debugger.register(image)
                                              for image in images]
        if self._call_observers:
            for linked in closure:
                calls = linked.external_calls(bindings[id(linked)])
                for observe in self._call_observers:
                    for name, site in calls:
                        observe(linked.handle, name, site)  # type: ignore[arg-type]
        for linked in closure:
            linked.settle()
        for linked in closure:
            self.platform.run_initializers(linked.initializers)

    def _out_of_reach(self, address: int) -> bool:
        return not self.memory_pool.contains(address)

    def _bind_closure(self, root: LinkedSet) -> tuple[list[LinkedSet], dict[int, dict[str, Binding]]]:
        """Bind every name of ``root`` and of the pending sets it reaches."""
        closure: list[LinkedSet] = []
        bindings: dict[int, dict[str, Binding]] = {}
        missing: set[str] = set()
        stack = [root]
        seen = {id(root)}
        while stack:
            linked = stack.pop()
            closure.append(linked)
            resolver = linked.resolver
            table: dict[str, Binding] = {}
            names = linked.referenced_names()
            if linked.shared_dso_handle:    # atexit registrations go to that DSO
                names.discard("__dso_handle")
                table["__dso_handle"] = linked.shared_dso_handle
            for name in names:
                definition = self._winner(name, linked.dylib)
                if definition is None and any(generate(name)
                                              for generate in self.definition_generators):
                    definition = self._winner(name, linked.dylib)
                if definition is not None:
                    table[name] = definition
                    owner = definition.owner
                    if owner.state is State.PENDING and id(owner) not in seen:
                        seen.add(id(owner))
                        stack.append(owner)
                    elif owner.state is State.FAILED:
                        raise owner.error  # type: ignore[misc]
                    continue
                address = self.platform.lookup(name)
                if address is None:
                    address = resolver.lookup(name)
                if address is None:
                    if name not in linked.weak_references():
                        missing.add(name)
                    address = 0
                table[name] = address
            bindings[id(linked)] = table
        if missing:
            raise UnresolvedSymbolsError(missing)
        if len(closure) > 1:
            closure.sort(key=lambda s: s.handle.id)    # add order: constructors run in it
        return closure, bindings

    def _rebind(self, name: str) -> None:
        """Point every rebindable GOT slot of ``name`` at its current winner."""
        winner = self._winner(name)
        address = 0
        if winner is not None:
            if winner.owner.state is State.PENDING:
                try:
                    self._materialize(winner.owner)
                except JITError:
                    pass
            if winner.owner.state is State.FINALIZED:
                address = winner.address
        data = address.to_bytes(8, "little")
        for _owner, slot in self._rebindable.get(name, ()):
            self.executor.write(slot, data)

    # -- removal -----------------------------------------------------------------
    def remove_object_set(self, handle: Handle) -> None:
        """Run the set's destructors, deregister its frames, free its memory."""
        with self._lock:
            linked = self._sets.pop(handle, None)
            if linked is None:
                raise JITError(f"unknown or already removed handle {handle!r}")
            try:
                if linked.state is State.FINALIZED:
                    self.platform.run_finalizers(linked.dso_handle, linked.finalizers)
            finally:
                for registration in linked.debug_registrations:
                    self.platform.debugger.unregister(registration)
                for name, definition in linked.definitions.items():
                    candidates = self._candidates[name]
                    candidates.remove(definition)
                    if not candidates:
                        del self._candidates[name]
                self._forget_slots(linked)
                for signature in [s for s, owner in self._comdats.items() if owner is linked]:
                    del self._comdats[signature]
                linked.release_memory()
                linked.state = State.REMOVED

    remove_module_set = remove_object_set

    def _forget_slots(self, linked: LinkedSet) -> None:
        """Drop the set's own slots; re-point others at what its definitions leave behind."""
        for name, _slot in linked.rebindable_slots:
            slots = self._rebindable.get(name)
            if slots:
                slots[:] = [(owner, slot) for owner, slot in slots if owner is not linked]
                if not slots:
                    del self._rebindable[name]
        for name in linked.definitions.keys() & self._rebindable.keys():
            self._rebind(name)

    def handles(self) -> list[Handle]:
        return list(self._sets)

    def pending_handles(self) -> list[Handle]:
        """Sets added but not linked yet."""
        return [h for h, s in self._sets.items() if s.state is State.PENDING]

    def close(self) -> None:
        """Remove every set (destructors run, latest set first) and free the pool."""
        with self._lock:
            for handle in reversed(list(self._sets)):
                self.remove_object_set(handle)
            self.platform.close()
            self.memory_pool.close()
