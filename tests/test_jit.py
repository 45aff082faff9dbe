"""The JIT facade: input forms, lookups, definitions, errors that leave the JIT intact."""

from __future__ import annotations

import ctypes
import ctypes.util

import llvmlite.binding as llvm
import llvmlite.ir as ir
import pytest

import orcjit
from orcjit.executor.in_process import InProcessExecutor
from orcjit.frontends.ir import dispose, parse_ir, prepare_for_target
from orcjit.symbols import ProcessResolver

ADD = "define i32 @add(i32 %a, i32 %b) {\n  %s = add i32 %a, %b\n  ret i32 %s\n}\n"


def test_add_and_call(jit):
    jit.add_ir(ADD)
    assert jit.lookup("add", "int(int, int)")(2, 3) == 5


def test_every_input_form(jit):
    module = llvm.parse_assembly(ADD.replace("@add", "@add_bitcode"))
    jit.add_ir(ADD.encode())
    jit.add_ir(module.as_bitcode())
    jit.add_ir(llvm.parse_assembly(ADD.replace("@add", "@add_moduleref")))
    m = ir.Module("made_with_llvmlite_ir")
    fn = ir.Function(m, ir.FunctionType(ir.IntType(32), [ir.IntType(32)]), "negate")
    builder = ir.IRBuilder(fn.append_basic_block())
    builder.ret(builder.neg(fn.args[0]))
    jit.add_ir(m)
    assert jit.lookup("add", "int(int,int)")(1, 2) == 3
    assert jit.lookup("add_bitcode", "int(int,int)")(3, 4) == 7
    assert jit.lookup("add_moduleref", "int(int,int)")(5, 6) == 11
    assert jit.lookup("negate", "int(int)")(9) == -9


def test_ctypes_prototype_as_signature(jit):
    jit.add_ir(ADD)
    add = jit.lookup("add", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int))
    assert add(40, 2) == 42


@pytest.mark.parametrize("source, message", [
    ("define i32 @f( {", "expected type"),
    (b"BC\xc0\xde\x00\x01garbage", "invalid bitcode"),
    ("define i32 @f() {\n  ret i64 0\n}", "value doesn't match function result type"),
    ("define i32 @f() {\nentry:\n  br label %entry\n  ret i32 0\n}", "does not verify|expected"),
    (b"\xff\xfe\x00", "neither LLVM bitcode nor UTF-8"),
    (3.5, "cannot read IR from float"),
])
def test_invalid_ir_carries_llvms_message(jit, capfd, source, message):
    with pytest.raises(orcjit.InvalidIRError, match=message):
        jit.add_ir(source)
    assert capfd.readouterr().err == ""


def test_unresolved_symbols_are_all_named_and_nothing_is_kept(jit):
    jit.add_ir(ADD)
    with pytest.raises(orcjit.UnresolvedSymbolsError) as info:
        jit.add_ir("""
            declare i32 @missing_one()
            declare i32 @missing_two()
            define i32 @uses_missing() {
              %a = call i32 @missing_one()
              %b = call i32 @missing_two()
              %s = add i32 %a, %b
              ret i32 %s
            }""")
    assert info.value.names == ["missing_one", "missing_two"]
    assert "[ missing_one, missing_two ]" in str(info.value)
    assert jit.address("uses_missing") == 0
    assert jit.lookup("add", "int(int,int)")(1, 1) == 2


def test_duplicate_definition_leaves_the_first_in_place(jit):
    jit.add_ir(ADD)
    with pytest.raises(orcjit.DuplicateDefinitionError) as info:
        jit.add_ir(ADD.replace("add i32", "sub i32"))
    assert info.value.names == ["add"]
    assert jit.lookup("add", "int(int,int)")(5, 3) == 8


def test_failed_add_can_be_retried_once_the_symbol_exists(jit):
    user = "declare i32 @helper(i32)\ndefine i32 @user(i32 %x) {\n" \
           "  %r = call i32 @helper(i32 %x)\n  ret i32 %r\n}\n"
    with pytest.raises(orcjit.UnresolvedSymbolsError):
        jit.add_ir(user)
    jit.add_ir("define i32 @helper(i32 %x) {\n  %r = mul i32 %x, 3\n  ret i32 %r\n}\n")
    jit.add_ir(user)
    assert jit.lookup("user", "int(int)")(7) == 21


def test_define_address_and_python_callable(jit):
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    jit.define("my_abs", ctypes.cast(libc.abs, ctypes.c_void_p).value)
    jit.define("py_twice", lambda x: 2 * x, "int(int)")
    jit.add_ir("""
        declare i32 @my_abs(i32)
        declare i32 @py_twice(i32)
        define i32 @f(i32 %x) {
          %a = call i32 @my_abs(i32 %x)
          %b = call i32 @py_twice(i32 %a)
          ret i32 %b
        }""")
    assert jit.lookup("f", "int(int)")(-21) == 42


def test_user_definitions_come_after_own_definitions(jit):
    jit.define("add", lambda a, b: -1, "int(int, int)")
    jit.add_ir(ADD)
    jit.add_ir("declare i32 @add(i32, i32)\ndefine i32 @g() {\n"
               "  %r = call i32 @add(i32 1, i32 2)\n  ret i32 %r\n}\n")
    assert jit.lookup("g", "int()")() == 3


def test_callable_without_signature_is_refused(jit):
    with pytest.raises(orcjit.JITError, match="needs a signature"):
        jit.define("f", lambda: 0)


def test_load_library(jit):
    jit.load_library(ctypes.util.find_library("m") or "libm.so.6")
    jit.add_ir("declare double @cbrt(double)\ndefine double @f(double %x) {\n"
               "  %r = call double @cbrt(double %x)\n  ret double %r\n}\n")
    assert jit.lookup("f", "double(double)")(27.0) == pytest.approx(3.0)
    with pytest.raises(orcjit.JITError, match="cannot load library"):
        jit.load_library("/nonexistent/libnothing.so")


def test_run_main_passes_argv(jit):
    jit.add_ir("""
        declare i64 @strlen(ptr)
        define i32 @main(i32 %argc, ptr %argv) {
          %p = getelementptr ptr, ptr %argv, i32 1
          %s = load ptr, ptr %p
          %n = call i64 @strlen(ptr %s)
          %n32 = trunc i64 %n to i32
          %r = add i32 %n32, %argc
          ret i32 %r
        }""")
    assert jit.run_main(["prog", "hello"]) == 7


def test_unknown_and_removed_symbols(jit):
    assert jit.address("nothing") == 0
    with pytest.raises(orcjit.JITError, match="not defined"):
        jit.lookup("nothing", "int()")
    handle = jit.add_ir(ADD)
    assert jit.address("add") != 0
    jit.remove(handle)
    assert jit.address("add") == 0
    with pytest.raises(orcjit.JITError):
        jit.remove(handle)
    jit.add_ir(ADD)                     # the name is free again
    assert jit.lookup("add", "int(int,int)")(2, 2) == 4


def test_stats(jit):
    jit.add_ir(ADD)
    stats = jit.stats()
    for key in ("parse_seconds", "optimize_seconds", "codegen_seconds", "link_seconds",
                "overhead_seconds", "functions_compiled"):
        assert key in stats
    assert stats["functions_compiled"] == 1
    assert stats["codegen_seconds"] > 0 and stats["link_seconds"] > 0


def test_closed_jit_refuses_work():
    jit = orcjit.JIT()
    jit.close()
    with pytest.raises(orcjit.JITError, match="closed"):
        jit.add_ir(ADD)


@pytest.mark.parametrize("options", [
    {"code_model": "large"},
    {"code_model": "large", "reloc_model": "static"},
    {"code_model": "medium"},
    {"opt_level": 0},
    {"opt_level": 3},
])
def test_code_models_and_levels(options):
    source = """
        @table = global [4 x i32] [i32 1, i32 2, i32 3, i32 4]
        @counter = internal global i32 0
        declare i64 @strlen(ptr)
        @text = private constant [4 x i8] c"abc\\00"
        define i32 @f(i32 %i) {
          %p = getelementptr [4 x i32], ptr @table, i32 0, i32 %i
          %v = load i32, ptr %p
          %c = load i32, ptr @counter
          %c1 = add i32 %c, 1
          store i32 %c1, ptr @counter
          %n = call i64 @strlen(ptr @text)
          %n32 = trunc i64 %n to i32
          %s = add i32 %v, %n32
          %t = add i32 %s, %c1
          ret i32 %t
        }"""
    with orcjit.JIT(**options) as jit:
        jit.add_ir(source)
        f = jit.lookup("f", "int(int)")
        assert [f(0), f(3)] == [5, 9]


@pytest.mark.parametrize("options", [{"code_model": "tiny-ish"}, {"opt_level": 7},
                                     {"reloc_model": "ropi"}, {"lazy": "sometimes"},
                                     {"lazy": True, "indirection": "triple"}, {"tiered": True}])
def test_bad_options_are_rejected(options):
    with pytest.raises(orcjit.ConfigurationError) as info:
        orcjit.JIT(**options)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("signature", ["int(", "int(int,)", "quux(int)", "int(void, int)", "int(...)"])
def test_bad_signatures(jit, signature):
    jit.add_ir(ADD)
    with pytest.raises(orcjit.SignatureError):
        jit.lookup("add", signature)


def test_modules_that_call_each_other_are_added_together(jit):
    handle = jit.add_ir([
        "declare i32 @b(i32)\ndefine i32 @a(i32 %n) {\n  %r = call i32 @b(i32 %n)\n  ret i32 %r\n}\n",
        "declare i32 @a(i32)\ndefine i32 @b(i32 %n) {\n  %z = icmp eq i32 %n, 0\n"
        "  br i1 %z, label %done, label %more\nmore:\n  %m = sub i32 %n, 1\n"
        "  %r = call i32 @a(i32 %m)\n  %s = add i32 %r, 2\n  ret i32 %s\ndone:\n  ret i32 0\n}\n",
    ])
    assert jit.lookup("a", "int(int)")(5) == 10
    jit.remove(handle)
    assert jit.address("a") == 0


class CountingExecutor(InProcessExecutor):
    def __init__(self) -> None:
        super().__init__()
        self.lookups: list[str] = []

    def lookup(self, handle: int, name: str) -> int:
        self.lookups.append(name)
        return super().lookup(handle, name)


def test_process_symbols_found_are_remembered_and_missing_ones_asked_again():
    executor = CountingExecutor()
    resolver = ProcessResolver(executor, runtime_libraries=())
    strlen = resolver.lookup("strlen")
    assert strlen and resolver.lookup("strlen") == strlen
    assert executor.lookups.count("strlen") == 1
    assert resolver.lookup("no_such_symbol_anywhere") is None
    assert resolver.lookup("no_such_symbol_anywhere") is None
    assert executor.lookups.count("no_such_symbol_anywhere") == 2


def test_empty_target_lines_are_filled_in():
    """Modules whose text names their target skip asking LLVM; empty names do not count."""
    module = parse_ir('target datalayout = ""\ntarget triple = ""\n'
                      "define i32 @f() {\n  ret i32 1\n}")
    layout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-i128:128-f80:128-n8:16:32:64-S128"
    prepare_for_target(module, "x86_64-unknown-linux-gnu", layout)
    assert module.triple == "x86_64-unknown-linux-gnu" and module.data_layout == layout
    dispose(module)


def test_shared_contexts_serve_a_thread_then_retire(monkeypatch):
    """Partitions parse into one context per thread, replaced after a while;
    a retired context is closed once its last module is gone."""
    import threading

    import orcjit.frontends.ir as frontend

    monkeypatch.setattr(frontend, "SHARED_CONTEXT_USES", 3)
    text = "define i32 @f() {\n  ret i32 1\n}"
    modules = [parse_ir(text, shared_context=True) for _ in range(4)]
    contexts = [m._orcjit_context for m in modules]
    assert contexts[0] is contexts[1] is contexts[2] is not contexts[3]
    first = contexts[0]
    assert first.retired and first.live == 3 and not first.context.closed
    with pytest.raises(orcjit.InvalidIRError):
        parse_ir("define i32 @g( {", shared_context=True)   # a failed parse spoils nothing
    for module in modules[:3]:
        dispose(module)
    assert first.live == 0 and first.context.closed
    others = []
    thread = threading.Thread(target=lambda: others.append(parse_ir(text, shared_context=True)))
    thread.start()
    thread.join()
    assert others[0]._orcjit_context is not contexts[3]     # each thread has its own
    for module in (modules[3], others[0]):
        dispose(module)
    again = parse_ir(text, shared_context=True)
    assert str(again).count("define") == 1
    dispose(again)
