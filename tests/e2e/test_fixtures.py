"""Real C and C++ modules (clang-14 IR, see tests/fixtures/README.md) run end to end."""

from __future__ import annotations

import threading

import pytest

import orcjit


def test_cxx_exceptions_cross_jitted_frames(any_jit, fixture_ir):
    jit = any_jit
    jit.add_ir(fixture_ir("cxx_exceptions"))
    throw_and_catch = jit.lookup("throw_and_catch", "int(int)")
    assert [throw_and_catch(n) for n in (4, 2, 3, 1, 0, -5)] == [1004, 1002, 2003, 2001, 0, -10]
    assert jit.lookup("catch_rethrow", "int(int)")(5) == 60
    assert jit.lookup("unwind_through_dtors", "int(int)")(10) == 10


def test_cxx_exceptions_from_bitcode_after_reload(any_jit, fixture_ir):
    jit = any_jit
    """eh-frames are deregistered on removal and registered again for the new copy."""
    from tests.conftest import FIXTURES
    for _ in range(3):
        handle = jit.add_ir((FIXTURES / "cxx_exceptions.bc").read_bytes())
        assert jit.lookup("throw_and_catch", "int(int)")(4) == 1004
        jit.remove(handle)


def test_constructor_and_destructor_order(any_jit, fixture_ir):
    jit = any_jit
    log = []
    jit.define("record", lambda c: log.append(c.decode()), "void(char)")
    handle = jit.add_ir(fixture_ir("ctors_dtors"))
    assert "".join(log) == "ABC"
    assert jit.lookup("get_order_log", "char*()")() == b"ABC"
    jit.remove(handle)
    assert "".join(log) == "ABCcba"


def test_cxx_globals_and_local_statics_destroyed_at_removal(any_jit, fixture_ir):
    jit = any_jit
    log = []
    jit.define("record", lambda c: log.append(c.decode()), "void(char)")
    handle = jit.add_ir(fixture_ir("ctors_dtors_cxx"))
    assert "".join(log) == "XY"
    touch_local = jit.lookup("touch_local", "int()")
    assert [touch_local(), touch_local()] == [1, 2]
    jit.remove(handle)
    assert "".join(log) == "XYLlyx"


def test_destructors_run_when_the_jit_closes(fixture_ir):
    log = []
    with orcjit.JIT() as jit:
        jit.define("record", lambda c: log.append(c.decode()), "void(char)")
        jit.add_ir(fixture_ir("ctors_dtors"))
        jit.add_ir(fixture_ir("ctors_dtors_cxx"))
    assert "".join(log) == "ABCXYyxcba"     # latest set first


@pytest.mark.parametrize("order, expected", [
    (["weak_a"], 1),
    (["weak_a", "weak_b"], 2),
    (["weak_b", "weak_a"], 2),
    (["weak_a", "weak_c"], 1),
    (["weak_c", "weak_a"], 3),
    (["weak_a", "weak_c", "weak_b"], 2),
])
def test_weak_definitions(any_jit, fixture_ir, order, expected):
    jit = any_jit
    for name in order:
        jit.add_ir(fixture_ir(name))
    assert jit.lookup("which", "int()")() == expected
    caller = f"call_which_{order[0][-1]}"
    assert jit.lookup(caller, "int()")() == expected


def test_removing_the_strong_definition_falls_back_to_the_weak_one(any_jit, fixture_ir):
    jit = any_jit
    jit.add_ir(fixture_ir("weak_a"))
    strong = jit.add_ir(fixture_ir("weak_b"))
    call_which_a = jit.lookup("call_which_a", "int()")
    assert call_which_a() == 2
    jit.remove(strong)
    assert call_which_a() == 1


def test_comdat_groups_are_shared_between_sets(any_jit, fixture_ir):
    jit = any_jit
    jit.add_ir(fixture_ir("comdat_a"))
    jit.add_ir(fixture_ir("comdat_b"))
    a_bump = jit.lookup("comdat_a_bump", "int()")
    b_bump = jit.lookup("comdat_b_bump", "int()")
    assert [a_bump(), b_bump(), a_bump(), b_bump()] == [1, 2, 3, 4]
    assert jit.lookup("comdat_a_twice", "int(int)")(21) == 42
    assert jit.lookup("comdat_b_twice", "int(int)")(-4) == -8


def test_common_symbols_are_merged(any_jit, fixture_ir):
    jit = any_jit
    jit.add_ir(fixture_ir("common_a"))
    jit.add_ir(fixture_ir("common_b"))
    jit.lookup("common_inc_a", "void()")()
    assert jit.lookup("common_get_b", "int()")() == 1
    jit.lookup("common_inc_b", "void()")()
    assert jit.lookup("common_get_a", "int()")() == 11


def test_libc_and_libm_calls(any_jit, fixture_ir, capfd):
    jit = any_jit
    jit.add_ir(fixture_ir("libc_calls"))
    assert jit.lookup("print_hello", "int()")() == 17
    assert "hello from JIT 7" in capfd.readouterr().out
    assert jit.lookup("format_values", "char*(int)")(42) == b"v=42 s=abc f=2.50"
    assert jit.lookup("malloc_sum", "int(int)")(10) == 285
    assert jit.lookup("sort_demo", "int()")() == 13579
    assert jit.lookup("varargs_demo", "int()")() == 110
    assert jit.lookup("libm_combo", "double(double, double)")(0.5, 2.0) == 1.8936391009772982


def test_function_pointer_tables_and_relative_lookup_tables(any_jit, fixture_ir):
    jit = any_jit
    jit.add_ir(fixture_ir("static_tables"))
    apply_op = jit.lookup("apply_op", "int(int, int, int)")
    assert [apply_op(i, 7, 5) for i in range(5)] == [12, 2, 35, 7, -1]
    op_name = jit.lookup("op_name", "char*(int)")
    assert [op_name(i) for i in range(5)] == [b"add", b"sub", b"mul", b"max", b"?"]
    next_id = jit.lookup("next_id", "int()")
    assert [next_id(), next_id()] == [100, 101]


def test_thread_local_storage_is_refused_clearly(any_jit, fixture_ir):
    jit = any_jit
    with pytest.raises(orcjit.UnsupportedError, match="thread-local storage"):
        jit.add_ir(fixture_ir("tls"))


def test_python_callback_called_from_another_thread(any_jit):
    jit = any_jit
    """ctypes callbacks take the GIL, also when JIT'd code runs on a worker thread."""
    seen = []
    jit.define("py_note", lambda x: seen.append(x) or x + 1, "int(int)")
    jit.add_ir("""
        declare i32 @py_note(i32)
        define i32 @twice_noted(i32 %x) {
          %a = call i32 @py_note(i32 %x)
          %b = call i32 @py_note(i32 %a)
          ret i32 %b
        }""")
    f = jit.lookup("twice_noted", "int(int)")
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(f(i * 10))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [2, 12, 22, 32]
    assert len(seen) == 8
