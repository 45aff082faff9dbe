"""CompileOnDemandLayer: a stub per function, a body compiled on first call.

Adding a module set is cheap: each module is printed once and cut into
items (see :mod:`.partition`); its global variables go down at once as one
partition; every function gets an indirect stub -- *the* function's address
for everyone, so function-pointer equality holds -- whose pointer leads to
a compile callback. The first call through the stub builds that function's
partition, hands it to the layer below, points the stub at the body and
continues into it. Later calls go stub -> body.

Concurrency: each function has its own lock, held only while that function
is compiled; many threads may trigger compilation at once, each body is
compiled once and every caller continues into it.

Also here, all swapping bodies behind the same stubs: ``replace`` (new
versions of live functions), a second tier (:class:`BackgroundOptimizer`
recompiles what ran) and patchpoints (:class:`CallSitePatcher` sends calls
between partitions straight to bodies).
"""

from __future__ import annotations

import functools
import itertools
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import DuplicateDefinitionError, JITError
from ..frontends.ir import dispose, parse_ir
from ..lazy import CompileCallbackManager, DirectStubsManager, IndirectStubsManager
from ..link.graph import Segment
from ..symbols import JITSymbol, JITSymbolFlags, SymbolResolver
from .base import Handle, Layer
from .partition import ModuleText

#: indirection strategy -> (stubs manager, whether call sites are patched)
INDIRECTIONS: dict[str, tuple[type[IndirectStubsManager], bool]] = {
    "double": (IndirectStubsManager, False),   # call stub; stub jumps through a pointer
    "single": (DirectStubsManager, False),     # call stub; stub is a patched direct jump
    "patchpoint": (IndirectStubsManager, True),  # calls between partitions go straight
                                                 # to the body once it exists
}


@dataclass(eq=False)
class _LazyFunction:
    """One function of a set: its stub, and its body once compiled."""

    owner: _LazySet
    module: ModuleText
    ir_name: str                 # as printed ('@name')
    stub_name: str
    strong: bool                 # external linkage; weak and linkonce ones are not
    trampoline: int = 0
    body: int = 0
    handle: Handle | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(eq=False)
class _LazySet:
    resolver: _SetResolver
    suffixes: list[str]          # per module: makes its promoted local names unique
    functions: dict[str, _LazyFunction] = field(default_factory=dict)    # by stub name
    globals_handles: list[Handle] = field(default_factory=list)
    global_names: set[str] = field(default_factory=set)
    retired: list[_LazyFunction] = field(default_factory=list)   # replaced bodies, kept
    retired_handles: list[Handle] = field(default_factory=list)  # bodies a tier replaced
    aliases: list[str] = field(default_factory=list)
    generation: int = 0
    removed: bool = False
    #: held while globals are added (by add_module_set or replace: one at a
    #: time); removal waits for it, so for the constructors they run
    changing: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class _Snapshot:
    """What a failed ``replace`` restores of a set (the generation only ever
    grows: a number left unused is harmless)."""

    suffix_count: int
    globals_count: int
    global_names: frozenset[str]

    @classmethod
    def of(cls, lazy: _LazySet) -> _Snapshot:
        return cls(len(lazy.suffixes), len(lazy.globals_handles), frozenset(lazy.global_names))

    def restore(self, lazy: _LazySet) -> None:
        del lazy.suffixes[self.suffix_count:]
        del lazy.globals_handles[self.globals_count:]
        lazy.global_names = set(self.global_names)


#: bytes of JIT memory a lazy set holds so that its DSO handle is an address of its own
_DSO_HANDLE_SIZE = 8


class _SetResolver:
    """How partitions find names: our stubs first, then the set's resolver.

    It also names the set's DSO: eight bytes of JIT memory the set holds
    from add to removal, whose address every partition of the set (globals,
    bodies, replacements, second-tier bodies) uses as ``__dso_handle``. So
    destructors registered by any of them run when the set is removed, while
    its functions still exist, not when one partition goes.
    """

    def __init__(self, layer: CompileOnDemandLayer, fallback: SymbolResolver):
        self.layer, self.fallback = layer, fallback
        self.dso_handle = 0      # given when the set is registered
        self.dylib: str = getattr(fallback, "dylib", "")

    def lookup(self, name: str) -> int | None:
        stub = self.layer.stubs.find_stub(self.layer.aliases.get(name, name))
        return stub if stub else self.fallback.lookup(name)


class CompileOnDemandLayer(Layer):
    """Splits modules into per-function partitions compiled on first call."""

    _set_ids = itertools.count(1)

    def __init__(self, base: Layer, stubs: IndirectStubsManager,
                 callbacks: CompileCallbackManager, resolver: SymbolResolver,
                 patch_call_sites: bool = False, optimizing_base: Layer | None = None,
                 optimize_after: float = 0.1):
        self.base = base
        self.stubs = stubs         # its kind is the indirection strategy (see INDIRECTIONS)
        self.callbacks = callbacks
        self.resolver = resolver
        self.patcher = CallSitePatcher(self) if patch_call_sites else None
        #: a second tier: functions that ran are recompiled through
        #: ``optimizing_base`` on a background thread and swapped in
        self.optimizer = (BackgroundOptimizer(self, optimizing_base, optimize_after)
                          if optimizing_base is not None else None)
        self._sets: dict[Handle, _LazySet] = {}
        self._candidates: dict[str, list[_LazyFunction]] = {}   # stub name -> definitions
        self.aliases: dict[str, str] = {}     # alias -> the stub name it stands for
        #: called with each partition module (and its function names) before it
        #: is compiled -- for dumps and tracing (lli's -orc-lazy-debug)
        self.on_partition: Callable[[Any, list[str]], None] | None = None
        self._lock = threading.RLock()
        self.functions_compiled = 0
        self.partition_seconds = 0.0    # cutting and assembling text (ours)
        self.parse_seconds = 0.0        # LLVM parsing partitions
        self.compile_seconds = 0.0      # everything done on first calls (and by a second tier)
        self.recompile_seconds = 0.0    # of which by a second tier, beside the program
        self.last_compile = 0.0         # time.monotonic() of the latest first-call compile

    # -- adding ------------------------------------------------------------------
    def add_module_set(self, modules: Sequence[Any], memory_manager: Any = None,
                       resolver: SymbolResolver | None = None) -> Handle:
        start = time.perf_counter()
        suffixes = [f".orc{next(self._set_ids)}" for _ in modules]
        texts = [_cut(module, suffix) for module, suffix in zip(modules, suffixes)]
        lazy = _LazySet(_SetResolver(self, resolver or self.resolver), suffixes)
        with self._lock:
            clashes = []
            for cut in texts:
                for ir_name in cut.defined_functions():
                    stub_name = cut.stub_name(ir_name)
                    strong = cut.functions[ir_name].is_strong
                    if stub_name in lazy.functions:
                        if strong and lazy.functions[stub_name].strong:
                            clashes.append(stub_name)
                        continue
                    if strong and any(c.strong for c in self._candidates.get(stub_name, ())):
                        clashes.append(stub_name)
                        continue
                    lazy.functions[stub_name] = _LazyFunction(
                        lazy, cut, ir_name, stub_name, strong)
            if clashes:
                raise DuplicateDefinitionError(clashes)
            for function in lazy.functions.values():
                function.trampoline = self.callbacks.get_compile_callback(
                    functools.partial(self._compile, function))
                self._candidates.setdefault(function.stub_name, []).append(function)
                self._point_stub(function.stub_name)
            for cut in texts:
                for alias, target in cut.function_aliases.items():
                    self.aliases[cut.stub_name(alias)] = cut.stub_name(target)
                    lazy.aliases.append(cut.stub_name(alias))
            handle = Handle()
            lazy.resolver.dso_handle = self.stubs.pool.allocate(_DSO_HANDLE_SIZE, Segment.RODATA)
            self._sets[handle] = lazy
        self.partition_seconds += time.perf_counter() - start
        try:
            with lazy.changing:     # (close() may see the handle already: it waits)
                self._add_globals(lazy, texts)
        except BaseException:
            self.remove_module_set(handle)
            raise
        return handle

    def _add_globals(self, lazy: _LazySet, texts: list[ModuleText]) -> None:
        """Send the modules' new global variables down as partitions, linked now
        (so their constructors run before anything else of the set is called)."""
        for cut in texts:
            defined = cut.defined_globals()
            if not defined - lazy.global_names:
                continue
            globals_handle = self.base.add_module_set(
                [parse_ir(cut.globals_partition(lazy.global_names), shared_context=True,
                          has_target=cut.has_target, inert_at_o0=cut.inert_at_o0)],
                None, lazy.resolver)
            lazy.globals_handles.append(globals_handle)
            lazy.global_names |= defined
            self.base.emit(globals_handle)  # type: ignore[attr-defined]

    # -- hot replacement -------------------------------------------------------------
    def replace(self, handle: Handle, modules: Sequence[Any]) -> None:
        """Swap in new bodies for a set's functions while other threads call them.

        Functions defined by ``modules`` replace the set's functions of the
        same name (new ones are added); global variables the set already has
        keep their state, new ones are added. A function whose old body was
        compiled gets its new body compiled now, then its stub is repointed in
        one atomic store: every call runs the old body or the new one. Others
        are repointed to a fresh compile callback. Old bodies cannot be known
        to be unused (a thread may be inside one), so they are kept until
        :meth:`release_replaced` or removal of the set. If any of this fails
        (a new body does not compile, say), no stub has moved: what was built
        is freed and the set is as it was.
        """
        with self._lock:
            lazy = self._sets.get(handle)
        if lazy is None:
            raise JITError(f"unknown or removed handle {handle!r}")
        with lazy.changing:
            if lazy.removed:
                raise JITError(f"unknown or removed handle {handle!r}")
            self._replace(lazy, modules)

    def _replace(self, lazy: _LazySet, modules: Sequence[Any]) -> None:
        before = _Snapshot.of(lazy)
        replaced: list[tuple[_LazyFunction, _LazyFunction | None]] = []
        new_stubs: list[str] = []
        try:
            with self._lock:
                lazy.generation += 1
                # module i replaces module i: its local names must map to the same globals
                while len(lazy.suffixes) < len(modules):
                    lazy.suffixes.append(f".orc{next(self._set_ids)}")
                texts = [_cut(module, suffix, generation=lazy.generation)
                         for module, suffix in zip(modules, lazy.suffixes)]
                for cut in texts:
                    for ir_name in cut.defined_functions():
                        stub_name = cut.stub_name(ir_name)
                        old = lazy.functions.get(stub_name)
                        if old is None and any(c.owner is not lazy
                                               for c in self._candidates.get(stub_name, ())):
                            raise DuplicateDefinitionError([stub_name])
                        new = _LazyFunction(lazy, cut, ir_name, stub_name,
                                            cut.functions[ir_name].is_strong)
                        replaced.append((new, old))
            self._add_globals(lazy, texts)
            with self._lock:
                for new, old in replaced:
                    new.trampoline = self.callbacks.get_compile_callback(
                        functools.partial(self._compile, new))
                    if old is None and new.stub_name not in self.stubs:
                        # the new bodies compiled below may call functions new to this replacement
                        self.stubs.create_stub(new.stub_name, new.trampoline)
                        new_stubs.append(new.stub_name)
            for new, old in replaced:
                if old is not None and old.body:
                    self._compile(new)               # hot: have the new body ready first
        except BaseException:
            self._undo_replace(lazy, before, [new for new, _old in replaced], new_stubs)
            raise
        with self._lock:
            for new, old in replaced:
                lazy.functions[new.stub_name] = new
                candidates = self._candidates.setdefault(new.stub_name, [])
                if old is not None:
                    candidates[candidates.index(old)] = new
                    lazy.retired.append(old)
                else:
                    candidates.append(new)
                self._point_stub(new.stub_name)      # the one atomic switch

    def _undo_replace(self, lazy: _LazySet, before: _Snapshot,
                      unused: list[_LazyFunction], new_stubs: list[str]) -> None:
        """A replacement failed before any existing stub moved: free what it
        built (stubs of new names, new bodies, trampolines, globals
        partitions) and restore the set."""
        with self._lock:
            for name in new_stubs:
                self.stubs.remove_stub(name)
        for function in unused:
            self._drop(function)
        for globals_handle in reversed(lazy.globals_handles[before.globals_count:]):
            self.base.remove_module_set(globals_handle)
        before.restore(lazy)

    def release_replaced(self, handle: Handle) -> int:
        """Free the bodies that replacements retired; returns how many.

        Call it only when no thread can still be running an old body (for
        example after the calls that were in flight during the replacement
        have returned).
        """
        with self._lock:
            lazy = self._sets.get(handle)
            if lazy is None:
                raise JITError(f"unknown or removed handle {handle!r}")
            retired, lazy.retired = lazy.retired, []
            handles, lazy.retired_handles = lazy.retired_handles, []
        for function in retired:
            self._drop(function)
        for old in handles:
            self._remove_partition(old)
        return len(retired) + len(handles)

    def _remove_partition(self, handle: Handle) -> None:
        """Remove a compiled partition; the patcher stops writing into its code first."""
        if self.patcher:
            self.patcher.forget(handle)
        self.base.remove_module_set(handle)

    def _drop(self, function: _LazyFunction) -> None:
        with function.lock:
            if function.handle is not None:
                self._remove_partition(function.handle)
            if function.trampoline:
                self.callbacks.release(function.trampoline)
            function.handle, function.body, function.trampoline = None, 0, 0

    def _winner(self, stub_name: str) -> _LazyFunction | None:
        """A strong definition beats weak ones; otherwise the first added wins."""
        candidates = self._candidates.get(stub_name)
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        return next((c for c in candidates if c.strong), candidates[0])

    def _point_stub(self, stub_name: str) -> None:
        """Make the stub lead to its winner's body, or to its compile callback."""
        winner = self._winner(stub_name)
        if winner is None:
            self.stubs.remove_stub(stub_name)
            return
        target = winner.body or winner.trampoline
        if stub_name in self.stubs:
            self.stubs.update_pointer(stub_name, target)
        else:
            self.stubs.create_stub(stub_name, target)
        if self.patcher:
            self.patcher.retarget(stub_name)

    # -- compiling on first call -------------------------------------------------
    def _compile(self, function: _LazyFunction) -> int:
        if not function.body and function.owner.changing.locked():
            self._wait_for_globals(function.owner)
        with function.lock:
            if function.body:
                return function.body
            if function.owner.removed:
                raise JITError(f"{function.stub_name} was called after its set was removed")
            start = time.perf_counter()
            handle, body = self._build_body(function, self.base, tier="")
            function.handle, function.body = handle, body
            with self._lock:
                self._point_stub(function.stub_name)
            self.functions_compiled += 1
            self.last_compile = time.monotonic()
            self.compile_seconds += time.perf_counter() - start
        if self.optimizer is not None:
            self.optimizer.submit(function)
        # The trampoline stays: a thread may have read the old stub pointer and
        # be on its way into it. It is released with the function (_drop).
        return body

    def _wait_for_globals(self, lazy: _LazySet) -> None:
        """Wait (unless this thread runs them) for the constructors of the
        set's globals, before taking a function's lock.

        The body will bind to those globals, so its link would wait for them
        anyway -- holding the function's lock, which a constructor calling
        that function then waits for: neither would ever go on. Only asked
        while globals are being added (``changing`` held): a first call
        otherwise pays nothing for it. Errors are left to the compilation to
        meet (a failed or removed set).
        """
        for globals_handle in tuple(lazy.globals_handles):
            try:
                self.base.emit(globals_handle)  # type: ignore[attr-defined]
            except JITError:
                pass

    # -- symbols -------------------------------------------------------------------
    def find_symbol(self, name: str, exported_symbols_only: bool = True) -> JITSymbol | None:
        name = self.aliases.get(name, name)
        if name in self._candidates:
            return JITSymbol(self.stubs.find_stub(name),
                             JITSymbolFlags.EXPORTED | JITSymbolFlags.CALLABLE)
        return self.base.find_symbol(name, exported_symbols_only)

    def find_symbol_in(self, handle: Handle, name: str,
                       exported_symbols_only: bool = True) -> JITSymbol | None:
        lazy = self._sets.get(handle)
        if lazy is None:
            return None
        if name in lazy.functions:
            return self.find_symbol(name)
        for globals_handle in lazy.globals_handles:
            symbol = self.base.find_symbol_in(globals_handle, name, exported_symbols_only)
            if symbol is not None:
                return symbol
        return None

    def is_compiled(self, name: str) -> bool:
        function = self._winner(name)
        return bool(function and function.body)

    # -- removal -------------------------------------------------------------------
    def remove_module_set(self, handle: Handle) -> None:
        with self._lock:
            lazy = self._sets.get(handle)
        if lazy is None:
            raise JITError(f"unknown or already removed handle {handle!r}")
        with lazy.changing:           # not while globals are added or replaced
            with self._lock:
                if self._sets.pop(handle, None) is None:
                    raise JITError(f"unknown or already removed handle {handle!r}")
            # Destructors first, while the set's functions can still be called
            # (and compiled: so no layer lock is held): those registered with
            # __cxa_atexit, then the globals partitions' own.
            self.base.run_atexit(lazy.resolver.dso_handle)  # type: ignore[attr-defined]
            for globals_handle in lazy.globals_handles:
                self.base.remove_module_set(globals_handle)
            with self._lock:
                lazy.removed = True           # first calls from now on fail
                for alias in lazy.aliases:
                    self.aliases.pop(alias, None)
                for function in lazy.functions.values():
                    candidates = self._candidates[function.stub_name]
                    candidates.remove(function)
                    if not candidates:
                        del self._candidates[function.stub_name]
                    self._point_stub(function.stub_name)
            # a first call still compiling finishes before its function is dropped
            for old in lazy.retired_handles:
                self._remove_partition(old)
            for function in lazy.retired:
                self._drop(function)
            for function in lazy.functions.values():
                self._drop(function)
            self.stubs.pool.free(lazy.resolver.dso_handle, _DSO_HANDLE_SIZE, Segment.RODATA)

    def handles(self) -> list[Handle]:
        return list(self._sets)

    def owns(self, handle: Handle) -> bool:
        return handle in self._sets

    def _recompile(self, function: _LazyFunction, base: Layer) -> bool:
        """Compile ``function`` again through ``base`` and swap the new body in.

        The body it replaces is kept (a thread may be running it) until
        release_replaced or removal. Returns whether the swap happened.
        """
        with self._lock:
            if function.owner.removed or self._winner(function.stub_name) is not function:
                return False
        start = time.perf_counter()
        try:
            handle, body = self._build_body(function, base, tier=".t2")
            with function.lock, self._lock:
                if function.owner.removed or self._winner(function.stub_name) is not function:
                    self._remove_partition(handle)
                    return False
                if function.handle is not None:
                    function.owner.retired_handles.append(function.handle)
                function.handle, function.body = handle, body
                self._point_stub(function.stub_name)
            return True
        finally:
            seconds = time.perf_counter() - start
            self.compile_seconds += seconds
            self.recompile_seconds += seconds

    def _build_body(self, function: _LazyFunction, base: Layer, tier: str) -> tuple[Handle, int]:
        """Cut ``function``'s partition, send it through ``base``, return (handle, body).

        ``tier`` tells bodies of the same function apart (first and second tier).
        """
        start = time.perf_counter()
        cut = function.module
        text, body_symbol = cut.function_partition(function.ir_name, tier)
        parsed = time.perf_counter()
        # cut from a module verified when it was added: no second verification
        module = parse_ir(text, name=f"{cut.name}.submodule.{function.stub_name}",
                          verify=False, shared_context=True,
                          has_target=cut.has_target, inert_at_o0=cut.inert_at_o0)
        self.partition_seconds += parsed - start
        self.parse_seconds += time.perf_counter() - parsed
        try:
            if self.on_partition is not None and not tier:
                self.on_partition(module, [function.stub_name])
            handle = base.add_module_set([module], None, function.owner.resolver)
        except BaseException:
            dispose(module)        # (if the compile layer has not: it frees what it compiled)
            raise
        if self.patcher:
            self.patcher.partitions.add(handle)
        try:
            body = base.lookup_symbol_address_in(handle, body_symbol,
                                                 exported_symbols_only=False)
            if not body:
                raise JITError(f"compiled partition of {function.stub_name} has no body")
        except BaseException:
            self._remove_partition(handle)
            raise
        return handle, body

    def close(self) -> None:
        """Stop background work (waits for a recompilation in progress)."""
        if self.optimizer is not None:
            self.optimizer.close()


def _cut(module: Any, suffix: str, generation: int = 0) -> ModuleText:
    """Print a module once, cut it into items and free the module."""
    text = str(module)
    dispose(module)
    cut = ModuleText.parse(text)
    cut.promote_locals(suffix)
    if generation:
        cut.body_suffix += f".g{generation}"
    return cut


class BackgroundOptimizer:
    """Tiered compilation: recompile functions that ran, off the calling thread.

    A function compiled on its first call (the fast tier) is queued; after
    ``delay`` seconds -- programs that finish sooner never pay for it -- a
    daemon thread compiles it again through the optimising layer stack and
    swaps the new body in through the stub. LLVM releases the GIL, so this
    runs beside JIT'd code on another core.
    """

    def __init__(self, layer: CompileOnDemandLayer, base: Layer, delay: float):
        self.layer, self.base, self.delay = layer, base, delay
        self.quiet = 0.05            # seconds without first-call compiles before recompiling
        self.functions_optimized = 0
        self._queue: queue.SimpleQueue[tuple[float, _LazyFunction] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition()

    def submit(self, function: _LazyFunction) -> None:
        if self._stop.is_set():
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="orcjit-optimizer",
                                                daemon=True)
                self._thread.start()
        with self._idle:
            self._pending += 1
        self._queue.put((time.monotonic() + self.delay, function))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._stop.is_set():
                return
            ready, function = item
            if self._stop.wait(max(0.0, ready - time.monotonic())):
                return
            # llvmlite runs one LLVM call at a time: let first-call compiles
            # (someone is waiting on those) settle before starting a long one
            while (quiet := time.monotonic() - self.layer.last_compile) < self.quiet:
                if self._stop.wait(self.quiet - quiet):
                    return
            with self._busy:
                if self._stop.is_set():
                    return
                try:
                    if self.layer._recompile(function, self.base):
                        self.functions_optimized += 1
                except Exception as error:            # the fast body keeps working
                    if not function.owner.removed:    # else: removed meanwhile, nothing lost
                        print(f"orcjit: background recompilation of {function.stub_name} "
                              f"failed: {error}", file=sys.stderr)
                finally:
                    with self._idle:
                        self._pending -= 1
                        self._idle.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every queued recompilation is done; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        self._stop.set()
        self._queue.put(None)
        with self._busy:          # a recompilation in progress finishes first
            pass


class CallSitePatcher:
    """The "patchpoint" strategy: rewrite direct calls between partitions.

    The object layer reports every direct rel32 call a partition makes to a
    stub; once the callee's body exists the call's displacement is rewritten
    to reach the body itself, skipping the stub. A field that lies within
    one aligned 8-byte word is rewritten in one store (read, modify, write
    under our lock); one that straddles two words keeps calling the stub --
    correct, only slower. Calls from outside this layer's partitions, and
    function pointers, always use the stub.
    """

    def __init__(self, layer: CompileOnDemandLayer):
        self.layer = layer
        self.partitions: set[Handle] = set()
        self.sites: dict[str, list[tuple[Handle, int]]] = {}
        self.patched = 0
        self._lock = threading.Lock()
        layer.base.observe_call_sites(self._observe)  # type: ignore[attr-defined]

    def _observe(self, handle: Handle, name: str, site: int) -> None:
        if handle not in self.partitions or name not in self.layer._candidates:
            return
        if site % 8 > 4:
            return                                   # straddles two words: leave it
        with self._lock:
            self.sites.setdefault(name, []).append((handle, site))
        target = self._target(name)
        if target:
            self._patch([site], target)              # only the new call: the others are done

    def retarget(self, name: str) -> None:
        """Point every recorded call to ``name`` at its body, or back at its stub."""
        sites = self.sites.get(name)
        target = self._target(name) if sites else 0
        if target:
            self._patch([site for _handle, site in sites], target)  # type: ignore[union-attr]

    def _target(self, name: str) -> int:
        winner = self.layer._winner(name)
        return winner.body if winner and winner.body else self.layer.stubs.find_stub(name)

    def _patch(self, sites: list[int], target: int) -> None:
        executor = self.layer.stubs.pool.executor
        with self._lock:
            for site in sites:
                word = site & ~7
                data = bytearray(executor.read(word, 8))
                disp = target - (site + 4)
                data[site - word:site - word + 4] = disp.to_bytes(4, "little", signed=True)
                executor.write_pointer(word, int.from_bytes(data, "little"))
                self.patched += 1

    def forget(self, handle: Handle) -> None:
        """A partition is going away: its call sites are no longer ours to patch."""
        with self._lock:
            self.partitions.discard(handle)
            for name, sites in list(self.sites.items()):
                kept = [(h, s) for h, s in sites if h is not handle]
                if kept:
                    self.sites[name] = kept
                else:
                    del self.sites[name]
