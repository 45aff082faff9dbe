"""The layer interface, used directly: stacking, lazy linking across sets, symbol queries."""

from __future__ import annotations

import ctypes

import pytest

import orcjit
from orcjit.frontends.ir import parse_ir
from orcjit.layers import (IRCompileLayer, IRTransformLayer, ObjectLinkingLayer, SimpleCompiler,
                           create_target_machine, optimization_pipeline)
from orcjit.symbols import JITSymbolFlags


@pytest.fixture
def stack():
    tm = create_target_machine()
    linker = ObjectLinkingLayer()
    compiler = IRCompileLayer(linker, SimpleCompiler(tm))
    optimizer = IRTransformLayer(compiler, optimization_pipeline(tm, 2))
    yield optimizer, linker
    linker.close()


def call(address: int, signature: str, *args):
    from orcjit.signatures import to_prototype
    return to_prototype(signature)(address)(*args)


def test_sets_referring_to_each_other_link_together(stack):
    top, linker = stack
    even = top.add_module_set([parse_ir("""
        declare i1 @is_odd(i32)
        define i1 @is_even(i32 %n) {
          %z = icmp eq i32 %n, 0
          br i1 %z, label %yes, label %no
        yes:
          ret i1 true
        no:
          %m = sub i32 %n, 1
          %r = call i1 @is_odd(i32 %m)
          ret i1 %r
        }""")])
    # is_odd is not defined yet: the set waits, pending, until asked for
    symbol = top.find_symbol("is_even")
    assert symbol is not None and not symbol.is_materialized
    odd = top.add_module_set([parse_ir("""
        declare i1 @is_even(i32)
        define i1 @is_odd(i32 %n) {
          %z = icmp eq i32 %n, 0
          br i1 %z, label %no, label %yes
        no:
          ret i1 false
        yes:
          %m = sub i32 %n, 1
          %r = call i1 @is_even(i32 %m)
          ret i1 %r
        }""")])
    address = top.get_symbol_address("is_even")
    assert call(address, "bool(int)", 10) is True
    assert call(top.lookup_symbol_address_in(odd, "is_odd"), "bool(int)", 7) is True
    assert top.lookup_symbol_address_in(even, "is_odd") == 0      # not that set's
    assert symbol.address == address


def test_pending_set_reports_unresolved_at_lookup_and_stays_pending(stack):
    top, _ = stack
    top.add_module_set([parse_ir("declare i32 @later()\ndefine i32 @f() {\n"
                                 "  %r = call i32 @later()\n  ret i32 %r\n}\n")])
    with pytest.raises(orcjit.UnresolvedSymbolsError, match="later"):
        top.get_symbol_address("f")
    top.add_module_set([parse_ir("define i32 @later() {\n  ret i32 5\n}\n")])
    assert call(top.get_symbol_address("f"), "int()") == 5


def test_exported_symbols_only(stack):
    top, _ = stack
    handle = top.add_module_set([parse_ir("""
        define hidden i32 @hidden_fn() {
          ret i32 1
        }
        define i32 @public_fn() {
          %r = call i32 @hidden_fn()
          ret i32 %r
        }""")])
    assert top.find_symbol("hidden_fn") is None
    hidden = top.find_symbol("hidden_fn", exported_symbols_only=False)
    assert hidden is not None and not hidden.flags & JITSymbolFlags.EXPORTED
    assert top.find_symbol_in(handle, "public_fn").flags & JITSymbolFlags.CALLABLE
    assert top.get_symbol_address("hidden_fn") == 0
    assert top.get_symbol_address("hidden_fn", exported_symbols_only=False) != 0


def test_removal_makes_symbols_undefined(stack):
    top, _ = stack
    handle = top.add_module_set([parse_ir("define i32 @f() {\n  ret i32 1\n}\n")])
    assert top.get_symbol_address("f")
    top.remove_module_set(handle)
    assert top.get_symbol_address("f") == 0
    assert top.find_symbol("f") is None


def test_custom_transform_sees_every_module():
    seen = []
    linker = ObjectLinkingLayer()
    compiler = IRCompileLayer(linker, SimpleCompiler(create_target_machine()))
    transform = IRTransformLayer(compiler, lambda m: seen.append(m.name) or m)
    transform.add_module_set([parse_ir("define void @a() {\n  ret void\n}\n", name="first"),
                              parse_ir("define void @b() {\n  ret void\n}\n", name="second")])
    assert seen == ["first", "second"]
    assert linker.get_symbol_address("a") and linker.get_symbol_address("b")
    linker.close()


def test_per_set_resolver():
    class Fixed:
        def lookup(self, name):
            return 0x1234 if name == "magic" else None

    linker = ObjectLinkingLayer()
    compiler = IRCompileLayer(linker, SimpleCompiler(create_target_machine()))
    compiler.add_module_set([parse_ir("@magic = external global i8\n"
                                      "define ptr @where() {\n  ret ptr @magic\n}\n")],
                            resolver=Fixed())
    assert call(linker.get_symbol_address("where"), "void*()") == 0x1234
    linker.close()


def test_jit_memory_is_never_writable_and_executable():
    with orcjit.JIT() as jit:
        jit.add_ir("@d = global i32 1\ndefine i32 @f() {\n  %v = load i32, ptr @d\n  ret i32 %v\n}\n")
        base = jit.linker.memory_pool.base
        end = jit.linker.memory_pool.end
        perms = []
        with open("/proc/self/maps") as maps:
            for line in maps:
                span, mode = line.split()[:2]
                lo, hi = (int(x, 16) for x in span.split("-"))
                if lo < end and hi > base:
                    perms.append(mode)
                    assert not ("w" in mode and "x" in mode), line
        assert any("x" in p for p in perms) and any("w" in p for p in perms)
        assert ctypes.c_int.from_address(jit.address("d")).value == 1


def test_object_names_must_match_the_objects():
    with orcjit.JIT() as jit:
        with pytest.raises(orcjit.ConfigurationError, match="2 names given for 1 objects"):
            jit.linker.add_object_set([b"\x7fELF"], names=["a", "b"])


ALWAYS_INLINE = """
define internal i32 @square(i32 %x) alwaysinline {
  %r = mul i32 %x, %x
  ret i32 %r
}
define i32 @f(i32 %x) {
  %r = call i32 @square(i32 %x)
  ret i32 %r
}
"""


def test_the_o0_pipeline_runs_only_where_it_has_work():
    optimize = optimization_pipeline(create_target_machine(opt_level=0), 0)
    plain = parse_ir("define i32 @f(i32 %x) {\n  ret i32 %x\n}")
    assert plain._orcjit_inert_at_o0                  # nothing for -O0 to do: skipped
    assert str(optimize(plain)) == str(plain)
    inlining = parse_ir(ALWAYS_INLINE)
    assert not hasattr(inlining, "_orcjit_inert_at_o0")
    assert "call" not in str(optimize(inlining))      # the always-inliner ran
    coroutine = parse_ir("declare token @llvm.coro.id(i32, ptr, ptr, ptr)\n"
                         "define void @g() {\n  ret void\n}")
    assert not hasattr(coroutine, "_orcjit_inert_at_o0")
    assert not hasattr(parse_ir(plain), "_orcjit_inert_at_o0")   # handed back: may have changed


def test_always_inline_functions_work_at_every_level():
    for opt_level in (0, 2):
        with orcjit.JIT(opt_level=opt_level) as jit:
            jit.add_ir(ALWAYS_INLINE)
            assert jit.lookup("f", "int(int)")(7) == 49


@pytest.mark.parametrize("direct", [True, False], ids=["direct calls", "llvmlite's methods"])
def test_parsed_text_keeps_its_name_and_llvm_s_complaints(monkeypatch, direct):
    """Text is parsed, named and freed through llvmlite's C entry points, or
    through its methods where those entry points are not as expected."""
    from orcjit.frontends.ir import dispose
    from orcjit.runtime import llvm_calls

    if not direct:
        monkeypatch.setattr(llvm_calls, "_MODULE_CALLS", None)
    module = parse_ir("define i32 @f() {\n  ret i32 1\n}", name="first", shared_context=True)
    assert module.name == "first" and "ModuleID = 'first'" in str(module)
    module.name = "second"
    assert module.name == "second" and "ModuleID = 'second'" in str(module)
    dispose(module)
    assert module.closed
    with pytest.raises(orcjit.InvalidIRError, match="expected type"):
        parse_ir("define i32 @g( {", name="broken")


def test_llvm_calls_made_directly_still_run_llvmlite_s_lock_callbacks():
    """Callbacks registered on llvmlite's lock (numba registers some) run
    around every LLVM call, also those made without llvmlite's wrappers."""
    import llvmlite.binding as llvm

    from orcjit.frontends.ir import dispose

    held = []
    acquire, release = (lambda: held.append(1)), (lambda: held.append(-1))
    llvm.ffi.register_lock_callback(acquire, release)
    try:
        compiler = SimpleCompiler(create_target_machine(opt_level=0))
        module = parse_ir("define i32 @f() {\n  ret i32 1\n}", name="locked")
        before = len(held)
        compiler(module)
        dispose(module)
    finally:
        llvm.ffi.unregister_lock_callback(acquire, release)
    assert before >= 2 and len(held) > before and sum(held) == 0
