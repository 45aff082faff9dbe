"""Static constructors and destructors run outside the object layer's lock.

A constructor may call a function another thread is compiling (that
compilation needs the lock to link its body), and may take its time while
other threads use the JIT. Until a set's constructors have returned, other
threads that want the set -- a lookup, a set binding to it, its removal --
wait; the thread running them does not. A constructor that fails leaves its
set FAILED, and the sets that bind to it; every waiter sees why, and sets
linked with it that do not need it are published as usual.

Every test runs its threads with a deadline: a regression fails the test
instead of hanging the suite (the JIT is then left open: a thread may be
stuck inside it).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from arbuilder import ar

import orcjit
from orcjit.errors import ExecutorError, JITError, UnresolvedSymbolsError
from orcjit.frontends.ir import parse_ir
from orcjit.layers import create_target_machine, object_linking
from orcjit.layers.object_linking import ObjectLinkingLayer
from orcjit.link.linker import State, Transition

DEADLINE = 5.0      # seconds; every test finishes in well under one when it works
PAUSE = 0.2         # how long a constructor or a compilation is held up


def ctors(*entries: str) -> str:
    """An ``llvm.global_ctors`` (or dtors, see :func:`dtors`) array of ``entries``."""
    return _array("llvm.global_ctors", entries)


def dtors(*entries: str) -> str:
    return _array("llvm.global_dtors", entries)


def _array(name: str, entries: tuple[str, ...]) -> str:
    items = ", ".join(f"{{ i32, ptr, ptr }} {{ i32 65535, ptr @{e}, ptr null }}" for e in entries)
    return (f"@{name} = appending global [{len(entries)} x {{ i32, ptr, ptr }}] [{items}]\n")


def x_from(callee: str) -> str:
    """A set whose constructor stores what ``callee()`` returns in x."""
    return f"""
@x = global i64 0
declare i64 @{callee}()
define internal void @init() {{
  %v = call i64 @{callee}()
  store i64 %v, ptr @x
  ret void
}}
define i64 @get() {{
  %v = load i64, ptr @x
  ret i64 %v
}}
""" + ctors("init")


# y is copied from another set's x by this set's constructor
Y_FROM_X = """
@x = external global i64
@y = global i64 0
define internal void @init() {
  %v = load i64, ptr @x
  store i64 %v, ptr @y
  ret void
}
define i64 @gety() {
  %v = load i64, ptr @y
  ret i64 %v
}
""" + ctors("init")

SLOW = "define i64 @slow() {\n  ret i64 7\n}"


@contextmanager
def open_jit(**options: Any) -> Iterator[orcjit.JIT]:
    """A JIT closed at the end -- unless the test failed: a thread may be stuck in it."""
    jit = orcjit.JIT(**options)
    yield jit
    jit.close()


def start(target: Callable[..., Any], *args: Any,
          name: str | None = None) -> tuple[threading.Thread, list[Any]]:
    """Run ``target(*args)`` on a daemon thread; the list gets its result or exception."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(target(*args))
        except BaseException as error:  # noqa: BLE001  (handed to the test)
            outcome.append(error)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread, outcome


def finish(thread: threading.Thread, timeout: float = DEADLINE) -> None:
    thread.join(timeout)
    assert not thread.is_alive(), f"{thread.name} is stuck (deadlock?)"


def slow_source(value: int, started: threading.Event,
                log: list[str] | None = None) -> Callable[[], int]:
    """A callback for a constructor: says it started, takes PAUSE, returns ``value``."""
    def source() -> int:
        if log is not None:
            log.append("ctor start")
        started.set()
        time.sleep(PAUSE)
        if log is not None:
            log.append("ctor end")
        return value
    return source


def value_at(jit: orcjit.JIT, name: str) -> int:
    return ctypes.c_int64.from_address(jit.address(name)).value


def hold_compiles_of(jit: orcjit.JIT, thread_name: str) -> threading.Event:
    """Make first calls on the thread named ``thread_name`` take PAUSE while
    compiling (the lazy layer's partition hook); the event says one began."""
    compiling = threading.Event()

    def hold(module: Any, names: list[str]) -> None:
        if threading.current_thread().name == thread_name:
            compiling.set()
            time.sleep(PAUSE)
    jit.lazy.on_partition = hold        # type: ignore[union-attr]
    return compiling


def run_alone(script: str) -> list[str]:
    """Run ``script`` in a fresh interpreter -- a crash fails the test instead
    of killing pytest -- and return the lines it printed."""
    source = os.path.dirname(os.path.dirname(orcjit.__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (source, os.environ.get("PYTHONPATH")) if p))
    result = subprocess.run([sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(script)],
                            capture_output=True, text=True, timeout=2 * DEADLINE, env=env,
                            check=False)
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stderr}"
    return result.stdout.splitlines()


# -- the deadlock ---------------------------------------------------------------------
def test_a_constructor_may_call_a_function_another_thread_is_compiling():
    """The compilation needs the linker's lock: constructors must not hold it."""
    with open_jit(lazy=True) as jit:
        jit.add_ir(SLOW)
        compiling = hold_compiles_of(jit, "first caller")
        caller, called = start(jit.lookup("slow", "int64_t()"), name="first caller")
        assert compiling.wait(DEADLINE)
        adder, added = start(jit.add_ir, x_from("slow"), name="adder")
        finish(adder)
        finish(caller)
        assert called == [7] and not isinstance(added[0], BaseException)
        assert value_at(jit, "x") == 7


def test_a_constructor_may_call_its_own_lazy_function_another_thread_called_first():
    """The other thread's compilation of f needs the constructor's set (f
    reads its global): it waits for the constructor before taking f's lock,
    so the constructor can compile f itself."""
    with open_jit(lazy=True) as jit:
        started = threading.Event()
        compiling = hold_compiles_of(jit, "caller")

        def wait_a_little() -> None:
            started.set()
            compiling.wait(2 * PAUSE)       # (set only if the other thread got f's lock)
        jit.define("wait_a_little", wait_a_little, "void()")
        adder, added = start(jit.add_ir, """
@g = global i64 6
declare void @wait_a_little()
define i64 @f() {
  %v = load i64, ptr @g
  ret i64 %v
}
define internal void @init() {
  call void @wait_a_little()
  %v = call i64 @f()
  %w = add i64 %v, 1
  store i64 %w, ptr @g
  ret void
}
""" + ctors("init"), name="adder")
        assert started.wait(DEADLINE)
        caller, called = start(lambda: jit.lookup("f", "int64_t()")(), name="caller")
        finish(caller)
        finish(adder)
        assert not isinstance(added[0], BaseException) and called == [7]


def test_other_threads_use_the_jit_while_a_constructor_runs():
    """Lookups of other sets, and adding sets, do not wait for a constructor."""
    with open_jit() as jit:
        jit.add_ir(SLOW)
        constructing, looked_up = threading.Event(), threading.Event()

        def wait_for_the_main_thread() -> int:
            constructing.set()
            return 1 if looked_up.wait(DEADLINE) else 0
        jit.define("wait_for_the_main_thread", wait_for_the_main_thread, "int64_t()")
        adder, _ = start(jit.add_ir, x_from("wait_for_the_main_thread"))
        assert constructing.wait(DEADLINE)
        assert jit.lookup("slow", "int64_t()")() == 7
        jit.add_ir("define i64 @other() {\n  ret i64 3\n}")
        assert jit.lookup("other", "int64_t()")() == 3
        looked_up.set()
        finish(adder)
        assert value_at(jit, "x") == 1


# -- others wait; the constructors' own thread does not -------------------------------
@pytest.mark.parametrize("lazy", [False, True])
def test_a_lookup_waits_for_the_sets_constructors(lazy):
    """Also a lazily compiled function of the set, whose body binds to its globals."""
    started = threading.Event()
    with open_jit(lazy=lazy) as jit:
        jit.define("slow_source", slow_source(5, started), "int64_t()")
        adder, _ = start(jit.add_ir, x_from("slow_source"))
        assert started.wait(DEADLINE)
        assert jit.lookup("get", "int64_t()")() == 5     # not 0: the constructor finished first
        assert value_at(jit, "x") == 5
        finish(adder)


def test_a_set_binding_to_one_being_initialised_waits():
    started = threading.Event()
    with open_jit() as jit:
        jit.define("slow_source", slow_source(5, started), "int64_t()")
        adder, _ = start(jit.add_ir, x_from("slow_source"))
        assert started.wait(DEADLINE)
        second, _ = start(jit.add_ir, Y_FROM_X)
        finish(second)
        finish(adder)
        assert jit.lookup("gety", "int64_t()")() == 5


@pytest.mark.parametrize("lazy", [False, True])
def test_constructors_may_use_their_own_set(lazy):
    """On the constructors' thread nothing waits: they may look up and call
    the set's functions (lazily: compile them, binding to the set's globals)."""
    seen: list[int] = []
    with open_jit(lazy=lazy) as jit:
        def probe() -> int:
            seen.append(jit.lookup("get", "int64_t()")())
            return 9
        jit.define("probe", probe, "int64_t()")
        adder, outcome = start(jit.add_ir, x_from("probe"))
        finish(adder)
        assert not isinstance(outcome[0], BaseException)
        assert seen == [0] and jit.lookup("get", "int64_t()")() == 9


def test_constructors_of_a_set_emitted_while_linking_run_before_addresses_are_given():
    """lazy="module": looking up gety emits its set, whose binding emits x's set
    (a nested link); both sets' constructors run, in order, before gety returns."""
    with open_jit(lazy="module") as jit:
        jit.define("five", lambda: 5, "int64_t()")
        jit.add_ir(x_from("five"))
        jit.add_ir(Y_FROM_X)
        assert jit.lookup("gety", "int64_t()")() == 5


def test_lazy_module_linking_waits_for_another_thread_emitting_a_set_without_the_lock():
    """Thread B emits x's set (it will need the linker's lock to add it); A
    links gety's set, whose x is in that set: A must not wait for B while
    holding the linker's lock."""
    with open_jit(lazy="module") as jit:
        jit.add_ir("@x = global i64 5\ndefine i64 @getx() {\n  %v = load i64, ptr @x\n"
                   "  ret i64 %v\n}\n")
        jit.add_ir("@x = external global i64\ndefine i64 @gety() {\n  %v = load i64, ptr @x\n"
                   "  ret i64 %v\n}\n")
        emitting = threading.Event()

        def on_emit(module: Any, names: list[str]) -> None:
            if threading.current_thread().name == "B" and "getx" in names:
                emitting.set()
                time.sleep(PAUSE)        # compiling x's set, say
        jit.deferred.on_emit = on_emit     # type: ignore[union-attr]
        b, got_x = start(jit.lookup, "getx", "int64_t()", name="B")
        assert emitting.wait(DEADLINE)
        a, got_y = start(jit.lookup, "gety", "int64_t()", name="A")
        finish(a)
        finish(b)
        assert got_x[0]() == got_y[0]() == 5


def test_sets_without_constructors_are_finalized_as_they_link():
    """The common path (every lazily compiled body) has no transition at all."""
    with open_jit(lazy=True) as jit:
        jit.add_ir(SLOW)
        assert jit.lookup("slow", "int64_t()")() == 7
        sets = list(jit.linker._sets.values())
        assert sets and all(s.state is State.FINALIZED and s.transition is None for s in sets)
        assert jit.linker._due == []


def uses_other(me: str, other: str) -> str:
    """A set whose constructor calls sync_<me>() (which uses the other set)."""
    return f"""
@g{me} = global i64 {ord(me)}
declare void @sync_{me}()
define i64 @{me}_f() {{
  %v = load i64, ptr @g{me}
  ret i64 %v
}}
define internal void @init() {{
  call void @sync_{me}()
  ret void
}}
""" + ctors("init")


@pytest.mark.parametrize("lazy", [False, True])
def test_constructors_on_two_threads_may_need_each_others_set(lazy):
    """Each waits for the other's constructors: one of them goes on instead."""
    with open_jit(lazy=lazy) as jit:
        arrived = {"a": threading.Event(), "b": threading.Event()}
        got: dict[str, int] = {}

        def sync(me: str, other: str) -> Callable[[], None]:
            def call_the_other() -> None:
                arrived[me].set()
                arrived[other].wait(DEADLINE)         # both constructors are running now
                got[me] = jit.lookup(f"{other}_f", "int64_t()")()
            return call_the_other
        jit.define("sync_a", sync("a", "b"), "void()")
        jit.define("sync_b", sync("b", "a"), "void()")
        adders = [start(jit.add_ir, uses_other(me, other))[0] for me, other in ("ab", "ba")]
        for adder in adders:
            finish(adder)
        assert got == {"a": ord("b"), "b": ord("a")}
        assert all(s.state is State.FINALIZED for s in jit.linker._sets.values())


# -- removal --------------------------------------------------------------------------
REMOVABLE = """
declare void @slow_start()
declare void @stop()
define internal void @init() {
  call void @slow_start()
  ret void
}
define internal void @fini() {
  call void @stop()
  ret void
}
define i64 @f() {
  ret i64 42
}
""" + ctors("init") + dtors("fini")


def add_pending(jit: orcjit.JIT, source: str) -> orcjit.Handle:
    """Add a set without linking it: its handle is known before its constructors run."""
    return jit.optimizer.add_module_set([parse_ir(source)])


def test_sets_without_destructors_are_removed_without_a_transition(monkeypatch):
    """The common path again: a lazy set removes a set per compiled body."""
    made: list[Any] = []

    def counted(*args: Any) -> Any:
        made.append(args)
        return Transition(*args)
    monkeypatch.setattr(object_linking, "Transition", counted)
    with open_jit(lazy=True) as jit:
        handle = jit.add_ir(SLOW + "\ndefine i64 @other() {\n  ret i64 3\n}")
        assert jit.lookup("slow", "int64_t()")() == 7 and jit.lookup("other", "int64_t()")() == 3
        plain = jit.linker.add_object_set([create_target_machine().emit_object(parse_ir(SLOW))])
        jit.linker.emit(plain)
        jit.remove(handle)
        jit.linker.remove_object_set(plain)
        assert not jit.linker.handles() and made == []


def test_removal_waits_for_the_sets_constructors():
    log: list[str] = []
    started = threading.Event()
    with open_jit() as jit:
        jit.define("slow_start", slow_source(0, started, log), "void()")
        jit.define("stop", lambda: log.append("dtor"), "void()")
        handle = add_pending(jit, REMOVABLE)
        emitter, _ = start(jit.linker.emit, handle)
        assert started.wait(DEADLINE)
        remover, removed = start(jit.remove, handle)
        finish(remover)
        log.append("removed")
        finish(emitter)
        assert removed == [None]
        assert log == ["ctor start", "ctor end", "dtor", "removed"]
        assert jit.address("f") == 0


def test_a_constructor_cannot_remove_its_own_set():
    errors: list[JITError] = []
    with open_jit() as jit:
        handle: list[orcjit.Handle] = []

        def remove_self() -> None:
            try:
                jit.remove(handle[0])
            except JITError as error:
                errors.append(error)
        jit.define("slow_start", remove_self, "void()")
        jit.define("stop", lambda: None, "void()")
        handle.append(add_pending(jit, REMOVABLE))
        emitter, outcome = start(jit.linker.emit, handle[0])
        finish(emitter)
        assert outcome == [None]
        assert len(errors) == 1 and "initialised by this thread" in str(errors[0])
        assert jit.lookup("f", "int64_t()")() == 42
        jit.remove(handle[0])
        assert jit.address("f") == 0


def test_other_threads_wait_for_a_removal_then_find_the_set_gone():
    """Destructors run without the lock, but nobody else binds to the set meanwhile."""
    stopping = threading.Event()
    with open_jit() as jit:
        def slow_stop() -> None:
            stopping.set()
            time.sleep(PAUSE)
        jit.define("slow_start", lambda: None, "void()")
        jit.define("stop", slow_stop, "void()")
        handle = jit.add_ir(REMOVABLE)
        remover, _ = start(jit.remove, handle)
        assert stopping.wait(DEADLINE)
        assert jit.address("f") == 0
        with pytest.raises(UnresolvedSymbolsError):
            jit.add_ir("declare i64 @f()\ndefine i64 @g() {\n  %v = call i64 @f()\n  ret i64 %v\n}")
        finish(remover)
        assert jit.address("f") == 0 and jit.address("g") == 0


def test_a_second_removal_waits_for_the_first_then_finds_the_set_gone():
    stopping = threading.Event()
    destroyed: list[str] = []
    with open_jit() as jit:
        def slow_stop() -> None:
            stopping.set()
            time.sleep(PAUSE)
            destroyed.append("dtor")
        jit.define("slow_start", lambda: None, "void()")
        jit.define("stop", slow_stop, "void()")
        handle = jit.add_ir(REMOVABLE)
        first, removed = start(jit.remove, handle)
        assert stopping.wait(DEADLINE)
        with pytest.raises(JITError, match="unknown or already removed"):
            jit.remove(handle)
        assert destroyed == ["dtor"]        # it returned only once the first was done
        finish(first)
        assert removed == [None]


def test_a_destructor_may_call_a_function_another_thread_is_compiling():
    with open_jit(lazy=True) as jit:
        jit.add_ir(SLOW)
        handle = jit.add_ir("declare i64 @slow()\n@r = global i64 0\n"
                            "define internal void @fini() {\n  %v = call i64 @slow()\n"
                            "  store i64 %v, ptr @r\n  ret void\n}\n" + dtors("fini"))
        compiling = hold_compiles_of(jit, "first caller")
        caller, called = start(jit.lookup("slow", "int64_t()"), name="first caller")
        assert compiling.wait(DEADLINE)
        remover, removed = start(jit.remove, handle, name="remover")
        finish(remover)
        finish(caller)
        assert removed == [None] and called == [7]


def close_while_constructing(jit: orcjit.JIT, source: str) -> tuple[list, list[str]]:
    """Add ``source`` (its constructor calls slow_start, its destructor stop)
    on one thread and close ``jit`` on another while the constructor runs;
    what close returned, and the log of constructor and destructor."""
    log: list[str] = []
    started = threading.Event()
    jit.define("slow_start", slow_source(0, started, log), "void()")
    jit.define("stop", lambda: log.append("dtor"), "void()")
    adder, _ = start(jit.add_ir, source)
    assert started.wait(DEADLINE)
    closer, closed = start(jit.close)
    finish(closer)
    finish(adder)
    return closed, log


def test_close_waits_for_constructors_running_on_another_thread():
    closed, log = close_while_constructing(orcjit.JIT(), REMOVABLE)
    assert closed == [None]
    assert log == ["ctor start", "ctor end", "dtor"]


# a constructor that registers a destructor with __cxa_atexit, then takes its time
REGISTERS_AND_WAITS = """
@__dso_handle = external hidden global i8
@obj = global i64 0
declare i32 @__cxa_atexit(ptr, ptr, ptr)
declare void @slow_start()
declare void @stop()
define internal void @destroy(ptr %p) {
  call void @stop()
  ret void
}
define internal void @init() {
  %r = call i32 @__cxa_atexit(ptr @destroy, ptr @obj, ptr @__dso_handle)
  call void @slow_start()
  ret void
}
define i64 @get() {
  %v = load i64, ptr @obj
  ret i64 %v
}
""" + ctors("init")


def test_lazy_close_runs_atexit_destructors_after_the_constructor():
    """The lazy set's handle is listed before its globals' constructors are
    done; removing it (close) waits for them before running destructors."""
    closed, log = close_while_constructing(orcjit.JIT(lazy=True), REGISTERS_AND_WAITS)
    assert closed == [None]
    assert log == ["ctor start", "ctor end", "dtor"]


# -- a constructor that fails ---------------------------------------------------------
class Interrupted(Exception):
    """Stands for anything that is not a JITError (an interrupt, say)."""


# a's constructor runs first (add order); a's function needs b
A_NEEDS_B = """
@a = global i64 0
declare i64 @b()
declare i64 @one()
define internal void @init() {
  %o = call i64 @one()
  store i64 %o, ptr @a
  ret void
}
define i64 @usea() {
  %v = call i64 @b()
  ret i64 %v
}
""" + ctors("init")

B = """
@bv = global i64 0
declare i64 @two()
define internal void @init() {
  %o = call i64 @two()
  store i64 %o, ptr @bv
  ret void
}
define i64 @b() {
  %v = load i64, ptr @bv
  ret i64 %v
}
""" + ctors("init")


@pytest.mark.parametrize("error", [Interrupted("stop"), ExecutorError("call failed")])
def test_a_failing_constructor_fails_its_sets_and_wakes_every_waiter(error):
    """The thread running the constructors gets the error; the sets linked
    with it end FAILED; a thread waiting for them, and later lookups, get a
    JITError (the error itself if it is one) -- nothing hangs."""
    with open_jit() as jit:
        jit.define("one", lambda: 1, "int64_t()")
        jit.define("two", lambda: 2, "int64_t()")
        ha, hb = add_pending(jit, A_NEEDS_B), add_pending(jit, B)
        running, go_on = threading.Event(), threading.Event()

        def failing(initializers: list[int]) -> None:
            running.set()
            go_on.wait(DEADLINE)
            raise error
        jit.linker.platform.run_initializers = failing
        emitter, emitted = start(jit.linker.emit, ha)
        assert running.wait(DEADLINE)
        waiter, waited = start(jit.address, "b")
        time.sleep(0.05)
        go_on.set()
        finish(emitter)
        finish(waiter)
        assert emitted == [error]
        for outcome in (waited[0], pytest.raises(JITError, jit.address, "b").value,
                        pytest.raises(JITError, jit.linker.emit, ha).value):
            assert isinstance(outcome, JITError)
            assert outcome is error or repr(error) in str(outcome)
        assert jit.linker._sets[ha].state is jit.linker._sets[hb].state is State.FAILED
        jit.remove(ha)
        jit.remove(hb)
        assert jit.address("b") == 0


def test_a_failed_add_leaves_the_jit_as_it_was():
    destroyed: list[str] = []
    with open_jit() as jit:
        jit.define("slow_start", lambda: None, "void()")
        jit.define("stop", lambda: destroyed.append("dtor"), "void()")
        real = jit.linker.platform.run_initializers

        def failing(initializers: list[int]) -> None:
            real(initializers)
            raise Interrupted("after the constructor")
        jit.linker.platform.run_initializers = failing
        with pytest.raises(Interrupted):
            jit.add_ir(REMOVABLE)
        assert destroyed == ["dtor"]         # it was constructed: its destructors ran
        assert jit.address("f") == 0 and not jit.linker.handles()
        jit.linker.platform.run_initializers = real
        jit.add_ir(REMOVABLE)
        assert jit.lookup("f", "int64_t()")() == 42


HELPER = "define i64 @helper() {\n  ret i64 3\n}\n"
# constructed after HELPER's set (added later), binds to it
USES_HELPER = """
declare i64 @helper()
@v = global i64 0
define internal void @init() {
  %h = call i64 @helper()
  store i64 %h, ptr @v
  ret void
}
""" + ctors("init")


@pytest.mark.parametrize("where", ["pending set", "archive member"])
def test_a_failed_add_leaves_sets_it_pulled_in_usable(where):
    """A set linked with the failing one but not binding to it is published."""
    with open_jit() as jit:
        if where == "pending set":
            add_pending(jit, HELPER)
        else:
            jit.add_archive(ar({"helper.o": create_target_machine().emit_object(parse_ir(HELPER))}))
        real = jit.linker.platform.run_initializers

        def failing(initializers: list[int]) -> None:
            raise Interrupted("constructor failed")
        jit.linker.platform.run_initializers = failing
        with pytest.raises(Interrupted):
            jit.add_ir(USES_HELPER)
        jit.linker.platform.run_initializers = real
        assert [s.state for s in jit.linker._sets.values()] == [State.FINALIZED]
        assert jit.lookup("helper", "int64_t()")() == 3
        jit.add_ir(USES_HELPER)
        assert value_at(jit, "v") == 3


def constructed(name: str, uses: str = "") -> str:
    """A set whose constructor stores tick() in @``name`` (plus @``uses``, if given)."""
    extern, load, value = "", "", "%t"
    if uses:
        extern = f"@{uses} = external global i64\n"
        load, value = f"  %u = load i64, ptr @{uses}\n  %s = add i64 %t, %u\n", "%s"
    return (f"{extern}@{name} = global i64 0\ndeclare i64 @tick()\n"
            f"define internal void @init() {{\n  %t = call i64 @tick()\n{load}"
            f"  store i64 {value}, ptr @{name}\n  ret void\n}}\n" + ctors("init"))


def test_a_failing_constructor_fails_only_the_sets_that_bind_to_its_set():
    """In add order: e binds to x, x's constructor fails, y binds to x, z binds
    to nothing, the root binds to e, y and z. x, and what reaches x, fail; z
    is constructed and published."""
    with open_jit() as jit:
        jit.define("tick", lambda: 4, "int64_t()")
        he, hx, hy, hz = (add_pending(jit, constructed("e", uses="x")),
                          add_pending(jit, constructed("x")),
                          add_pending(jit, constructed("y", uses="x")),
                          add_pending(jit, constructed("z")))
        root = add_pending(jit, "@e = external global i64\n@y = external global i64\n"
                                "@z = external global i64\ndefine i64 @sum() {\n"
                                "  %a = load i64, ptr @y\n  %b = load i64, ptr @z\n"
                                "  %c = load i64, ptr @e\n  %s = add i64 %a, %b\n"
                                "  %t = add i64 %s, %c\n  ret i64 %t\n}\n")
        real = jit.linker.platform.run_initializers
        calls: list[list[int]] = []

        def second_fails(initializers: list[int]) -> None:      # e's runs, then x's fails
            calls.append(initializers)
            if len(calls) == 2:
                raise Interrupted("x's constructor")
            real(initializers)
        jit.linker.platform.run_initializers = second_fails
        with pytest.raises(Interrupted):
            jit.linker.emit(root)
        assert len(calls) == 3                                  # e, x, z: not y's
        states = [jit.linker._sets[h].state for h in (he, hx, hy, hz, root)]
        assert states == [State.FAILED, State.FAILED, State.FAILED, State.FINALIZED, State.FAILED]
        assert value_at(jit, "z") == 4
        with pytest.raises(JITError, match="binds to failed in its static constructors.*x's"):
            jit.address("sum")
        jit.linker.platform.run_initializers = real


def test_an_archive_member_that_failed_is_linked_afresh_when_next_needed():
    """The failed add removes its set and the member's; the member's next
    need links it again (its constructor runs again, and now works)."""
    with open_jit() as jit:
        jit.define("tick", lambda: 4, "int64_t()")
        member = create_target_machine().emit_object(parse_ir(constructed("m")))
        jit.add_archive(ar({"m.o": member}))
        real = jit.linker.platform.run_initializers
        calls: list[list[int]] = []

        def second_fails(initializers: list[int]) -> None:
            calls.append(initializers)      # (add order: s's, then the member's)
            if len(calls) == 2:
                raise Interrupted("m's constructor")
            real(initializers)
        jit.linker.platform.run_initializers = second_fails
        with pytest.raises(Interrupted):
            jit.add_ir(constructed("s", uses="m"))
        assert len(calls) == 2 and not jit.linker.handles()
        jit.add_ir(constructed("s", uses="m"))
        assert len(calls) == 4 and value_at(jit, "m") == 4


# -- an interrupt between the layer's steps ---------------------------------------------
class Interrupt(BaseException):
    """Stands for a KeyboardInterrupt arriving between two of the layer's steps."""


class InterruptOnAppend(list):
    """A _due list: the interrupt comes as a closure's constructors are queued."""

    def append(self, item: Any) -> None:
        raise Interrupt


class InterruptOnSecondLook(list):
    """A _due list: the interrupt comes as _run_due has taken this thread's
    closures, before it drops them from the list."""

    looks = 0

    def __iter__(self) -> Iterator[Any]:
        self.looks += 1
        if self.looks == 2:
            raise Interrupt
        return super().__iter__()


@pytest.mark.parametrize("window", ["queueing constructors", "taking them to run",
                                    "after removal began"])
def test_an_interrupt_between_steps_leaves_no_transition_behind(window, monkeypatch):
    """The add (or removal) fails, the set is gone, nobody waits for it."""
    with open_jit() as jit:
        jit.define("slow_start", lambda: None, "void()")
        jit.define("stop", lambda: None, "void()")
        if window == "after removal began":
            handle = jit.add_ir(REMOVABLE)
            begin = ObjectLinkingLayer._begin_removal

            def interrupted(layer: ObjectLinkingLayer, handle: orcjit.Handle) -> Any:
                begin(layer, handle)
                raise Interrupt
            monkeypatch.setattr(ObjectLinkingLayer, "_begin_removal", interrupted)
            with pytest.raises(Interrupt):
                jit.remove(handle)
        else:
            due = InterruptOnAppend() if window == "queueing constructors" else InterruptOnSecondLook()
            monkeypatch.setattr(jit.linker, "_due", due)
            with pytest.raises(Interrupt):
                jit.add_ir(REMOVABLE)
        monkeypatch.undo()
        assert not jit.linker.handles()
        looker, found = start(jit.address, "f")
        finish(looker)
        assert found == [0]
        jit.add_ir(REMOVABLE)
        assert jit.lookup("f", "int64_t()")() == 42


# -- weak definitions and the GOT slots bound to them ----------------------------------
WEAK_F = "define weak i64 @f() {\n  ret i64 1\n}\n"
CALLS_F = "declare i64 @f()\ndefine i64 @callf() {\n  %v = call i64 @f()\n  ret i64 %v\n}\n"
# a set whose constructor calls hold() (the test decides how long that takes)
HELD = """
declare void @hold()
define i64 @seven() {
  ret i64 7
}
define internal void @init() {
  call void @hold()
  ret void
}
""" + ctors("init")
STRONG_F = "declare i64 @seven()\ndefine i64 @f() {\n  %v = call i64 @seven()\n  ret i64 %v\n}\n"


def test_removing_a_weak_definition_never_leaves_its_slots_at_0():
    """The strong f left needs a set whose constructor another thread runs:
    the removal waits for it, links f, and moves the slots there."""
    lines = run_alone(f"""
        import threading, time
        import orcjit
        from orcjit.frontends.ir import parse_ir
        jit = orcjit.JIT()
        holding = threading.Event()
        def hold():
            holding.set()
            time.sleep({PAUSE})
        jit.define("hold", hold, "void()")
        weak = jit.add_ir({WEAK_F!r})
        jit.add_ir({CALLS_F!r})
        callf = jit.lookup("callf", "int64_t()")
        print(callf())
        adder = threading.Thread(target=jit.add_ir, args=({HELD!r},))
        adder.start()
        assert holding.wait({DEADLINE})
        jit.optimizer.add_module_set([parse_ir({STRONG_F!r})])   # pending: needs HELD's set
        jit.remove(weak)
        print(callf())
        adder.join({DEADLINE})
        jit.close()
    """)
    assert lines == ["1", "7"]


# f returns what its set's constructor stored (5), or 0 before that
STRONG_F_CONSTRUCTED = """
@sx = global i64 0
declare void @hold()
define i64 @f() {
  %v = load i64, ptr @sx
  ret i64 %v
}
define internal void @init() {
  call void @hold()
  store i64 5, ptr @sx
  ret void
}
""" + ctors("init")


def test_a_strong_definition_takes_over_weak_slots_once_its_constructors_ran():
    """Until then calls through the slots still reach the weak f."""
    with open_jit() as jit:
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            holding.set()
            release.wait(DEADLINE)
        jit.define("hold", hold, "void()")
        jit.add_ir(WEAK_F)
        jit.add_ir(CALLS_F)
        callf = jit.lookup("callf", "int64_t()")
        assert callf() == 1
        adder, added = start(jit.add_ir, STRONG_F_CONSTRUCTED)
        assert holding.wait(DEADLINE)
        assert callf() == 1
        release.set()
        finish(adder)
        assert not isinstance(added[0], BaseException)
        assert callf() == 5


def test_a_removal_waiting_for_a_constructor_that_waits_for_it_goes_on():
    """X's constructor looks up a function of W while another thread removes
    W; that removal must hand W's weak f slots to X's f, whose constructor
    is running: each waits for the other, so the removal goes on as X's guest."""
    with open_jit() as jit:
        x_started, dtor_started = threading.Event(), threading.Event()
        looked_up: list[int] = []

        def x_ctor() -> None:
            x_started.set()
            dtor_started.wait(DEADLINE)
            looked_up.append(jit.address("wfunc"))      # W is being removed: waits

        def w_dtor() -> None:
            dtor_started.set()
            time.sleep(PAUSE)       # the constructor starts waiting for this removal
        jit.define("x_ctor", x_ctor, "void()")
        jit.define("w_dtor", w_dtor, "void()")
        w = jit.add_ir(WEAK_F + "define i64 @wfunc() {\n  ret i64 0\n}\n"
                       "declare void @w_dtor()\ndefine internal void @fini() {\n"
                       "  call void @w_dtor()\n  ret void\n}\n" + dtors("fini"))
        jit.add_ir(CALLS_F)
        callf = jit.lookup("callf", "int64_t()")
        adder, added = start(jit.add_ir, "define i64 @f() {\n  ret i64 2\n}\n"
                             "declare void @x_ctor()\ndefine internal void @init() {\n"
                             "  call void @x_ctor()\n  ret void\n}\n" + ctors("init"))
        assert x_started.wait(DEADLINE)
        remover, removed = start(jit.remove, w)
        finish(remover)
        finish(adder)
        assert removed == [None] and not isinstance(added[0], BaseException)
        assert looked_up == [0] and callf() == 2


# -- plain atexit ------------------------------------------------------------------------
REGISTERS_AT_EXIT = """
declare i32 @atexit(ptr)
declare void @note()
define internal void @bye() {
  call void @note()
  ret void
}
define internal void @init() {
  %r = call i32 @atexit(ptr @bye)
  ret void
}
""" + ctors("init")


@pytest.mark.parametrize("lazy", [False, True])
def test_plain_atexit_handlers_run_before_their_sets_are_freed(lazy):
    lines = run_alone(f"""
        import orcjit
        jit = orcjit.JIT(lazy={lazy})
        jit.define("note", lambda: print("handler", flush=True), "void()")
        jit.add_ir({REGISTERS_AT_EXIT!r})
        jit.close()
        print("closed")
    """)
    assert lines == ["handler", "closed"]

