"""ObjectLinkingLayer: relocatable objects in, linked memory out.

The layer is a "logical dylib": every set it holds sees the others'
definitions first, then its resolver. Adding a set parses and checks it and
registers its definitions (so duplicates fail at once and leave nothing
behind); linking happens when an address is first asked for (or at
``emit``), together with every pending set the first one needs, so sets may
refer to each other in any order. Unresolved symbols are found before
anything is allocated: the sets stay pending and can link once the names
are defined. A set whose link fails later (an overflowing relocation) has
its memory freed and only accepts removal; so does one whose constructors
fail, or one that binds to such a set (directly or through others), which
keeps its memory until removal runs the destructors of what was
constructed. The other sets linked with it are published as if it had not
been there: a failed add takes no unrelated set down with it.

Precedence of definitions across sets: a strong definition beats weak and
COMMON ones, otherwise the first one added wins; two strong definitions
are an error. COMDAT groups already provided by a set are dropped from
later ones.

Threads: one re-entrant lock guards the layer's tables, and no JIT'd code
runs while it is held -- a static constructor or destructor may call a
function that another thread is compiling, and that compilation needs the
lock to link its body. So sets with constructors are linked under the lock
but left INITIALIZING; the thread that linked them runs the constructors
once it has released the lock, then publishes the sets (FINALIZED).
Removal likewise marks a set with destructors REMOVING and runs them
unlocked. While a set is in such a :class:`~orcjit.link.linker.Transition`,
only the thread running its code may use it (a constructor may call its
own set's functions); other threads that look its symbols up, link a set
that binds to it or remove it wait until the transition is done, and GOT
slots bound to a weak definition move to a stronger one only then. Sets
without constructors skip all of this: they are FINALIZED as they are
linked, and removed at once (every lazily compiled body is such a set).

Nothing waits with the lock held: a step that meets another thread's
transition -- or a resolver that would have to wait for another thread
(:class:`~orcjit.symbols.WaitAndRetry`) -- unwinds to the outermost call,
which waits unlocked and runs the step again. Threads waiting for each
other's transitions (two constructors each needing the other's set) would
wait forever: the one that would close the cycle becomes a guest of the
transition instead, may use its sets, and goes on. An interrupt between
steps ends whatever transition it leaves behind (FAILED, or removed).

What this cannot order: code the transitioning thread links meanwhile (a
lazy body its constructor compiles) is usable by everyone at once, and so
is whatever a constructor publishes itself or a guest reaches early; and
a cycle through another lock still blocks -- a constructor calling a lazy
function whose first call another thread is compiling, when that body
uses the constructor's set and is not that set's own (for a function of
the same set, the lazy layer waits for the set's constructors before it
takes the function's lock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType, ModuleType
from typing import Any, TypeVar

from ..arch import x86_64
from ..errors import (
    ConfigurationError,
    DuplicateDefinitionError,
    ExecutorError,
    JITError,
    LinkError,
    UnresolvedSymbolsError,
)
from ..executor.base import Executor
from ..executor.in_process import InProcessExecutor
from ..link.elf import parse_object
from ..link.graph import build_graph
from ..link.linker import (
    FAILED, FINALIZED, PENDING, STRONG, Binding, Definition, LinkedSet, State, Transition,
)
from ..link.memory import MemoryPool
from ..runtime.platform import Platform
from ..symbols import (
    ChainResolver,
    JITSymbol,
    JITSymbolFlags,
    ProcessResolver,
    SymbolResolver,
    WaitAndRetry,
)
from .base import Handle, Layer

A = TypeVar("A")
R = TypeVar("R")

#: states whose sets are in memory: their addresses can be bound to
_LINKED = frozenset({State.INITIALIZING, State.FINALIZED, State.REMOVING})
_NONE_FAILED: Mapping[int, BaseException] = MappingProxyType({})
#: as a plain int: combining IntFlag members runs Python code each time
_EXPORTED = JITSymbolFlags.EXPORTED.value


class _Busy(WaitAndRetry):
    """Internal: a step under the lock met a set in another thread's
    transition. Like any WaitAndRetry (a resolver's), it unwinds to the
    outermost :meth:`ObjectLinkingLayer._locked` of this thread, which
    waits without the lock and runs the step again (waiting deeper down
    would keep the lock held by the frames above); only ``_rebind`` stops
    it sooner, when other code can stand in.
    """

    def __init__(self, layer: ObjectLinkingLayer, transition: Transition):
        super().__init__()
        self.layer, self.transition = layer, transition

    def wait(self) -> None:
        with self.layer._transition_done:
            self.layer._wait_for(self.transition)


def _failure(error: BaseException, kind: type[JITError], what: str) -> JITError:
    """What later users of a set that failed with ``error`` are told: a
    JITError as it is; anything else (an interrupt is not theirs to report
    again) as a ``kind`` saying ``what``."""
    return error if isinstance(error, JITError) else kind(f"{what}: {error!r}")


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
        #: notified (under _lock) whenever a Transition is done
        self._transition_done = threading.Condition(self._lock)
        #: closures linked whose constructors their linking thread has yet to run
        self._due: list[Transition] = []
        #: thread -> the transition it waits for (to find cycles: see _wait_for)
        self._waiting: dict[int, Transition] = {}
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
        parsed = list(map(parse_object, objects))
        with self._lock:
            claimed: set[str] = set()

            def keep_comdat(signature: str) -> bool:
                if signature in self._comdats or signature in claimed:
                    return False
                claimed.add(signature)
                return True

            graphs = []
            for i, obj in enumerate(parsed):
                graphs.append(build_graph(obj, self.arch, names[i] if names else f"<object {i}>",
                                          keep_comdat))
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
            for graph in graphs:
                self.functions_added += graph.function_count
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
        if len(candidates) == 1:        # the usual case: no list, no key function to make
            only = candidates[0]
            if seen_from is None or only.owner.dylib == seen_from \
                    or only.flags & _EXPORTED:
                return only
            return None
        if seen_from is not None:
            candidates = [c for c in candidates if c.owner.dylib == seen_from
                          or c.flags & JITSymbolFlags.EXPORTED]
            if not candidates:
                return None
        return max(candidates, key=lambda c: c.strength)     # the first of equals

    def _symbol(self, definition: Definition) -> JITSymbol:
        if definition.owner.state is FINALIZED:
            return JITSymbol(definition.address, definition.flags)
        return JITSymbol(lambda: self._address_after_link(definition), definition.flags)

    def _address_after_link(self, definition: Definition) -> int:
        present = self._locked(ObjectLinkingLayer._materialize, definition.owner)
        return definition.address if present else 0

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

    def run_exit_handlers(self) -> None:
        """Run what JIT'd code registered with plain ``atexit`` (naming no
        DSO), latest first. :meth:`close` does before it removes any set,
        while the handlers' code is there; so must a stack that removes sets
        from layers above first (a lazy JIT's close)."""
        self.platform.run_exit_handlers()

    # -- linking -------------------------------------------------------------------
    def emit(self, handle: Handle) -> None:
        """Link and finalise a set (and any pending set it needs) now; returns
        once their static constructors have run."""
        with self._lock:
            linked = self._sets.get(handle)
        if linked is None or not self._locked(ObjectLinkingLayer._materialize, linked):
            raise JITError(f"unknown or removed handle {handle!r}")

    # -- threads -------------------------------------------------------------------
    def _locked(self, step: Callable[[ObjectLinkingLayer, A], R], argument: A) -> R:
        """``step(self, argument)`` under the lock, for a public entry point
        (``step`` is a plain function: no bound method to make per call).

        On the outermost call of this thread, once the lock is released: the
        constructors of closures ``step`` linked run (see _run_due); and if
        ``step`` has to wait for another thread (WaitAndRetry: a set in its
        transition, or a resolver's), this waits and runs ``step`` again. A
        nested call (the lock is still held by a caller: a resolver or
        definition generator called while linking) leaves both to the
        outermost one.
        """
        while True:
            try:
                with self._lock:
                    return step(self, argument)
            except WaitAndRetry as busy:
                if self._held_by_caller():
                    raise
                retry = busy
            finally:
                if self._due and not self._held_by_caller():
                    self._run_due()
            retry.wait()

    def _wait_for(self, transition: Transition) -> None:
        """(Under the lock) wait until ``transition`` is done -- unless its
        thread waits, through others, for one of this thread's: then this
        thread becomes its guest (may use its sets) and goes on at once.

        Two constructors that each need the other's set would otherwise wait
        for each other forever. One of them has to go on; raising instead
        would fail a constructor only for having had to wait.
        """
        me = threading.get_ident()
        if self._waits_for(transition, me):
            transition.guests |= {me}
            return
        self._waiting[me] = transition
        try:
            while not transition.done:
                self._transition_done.wait()
        finally:
            del self._waiting[me]

    def _waits_for(self, transition: Transition, thread: int) -> bool:
        """(Under the lock) whether the thread running ``transition`` waits,
        directly or through other threads' transitions, for ``thread``."""
        seen = set()
        while not transition.done:
            owner = transition.thread
            if owner == thread:
                return True
            if owner in seen:
                return False
            seen.add(owner)
            next_transition = self._waiting.get(owner)
            if next_transition is None:
                return False
            transition = next_transition
        return False

    def _held_by_caller(self) -> bool:
        """Whether this thread still holds the lock once out of its own
        ``with``: the call is nested in another of the layer's."""
        return self._lock._is_owned()  # type: ignore[attr-defined]   # (as Condition does)

    def _check_not_busy(self, linked: LinkedSet) -> None:
        """Raise _Busy if another thread is running ``linked``'s constructors
        or destructors (and this one is not its guest: see _wait_for)."""
        transition = linked.transition
        if transition is not None:
            me = threading.get_ident()
            if transition.thread != me and me not in transition.guests:
                raise _Busy(self, transition)

    def _run_due(self) -> None:
        """Run the static constructors of the closures this thread has linked,
        without the lock, in link order (see _construct); raise the first
        error any of them raised. Whatever interrupts this between steps,
        every closure taken ends (FAILED) and its waiters wake."""
        me = threading.get_ident()
        mine: list[Transition] = []
        failed: dict[int, BaseException] = {}
        first: BaseException | None = None
        try:
            while True:         # (publishing a closure may link more: see _construct)
                with self._lock:
                    taken = [transition for transition in self._due if transition.thread == me]
                    if not taken:
                        break
                    mine += taken
                    self._due = [transition for transition in self._due if transition.thread != me]
                for transition in taken:
                    error = self._construct(transition, failed)
                    first = first or error
        except BaseException as error:
            failure = _failure(error, ExecutorError, "the static constructors of this set "
                               "were interrupted")
            with self._lock:
                self._due = [transition for transition in self._due if transition not in mine]
                for transition in mine:
                    if not transition.done:
                        self._end_transition(transition, State.FAILED,
                                             dict.fromkeys(map(id, transition.sets), failure))
            raise
        if first is not None:
            raise first

    def _construct(self, transition: Transition,
                   failed: dict[int, BaseException]) -> BaseException | None:
        """Run the constructors of a linked closure's sets in add order, then
        publish it; returns the first error a constructor raised.

        A set whose constructors fail ends FAILED, and so does every set that
        binds to it, directly or through others (``failed``, by id, shared by
        the closures one call linked). The others end FINALIZED as if the
        failing set had not been linked with them: a failed add takes no
        unrelated set down with it.
        """
        first = None
        for linked in transition.sets:
            if not transition.needs[id(linked)].isdisjoint(failed):
                continue
            linked.constructed = True
            if linked.initializers:
                try:
                    self.platform.run_initializers(linked.initializers)
                except BaseException as error:  # noqa: BLE001 (_run_due raises the first)
                    first = first or error
                    failed[id(linked)] = _failure(
                        error, ExecutorError, "the static constructors of this set did not finish")
        told: dict[int, BaseException] = {}    # id(an error) -> what sets binding to its set say
        spreading = True
        while spreading:            # sets earlier in add order may bind to later ones
            spreading = False
            for linked in transition.sets:
                if id(linked) not in failed:
                    cause = next((failed[need] for need in transition.needs[id(linked)]
                                  if need in failed), None)
                    if cause is not None:
                        said = told.get(id(cause))
                        if said is None:         # (a set binding to such a set says the same)
                            said = ExecutorError("a set this one binds to failed in its "
                                                 f"static constructors: {cause}")
                            told[id(cause)] = told[id(said)] = said
                        failed[id(linked)] = said
                        spreading = True
        with self._lock:
            self._end_transition(transition, State.FINALIZED, failed)
            for name in transition.rebind:      # slots kept off the sets until now
                self._rebind(name)
        return first

    def _end_transition(self, transition: Transition, state: State,
                        failed: Mapping[int, BaseException] = _NONE_FAILED) -> None:
        """(Under the lock) move the transition's sets to ``state``, or FAILED
        with the error ``failed`` has for them; wake waiters."""
        for linked in transition.sets:
            error = failed.get(id(linked))
            if error is None:
                linked.state = state
            else:
                linked.state, linked.error = State.FAILED, error
            linked.transition = None
        transition.done = True
        self._transition_done.notify_all()

    # -- linking (under the lock) --------------------------------------------------
    def _materialize(self, root: LinkedSet) -> bool:
        """Link ``root`` and the pending sets it reaches (a _locked step).

        True once this thread may use ``root``, False if it was removed;
        _Busy while another thread runs its constructors or destructors. A
        closure with static constructors is left INITIALIZING, due for this
        thread to run them (see _run_due) once it has released the lock.
        """
        state = root.state
        if state is not PENDING:
            if state is FAILED:
                raise root.error  # type: ignore[misc]
            if state is State.REMOVED:
                return False
            if root.transition is not None:
                self._check_not_busy(root)
            return True
        start = time.perf_counter()
        closure, bindings = self._bind_closure(root)
        # resolvers may have linked some of them meanwhile (a lazily emitted set)
        if len(closure) > 1 or root.state is not PENDING:
            closure = [linked for linked in closure if linked.state is PENDING]
        linked_so_far: list[LinkedSet] = []
        try:
            for linked in closure:
                linked_so_far.append(linked)
                linked.allocate(bindings[id(linked)], self.memory_pool.contains)
            for linked in closure:
                linked.fix_up(bindings[id(linked)])
            frames = self.platform.frames
            for linked in closure:
                linked.finalize(frames.register_address, frames.deregister_address)
            self._publish(closure, bindings)
        except BaseException as error:
            failure = _failure(error, LinkError, "linking this set was interrupted earlier")
            for transition in [t for t in self._due if t.sets is closure]:
                self._due.remove(transition)    # queued, but nobody is to run its constructors
                self._end_transition(transition, FAILED)
            for linked in linked_so_far:
                linked.release_memory()
                linked.state, linked.error = FAILED, failure
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
        return True

    def _bind_closure(self, root: LinkedSet) -> tuple[list[LinkedSet], dict[int, dict[str, Binding]]]:
        """Bind every name of ``root`` and of the pending sets it reaches."""
        closure: list[LinkedSet] = []
        bindings: dict[int, dict[str, Binding]] = {}
        missing: set[str] = set()
        stack = [root]
        seen = {id(root)}
        platform_symbol = self.platform.symbols.get     # (no call of ours per name)
        defined = self._candidates                      # (nor for a name nothing defines)
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
                definition = self._winner(name, linked.dylib) if name in defined else None
                if definition is None and self.definition_generators and any(
                        generate(name) for generate in self.definition_generators):
                    definition = self._winner(name, linked.dylib)
                if definition is not None:
                    table[name] = definition
                    owner = definition.owner
                    if owner.state is not FINALIZED and id(owner) not in seen:
                        if owner.state is PENDING:
                            seen.add(id(owner))
                            stack.append(owner)
                        elif owner.state is FAILED:
                            raise owner.error  # type: ignore[misc]
                        else:           # not before its constructors (destructors) are done
                            self._check_not_busy(owner)
                    continue
                address = platform_symbol(name)
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

    def _publish(self, closure: list[LinkedSet], bindings: dict[int, dict[str, Binding]]) -> None:
        """A closure just linked is FINALIZED; one with constructors is left
        INITIALIZING instead, due for this thread (see _run_due). Its
        Transition is queued before any set is marked, so an interrupt at any
        point leaves nothing that _run_due (or the link's failure) cannot end.
        """
        for linked in closure:
            if linked.initializers:
                transition = Transition(closure, threading.get_ident(),
                                        self._needs(closure, bindings))
                self._due.append(transition)
                for member in closure:
                    member.state, member.transition = State.INITIALIZING, transition
                return
        for linked in closure:
            linked.state = FINALIZED

    @staticmethod
    def _needs(closure: list[LinkedSet],
               bindings: dict[int, dict[str, Binding]]) -> dict[int, frozenset[int]]:
        """For each set of a closure with constructors: the sets not yet
        published that it binds to (its closure's, or ones this thread is
        still constructing), by id -- whose failure it shares."""
        unpublished = {id(linked) for linked in closure}
        needs = {}
        for linked in closure:
            needs[id(linked)] = frozenset(
                id(owner) for binding in bindings[id(linked)].values()
                if isinstance(binding, Definition) and (owner := binding.owner) is not linked
                and (id(owner) in unpublished or owner.transition is not None))
        return needs

    def _rebind(self, name: str, leaving: bool = False) -> None:
        """Point every rebindable GOT slot of ``name`` at the best definition
        every thread may use (``leaving``: the one they were bound to is
        being removed).

        Candidates are taken in precedence order, a pending one linked first.
        One that cannot be linked now (it fails, or needs a set in another
        thread's transition) is passed over: the slots stay on code that
        exists and move when it links (linking a set rebinds its names). One
        whose constructors are still running is passed over too, and its
        transition notes the name: the slots move once they are done.
        Failing a finished candidate, the best one in memory is used -- the
        slots never hold 0 while something defines the name -- except that
        a removal waits (_Busy gets out) rather than hand them to a set
        another thread is still constructing.
        """
        chosen: Definition | None = None
        fallback: Definition | None = None
        busy: WaitAndRetry | None = None
        for candidate in sorted(self._candidates.get(name, ()), key=lambda c: -c.strength):
            owner = candidate.owner        # (a stable sort: the first of equals first)
            if owner.state is State.PENDING:
                try:
                    self._materialize(owner)
                except JITError:
                    continue
                except WaitAndRetry as error:
                    busy = busy or error
                    continue
            state = owner.state
            if state is State.FINALIZED:
                chosen = candidate
                break
            if state in _LINKED:
                transition = owner.transition
                if state is State.INITIALIZING and transition is not None:
                    transition.rebind.add(name)
                    me = threading.get_ident()
                    if transition.thread != me and me not in transition.guests:
                        busy = busy or _Busy(self, transition)
                fallback = fallback or candidate
        else:
            if leaving and busy is not None:
                raise busy
            chosen = fallback
        data = (chosen.address if chosen is not None else 0).to_bytes(8, "little")
        for _owner, slot in self._rebindable.get(name, ()):
            self.executor.write(slot, data)

    # -- removal -----------------------------------------------------------------
    def remove_object_set(self, handle: Handle) -> None:
        """Run the set's destructors, deregister its frames, free its memory.

        Waits for constructors (or a removal) of the set running on another
        thread; the set's own constructors cannot remove it (JITError).
        Destructors run without the lock, like constructors; other threads
        that want the set meanwhile wait, then find it gone.
        """
        if not self._remove(handle):
            raise JITError(f"unknown or already removed handle {handle!r}")

    remove_module_set = remove_object_set

    def _remove(self, handle: Handle) -> bool:
        """remove_object_set; False if there is no such set (any more).

        A removal this call began ends whatever stops it between steps (an
        interrupt: the destructors not run yet are skipped), so no set is
        left REMOVING for others to wait on forever. (Its transition is the
        set's one of this thread that was not there before the call; one
        that was -- removal from its own destructors -- is refused.)
        """
        linked = self._sets.get(handle)
        before = linked.transition if linked is not None else None
        try:
            linked = self._locked(ObjectLinkingLayer._begin_removal, handle)
            if linked is None:
                return False
            if linked.state is State.REMOVING:
                self.platform.run_finalizers(linked.dso_handle, linked.finalizers)
            return True
        finally:
            linked = self._sets.get(handle)     # (gone already: the common case)
            if linked is not None:
                begun = linked.transition
                if begun is not None and begun is not before \
                        and begun.thread == threading.get_ident():
                    self._locked(ObjectLinkingLayer._end_removal, linked)

    def _begin_removal(self, handle: Handle) -> LinkedSet | None:
        """(A _locked step) a set with destructors to run becomes REMOVING;
        any other -- every lazily compiled body -- is removed at once, with
        no transition to make or wait for."""
        linked = self._sets.get(handle)
        if linked is None:
            return None
        transition = linked.transition
        if transition is not None:
            me = threading.get_ident()
            if transition.thread == me or me in transition.guests:
                doing = "removed" if linked.state is State.REMOVING else "initialised"
                by = "this thread" if transition.thread == me else "a thread waiting for this one"
                raise JITError(f"set {handle!r} cannot be removed while it is being {doing} "
                               f"by {by} (from its constructors or destructors)")
            raise _Busy(self, transition)
        if (linked.state is State.FINALIZED or linked.constructed) and (
                linked.finalizers or (dso := linked.dso_handle)
                and self.platform.has_registrations(dso)):
            linked.state = State.REMOVING
            linked.transition = Transition([linked], threading.get_ident())
        else:
            self._end_removal(linked)
        return linked

    def _end_removal(self, linked: LinkedSet) -> None:
        """(A _locked step) hand the slots bound to the set's definitions on,
        then forget the set and free its memory.

        Handing on may have to wait for another thread (see _rebind): then
        the set's definitions are put back, and the step runs again later.
        """
        withdrawn = []                  # the set's definitions out of the symbol table
        for name, definition in linked.definitions.items():
            candidates = self._candidates[name]
            index = candidates.index(definition)
            del candidates[index]
            if not candidates:
                del self._candidates[name]
            withdrawn.append((name, index))
        if linked.rebindable_slots or self._rebindable:
            try:
                self._forget_slots(linked)
            except WaitAndRetry:
                for name, index in withdrawn:
                    self._candidates.setdefault(name, []).insert(index, linked.definitions[name])
                raise
            except BaseException:
                self._forget(linked)
                raise
        self._forget(linked)

    def _forget_slots(self, linked: LinkedSet) -> None:
        """Drop the set's own slots; re-point others at what its definitions leave behind."""
        for name, _slot in linked.rebindable_slots:
            slots = self._rebindable.get(name)
            if slots:
                slots[:] = [(owner, slot) for owner, slot in slots if owner is not linked]
                if not slots:
                    del self._rebindable[name]
        linked.rebindable_slots = ()
        for name in linked.definitions.keys() & self._rebindable.keys():
            self._rebind(name, leaving=True)

    def _forget(self, linked: LinkedSet) -> None:
        """(Under the lock) drop the set from the remaining tables and free its memory."""
        try:
            for registration in linked.debug_registrations:
                self.platform.debugger.unregister(registration)
            for signature in [s for s, owner in self._comdats.items() if owner is linked]:
                del self._comdats[signature]
            linked.release_memory()
        finally:
            del self._sets[linked.handle]
            if linked.transition is not None:
                self._end_transition(linked.transition, State.REMOVED)
            else:
                linked.state = State.REMOVED

    def handles(self) -> list[Handle]:
        return list(self._sets)

    def owns(self, handle: Handle) -> bool:
        """Whether ``handle`` is a set of this layer (not removed)."""
        return handle in self._sets

    def pending_handles(self) -> list[Handle]:
        """Sets added but not linked yet."""
        return [h for h, s in self._sets.items() if s.state is State.PENDING]

    def failed_handles(self) -> list[Handle]:
        """Sets whose link or constructors failed (or a set's they bind to):
        they only accept removal."""
        return [h for h, s in self._sets.items() if s.state is State.FAILED]

    def close(self) -> None:
        """Run the exit handlers, remove every set (destructors run, latest
        set first) and free the pool.

        The lock is not held across removals: constructors and destructors
        other threads are running can finish (they are waited for)."""
        self.run_exit_handlers()
        while True:
            with self._lock:
                if not self._sets:
                    break
                handle = next(reversed(self._sets))
            self._remove(handle)       # (False: another thread removed it meanwhile)
        self.platform.close()
        self.memory_pool.close()
