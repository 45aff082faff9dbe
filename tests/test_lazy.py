"""Lazy compilation: stubs in front of every function, bodies compiled on first call."""

from __future__ import annotations

import ctypes
import random
import time
import threading

import pytest

import orcjit
from orcjit.frontends.ir import dispose, parse_ir
from orcjit.layers.partition import ModuleText

CHAIN = """
@counter = internal global i32 0
@table = global [2 x ptr] [ptr @first, ptr @second]

define internal i32 @helper(i32 %x) {
  %c = load i32, ptr @counter
  %c1 = add i32 %c, 1
  store i32 %c1, ptr @counter
  %r = mul i32 %x, 2
  ret i32 %r
}
define i32 @first(i32 %x) {
  %r = call i32 @helper(i32 %x)
  ret i32 %r
}
define i32 @second(i32 %x) {
  %r = call i32 @first(i32 %x)
  %s = add i32 %r, 1
  ret i32 %s
}
define ptr @address_of_first() {
  ret ptr @first
}
define i32 @calls_so_far() {
  %c = load i32, ptr @counter
  ret i32 %c
}
"""


@pytest.fixture(params=["double", "single", "patchpoint"])
def lazy(request):
    """Every lazy test runs once per indirection strategy."""
    with orcjit.LazyJIT(indirection=request.param) as jit:
        yield jit


def test_nothing_is_compiled_until_called(lazy):
    lazy.add_ir(CHAIN)
    assert lazy.stats()["functions_compiled"] == 0
    assert lazy.lookup("second", "int(int)")(20) == 41
    assert lazy.stats()["functions_compiled"] == 3           # second, first, helper
    assert not lazy.lazy.is_compiled("address_of_first")
    assert lazy.lookup("calls_so_far", "int()")() == 1


def test_function_pointer_equality(lazy):
    lazy.add_ir(CHAIN)
    address = lazy.address("first")
    assert lazy.lookup("address_of_first", "void*()")() == address
    table = (ctypes.c_void_p * 2).from_address(lazy.address("table"))
    assert table[0] == address and table[1] == lazy.address("second")
    assert ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(table[1])(1) == 3
    assert lazy.address("first") == address                 # unchanged once compiled


WITH_DEBUG_INFO_AND_TBAA = """
define internal i32 @twice(i32 %x) !dbg !9 {
    #dbg_value(i32 %x, !14, !DIExpression(), !13)
  %r = mul i32 %x, 2, !dbg !13
  ret i32 %r, !dbg !13
}
define i32 @load_twice(ptr %p) !dbg !15 {
  %v = load i32, ptr %p, align 4, !tbaa !20, !dbg !16
  %r = call i32 @twice(i32 %v), !dbg !16
  ret i32 %r, !dbg !16
}
!llvm.module.flags = !{!1, !2}
!llvm.dbg.cu = !{!5}
!1 = !{i32 7, !"Dwarf Version", i32 4}
!2 = !{i32 2, !"Debug Info Version", i32 3}
!5 = distinct !DICompileUnit(language: DW_LANG_C99, file: !6, producer: "test", isOptimized: false, runtimeVersion: 0, emissionKind: FullDebug)
!6 = !DIFile(filename: "twice.c", directory: "/src")
!9 = distinct !DISubprogram(name: "twice", scope: !6, file: !6, line: 1, type: !10, scopeLine: 1, spFlags: DISPFlagDefinition, unit: !5, retainedNodes: !17)
!10 = !DISubroutineType(types: !11)
!11 = !{!12, !12}
!12 = !DIBasicType(name: "int", size: 32, encoding: DW_ATE_signed)
!13 = !DILocation(line: 1, column: 1, scope: !9)
!14 = !DILocalVariable(name: "x", arg: 1, scope: !9, file: !6, line: 1, type: !12)
!15 = distinct !DISubprogram(name: "load_twice", scope: !6, file: !6, line: 2, type: !10, scopeLine: 2, spFlags: DISPFlagDefinition, unit: !5)
!16 = !DILocation(line: 2, column: 1, scope: !15)
!17 = !{!14}
!20 = !{!21, !21, i64 0}
!21 = !{!"int", !22, i64 0}
!22 = !{!"omnipotent char", !23, i64 0}
!23 = !{!"Simple C/C++ TBAA"}
"""


def test_modules_with_debug_info_and_tbaa_partition(lazy):
    """Partitions drop debug info (it would drag in the compile unit) and keep
    the metadata their code uses (TBAA nodes and what those reach)."""
    lazy.add_ir(WITH_DEBUG_INFO_AND_TBAA)
    value = ctypes.c_int32(21)
    assert lazy.lookup("load_twice", "int(void*)")(ctypes.addressof(value)) == 42
    assert lazy.stats()["functions_compiled"] == 2


def test_partition_text_keeps_the_metadata_it_uses_and_no_debug_info():
    module = parse_ir(WITH_DEBUG_INFO_AND_TBAA)
    text = str(module)
    dispose(module)
    cut = ModuleText.parse(text)
    cut.promote_locals(".orc1")
    partition, body = cut.function_partition("@load_twice")
    assert body == "load_twice.orc_body"
    assert "!dbg" not in partition and "#dbg_" not in partition
    assert "DICompileUnit" not in partition
    assert "!tbaa" in partition and '!"Simple C/C++ TBAA"' in partition
    assert "declare i32 @twice.orc1(i32" in partition      # the promoted callee
    dispose(parse_ir(partition))                             # and it is valid IR
    chain = parse_ir(CHAIN)
    plain = ModuleText.parse(str(chain))
    dispose(chain)
    assert not plain.has_debug and cut.has_debug


def test_internal_symbols_of_two_modules_do_not_clash(lazy):
    lazy.add_ir(CHAIN)
    lazy.add_ir(CHAIN.replace("@first", "@other_first").replace("@second", "@other_second")
                .replace("@table", "@other_table").replace("@address_of_first", "@aof2")
                .replace("@calls_so_far", "@other_calls").replace("mul i32 %x, 2", "mul i32 %x, 3"))
    assert lazy.lookup("first", "int(int)")(5) == 10
    assert lazy.lookup("other_first", "int(int)")(5) == 15
    assert lazy.lookup("calls_so_far", "int()")() == 1
    assert lazy.lookup("other_calls", "int()")() == 1


def test_removal_frees_compiled_and_uncompiled_functions(lazy):
    handle = lazy.add_ir(CHAIN)
    assert lazy.lookup("first", "int(int)")(1) == 2
    lazy.remove(handle)
    assert lazy.address("first") == 0 and lazy.address("second") == 0
    assert lazy.linker.handles() == []
    lazy.add_ir(CHAIN)
    assert lazy.lookup("second", "int(int)")(1) == 3


def test_stats_cover_lazy_work(lazy):
    lazy.add_ir(CHAIN)
    lazy.lookup("second", "int(int)")(1)
    stats = lazy.stats()
    assert stats["codegen_seconds"] > 0 and stats["link_seconds"] > 0
    assert stats["total_seconds"] >= stats["codegen_seconds"] + stats["link_seconds"]
    assert stats["overhead_seconds"] >= 0


def many_functions(n: int) -> str:
    """n functions that each call a shared helper; f_i(x) = x * i + 7."""
    parts = ["define internal i64 @seven() {\n  ret i64 7\n}"]
    for i in range(n):
        parts.append(f"define i64 @f{i}(i64 %x) {{\n  %m = mul i64 %x, {i}\n"
                     f"  %s = call i64 @seven()\n  %r = add i64 %m, %s\n  ret i64 %r\n}}")
    return "\n".join(parts)


@pytest.mark.parametrize("indirection", ["double", "single", "patchpoint"])
def test_sixteen_threads_first_call_a_thousand_functions_in_random_order(indirection):
    """Each body is compiled exactly once and every caller gets the right result."""
    threads, functions = 16, 1000
    with orcjit.LazyJIT(opt_level=0, indirection=indirection) as jit:
        jit.add_ir(many_functions(functions))
        prototype = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)
        stubs = [prototype(jit.address(f"f{i}")) for i in range(functions)]
        errors = []
        start = threading.Barrier(threads)

        def worker(seed: int) -> None:
            order = list(range(functions))
            random.Random(seed).shuffle(order)
            start.wait()
            for i in order:
                if stubs[i](3) != 3 * i + 7:
                    errors.append(i)

        pool = [threading.Thread(target=worker, args=(seed,)) for seed in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        assert errors == []
        assert jit.stats()["functions_compiled"] == functions + 1    # + the helper


VERSION = """
@calls = internal global i64 0
define i64 @compute(i64 %x) {{
  %c = atomicrmw add ptr @calls, i64 1 seq_cst
  %r = add i64 %x, {delta}
  ret i64 %r
}}
define i64 @calls_made() {{
  %c = load i64, ptr @calls
  ret i64 %c
}}
define i64 @call_compute(i64 %x) {{
  %r = call i64 @compute(i64 %x)
  ret i64 %r
}}
"""


def test_replace_swaps_bodies_and_keeps_state(lazy):
    handle = lazy.add_ir(VERSION.format(delta=1))
    call_compute = lazy.lookup("call_compute", "int64_t(int64_t)")
    address = lazy.address("compute")
    assert call_compute(10) == 11
    lazy.replace(handle, VERSION.format(delta=100))
    assert call_compute(10) == 110                     # callers see the new body
    assert lazy.address("compute") == address          # same function, same address
    assert lazy.lookup("calls_made", "int64_t()")() == 2   # the global kept its value
    assert lazy.release_replaced(handle) == 3           # every function had a new version
    assert call_compute(1) == 101


def test_replace_while_threads_call(lazy):
    """Every call runs the old or the new body; none crashes, none is lost."""
    handle = lazy.add_ir(VERSION.format(delta=0))
    call_compute = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(lazy.address("call_compute"))
    stop = threading.Event()
    results: list[list[int]] = [[] for _ in range(4)]

    def caller(out: list[int]) -> None:
        while not stop.is_set():
            out.append(call_compute(0))

    threads = [threading.Thread(target=caller, args=(out,)) for out in results]
    for t in threads:
        t.start()
    for version in range(1, 6):
        lazy.replace(handle, VERSION.format(delta=version))
    stop.set()
    for t in threads:
        t.join()
    seen = [value for out in results for value in out]
    assert seen and set(seen) <= set(range(6))
    assert all(out == sorted(out) for out in results)   # each thread only moves forward
    assert lazy.lookup("calls_made", "int64_t()")() == len(seen)
    assert call_compute(0) == 5


BROKEN_VERSION = """
@calls = internal global i64 0
@added = global i64 5
declare i64 @not_defined_anywhere()
define i64 @compute(i64 %x) {
  %m = call i64 @not_defined_anywhere()
  %r = add i64 %x, %m
  ret i64 %r
}
define i64 @brand_new() {
  ret i64 1
}
"""


def test_a_failed_replace_leaves_the_set_as_it_was(lazy):
    handle = lazy.add_ir(VERSION.format(delta=1))
    call_compute = lazy.lookup("call_compute", "int64_t(int64_t)")
    assert call_compute(10) == 11                        # compute has a body: replaced hot
    linked = set(lazy.linker.handles())
    with pytest.raises(orcjit.UnresolvedSymbolsError, match="not_defined_anywhere"):
        lazy.replace(handle, BROKEN_VERSION)
    assert set(lazy.linker.handles()) == linked          # new globals and bodies freed
    assert call_compute(10) == 11
    assert lazy.address("brand_new") == lazy.address("added") == 0
    assert lazy.release_replaced(handle) == 0            # nothing was retired
    lazy.replace(handle, VERSION.format(delta=100))      # the set still takes replacements
    assert call_compute(10) == 110
    assert lazy.lookup("calls_made", "int64_t()")() == 3


def test_a_failed_replace_keeps_the_sets_dso(lazy):
    handle = lazy.add_ir("define i64 @f() {\n  ret i64 1\n}")     # no globals
    dso = lazy.lazy._sets[handle].resolver.dso_handle
    assert dso and lazy.lookup("f", "int64_t()")() == 1
    with pytest.raises(orcjit.UnresolvedSymbolsError):
        lazy.replace(handle, BROKEN_VERSION.replace("@compute", "@f"))
    assert lazy.lazy._sets[handle].resolver.dso_handle == dso


STATIC_LOCAL = """
@obj = internal global i64 0
@guard = internal global i64 0
@__dso_handle = external hidden global i8
declare i32 @__cxa_atexit(ptr, ptr, ptr)
declare void @record(i64)
define void @destroy(ptr %p) {
  %v = load i64, ptr %p
  call void @record(i64 %v)
  store i64 -1, ptr %p
  ret void
}
define i64 @f() {
  %g = load i64, ptr @guard
  %first = icmp eq i64 %g, 0
  br i1 %first, label %init, label %done
init:
  store i64 1, ptr @guard
  store i64 42, ptr @obj
  %r = call i32 @__cxa_atexit(ptr @destroy, ptr @obj, ptr @__dso_handle)
  br label %done
done:
  %v = load i64, ptr @obj
  ret i64 %v
}
"""


@pytest.mark.parametrize("first", ["define i64 @f() {\n  ret i64 1\n}", STATIC_LOCAL])
def test_destructors_registered_by_any_body_run_when_the_set_goes(lazy, first):
    """A body registers a destructor under the set's DSO, not its own: freeing
    a replaced body does not run it, removing the set does."""
    destroyed: list[int] = []
    lazy.define("record", destroyed.append, "void(int64_t)")
    handle = lazy.add_ir(first)
    f = lazy.lookup("f", "int64_t()")
    f()                                   # compiled: replacements of f are compiled at once
    lazy.replace(handle, STATIC_LOCAL)
    assert f() == 42                      # registered its destructor
    lazy.replace(handle, STATIC_LOCAL)
    assert lazy.release_replaced(handle) > 0
    assert f() == 42 and destroyed == []  # still alive
    lazy.remove(handle)
    assert destroyed == [42]


def test_a_hot_replacement_may_call_functions_new_to_it(lazy):
    handle = lazy.add_ir("define i64 @f() {\n  ret i64 1\n}")
    f = lazy.lookup("f", "int64_t()")
    assert f() == 1
    lazy.replace(handle, "define i64 @helper() {\n  ret i64 2\n}\n"
                         "define i64 @f() {\n  %v = call i64 @helper()\n  ret i64 %v\n}")
    assert f() == 2


def test_replacements_of_one_set_take_turns(lazy):
    """A failing replacement and a good one at once: the good one lands, and
    the set goes on taking replacements."""
    handle = lazy.add_ir(VERSION.format(delta=1))
    call_compute = lazy.lookup("call_compute", "int64_t(int64_t)")
    assert call_compute(10) == 11
    slow_down = threading.Event()

    def on_partition(module, names):
        if slow_down.is_set() and "compute" in names:
            time.sleep(0.2)               # the failing replacement is still at work

    lazy.lazy.on_partition = on_partition
    slow_down.set()
    errors: list[BaseException] = []

    def replace(text: str) -> None:
        try:
            lazy.replace(handle, text)
        except orcjit.JITError as error:
            errors.append(error)

    failing = threading.Thread(target=replace, args=(BROKEN_VERSION,))
    failing.start()
    time.sleep(0.05)
    good = threading.Thread(target=replace, args=(VERSION.format(delta=100),))
    good.start()
    failing.join()
    good.join()
    slow_down.clear()
    assert [type(e) for e in errors] == [orcjit.UnresolvedSymbolsError]
    assert call_compute(10) == 110
    for delta in (200, 300):
        lazy.replace(handle, VERSION.format(delta=delta))
        assert call_compute(10) == 10 + delta


def test_replace_needs_a_lazy_jit(jit):
    handle = jit.add_ir(VERSION.format(delta=1))
    with pytest.raises(orcjit.JITError, match="lazy"):
        jit.replace(handle, VERSION.format(delta=2))


def test_patchpoints_send_calls_straight_to_bodies():
    with orcjit.LazyJIT(indirection="patchpoint") as jit:
        jit.add_ir(CHAIN)
        assert jit.lookup("second", "int(int)")(20) == 41
        patcher = jit.lazy.patcher
        assert patcher.patched >= 2                     # second -> first -> helper
        (handle, site), = patcher.sites["first"]
        disp = int.from_bytes(ctypes.string_at(site, 4), "little", signed=True)
        first = jit.lazy._winner("first")
        assert site + 4 + disp == first.body            # not the stub
        assert jit.lookup("second", "int(int)")(1) == 3


def test_per_module_laziness_emits_a_set_only_when_used():
    with orcjit.JIT(lazy="module") as jit:
        used = jit.add_ir(CHAIN)
        unused = jit.add_ir("define i32 @never() {\n  ret i32 0\n}\n")
        caller = jit.add_ir("declare i32 @second(i32)\ndefine i32 @via(i32 %x) {\n"
                            "  %r = call i32 @second(i32 %x)\n  ret i32 %r\n}\n")
        assert jit.stats()["functions_compiled"] == 0
        assert jit.lookup("via", "int(int)")(20) == 41      # emits caller, then CHAIN's set
        assert jit.deferred.is_emitted(caller) and jit.deferred.is_emitted(used)
        assert not jit.deferred.is_emitted(unused)
        jit.remove(unused)
        jit.remove(used)


@pytest.mark.parametrize("words", ["dso_local", "hidden", "protected", "dso_local hidden",
                                   "internal", "linkonce_odr", "weak"])
def test_definition_linkage_and_visibility_words(lazy, words):
    """clang marks definitions dso_local; partitions must still parse."""
    lazy.add_ir(f"define {words} i32 @callee() {{\n  ret i32 42\n}}\n"
                "define i32 @entry() {\n  %r = call i32 @callee()\n  ret i32 %r\n}\n")
    assert lazy.lookup("entry", "int()")() == 42


def test_modules_of_one_set_keep_their_private_names_apart(any_jit):
    """clang names string constants @.str in every module."""
    a = ('@.str = private constant [2 x i8] c"a\\00"\n@ta = global ptr @.str\n'
         "define ptr @fa() {\n  %p = load ptr, ptr @ta\n  ret ptr %p\n}\n")
    b = ('@.str = private constant [2 x i8] c"b\\00"\n@tb = global ptr @.str\n'
         "declare ptr @fa()\ndefine i32 @diff() {\n  %p = load ptr, ptr @tb\n"
         "  %q = call ptr @fa()\n  %x = load i8, ptr %p\n  %y = load i8, ptr %q\n"
         "  %s = sub i8 %x, %y\n  %r = zext i8 %s to i32\n  ret i32 %r\n}\n")
    any_jit.add_ir([a, b])
    assert any_jit.lookup("diff", "int()")() == 1


def test_tiered_compilation_swaps_in_optimised_bodies():
    with orcjit.JIT(lazy=True, tiered=True) as jit:
        jit.lazy.optimizer.delay = 0.0
        jit.add_ir(CHAIN)
        second = jit.lookup("second", "int(int)")
        with jit.lazy.optimizer._busy:                  # hold the second tier back a moment
            assert second(20) == 41
            quick_body = jit.lazy._winner("second").body
        deadline = time.monotonic() + 10
        while jit.stats()["functions_optimized"] < 3 and time.monotonic() < deadline:
            assert second(20) == 41                       # every call right, either tier
        assert jit.wait_for_optimizations(timeout=10)
        stats = jit.stats()
        assert stats["functions_optimized"] == 3
        assert 0 < stats["background_seconds"] < stats["total_seconds"]
        assert jit.lazy._winner("second").body != quick_body
        assert jit.lookup("address_of_first", "void*()")() == jit.address("first")
        assert jit.wait_for_optimizations(timeout=10)
        # every first-tier body an optimised one replaced is freed now
        assert jit.release_replaced(jit.lazy.handles()[0]) == jit.stats()["functions_optimized"]


def test_patchpoints_forget_the_call_sites_of_freed_bodies():
    """Once a replaced body is freed, no later patch may write into its code."""
    with orcjit.JIT(lazy=True, tiered=True, indirection="patchpoint") as jit:
        jit.lazy.optimizer.delay = 0.0
        handle = jit.add_ir(CHAIN)
        assert jit.lookup("second", "int(int)")(20) == 41
        assert jit.wait_for_optimizations(timeout=10)
        assert jit.release_replaced(handle) > 0
        patcher, live = jit.lazy.patcher, set(jit.linker.handles())
        assert patcher.partitions <= live
        assert all(site_handle in live
                   for sites in patcher.sites.values() for site_handle, _site in sites)
        assert jit.lookup("calls_so_far", "int()")() == 1      # compiling more still patches
        assert jit.lookup("second", "int(int)")(20) == 41


def test_closing_a_tiered_jit_with_work_queued():
    jit = orcjit.JIT(lazy=True, tiered=True)
    jit.add_ir(many_functions(50))
    prototype = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)
    assert [prototype(jit.address(f"f{i}"))(1) for i in range(50)] == [i + 7 for i in range(50)]
    jit.close()                                             # does not wait for the queue


def test_tiered_needs_lazy():
    with pytest.raises(ValueError, match="lazy"):
        orcjit.JIT(tiered=True)
    with pytest.raises(orcjit.ConfigurationError, match="lazy=True"):
        orcjit.JIT(lazy="module", tiered=True)        # whole modules have no stubs to swap


def test_partitions_of_replacements_carry_the_target_too(lazy):
    triples = []
    lazy.lazy.on_partition = lambda module, names: triples.append(module.triple)
    handle = lazy.add_ir(VERSION.format(delta=1))
    assert lazy.lookup("call_compute", "int64_t(int64_t)")(10) == 11
    lazy.replace(handle, VERSION.format(delta=100))
    assert triples and all(triples)


def test_removing_a_set_while_its_functions_wait_for_the_second_tier(capfd):
    with orcjit.JIT(lazy=True, tiered=True) as jit:
        jit.lazy.optimizer.delay = 0.0
        for _ in range(5):
            handle = jit.add_ir(CHAIN)
            assert jit.lookup("second", "int(int)")(1) == 3
            jit.remove(handle)                       # the queue still names its functions
        assert jit.wait_for_optimizations(timeout=10)
        handle = jit.add_ir(CHAIN)
        assert jit.lookup("second", "int(int)")(2) == 5
    assert "failed" not in capfd.readouterr().err
