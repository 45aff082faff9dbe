"""MCJITReplacement: MCJIT's ExecutionEngine contract on orcjit's layers."""

from __future__ import annotations

import pytest
from arbuilder import ar

import orcjit
from orcjit.frontends.ir import parse_ir
from orcjit.layers import create_target_machine
from orcjit.link.archive import Archive
from orcjit.mcjit import DirectoryObjectCache


@pytest.fixture
def engine():
    with orcjit.MCJITReplacement() as e:
        yield e


def obj(text: str) -> bytes:
    return create_target_machine().emit_object(parse_ir(text))


def test_modules_link_together_at_finalize_in_any_order(engine):
    engine.add_module("declare i32 @later()\ndefine i32 @first() {\n"
                      "  %r = call i32 @later()\n  ret i32 %r\n}\n")
    engine.add_module("define i32 @later() {\n  ret i32 42\n}\n")
    engine.finalize_object()
    assert engine.run_function("first", "int()") == 42


def test_archive_members_are_linked_on_demand(engine):
    archive = ar({"used.o": obj("define i32 @from_archive() {\n  ret i32 9\n}\n"),
                  "unused.o": obj("define i32 @unused() {\n  ret i32 0\n}\n")})
    assert set(Archive(archive).symbols) == {"from_archive", "unused"}
    engine.add_archive(archive)
    engine.add_module("declare i32 @from_archive()\ndefine i32 @main() {\n"
                      "  %r = call i32 @from_archive()\n  ret i32 %r\n}\n")
    assert engine.run_main(["prog"]) == 9
    assert engine.get_function_address("unused") == 0


def test_object_cache_round_trip(tmp_path):
    module = "define i32 @cached() {\n  ret i32 5\n}\n"
    with orcjit.MCJITReplacement() as first:
        first.set_object_cache(DirectoryObjectCache(tmp_path))
        first.add_module(module, module_id="file:/some/dir/cached.ll")
        assert first.run_function("cached", "int()") == 5
    stored = tmp_path / "some" / "dir" / "cached.o"
    assert stored.is_file()
    with orcjit.MCJITReplacement() as second:
        second.add_object_file(stored)
        assert second.run_function("cached", "int()") == 5


def test_static_destructors_run_on_request():
    log = []
    with orcjit.MCJITReplacement() as engine:
        engine.definitions.define("note", lambda c: log.append(c), "void(int)")
        engine.add_module("""
            declare void @note(i32)
            @llvm.global_ctors = appending global [1 x { i32, ptr, ptr }] [{ i32, ptr, ptr } { i32 65535, ptr @ctor, ptr null }]
            @llvm.global_dtors = appending global [1 x { i32, ptr, ptr }] [{ i32, ptr, ptr } { i32 65535, ptr @dtor, ptr null }]
            define void @ctor() {
              call void @note(i32 1)
              ret void
            }
            define void @dtor() {
              call void @note(i32 2)
              ret void
            }""")
        engine.run_static_constructors_destructors(False)
        assert log == [1]
        engine.run_static_constructors_destructors(True)
        assert log == [1, 2]
    assert log == [1, 2]


def test_global_mapping_and_missing_function(engine):
    engine.add_global_mapping("answer_address", 0x1234)
    engine.add_module("@answer_address = external global i8\n"
                      "define ptr @where() {\n  ret ptr @answer_address\n}\n")
    assert engine.run_function("where", "void*()") == 0x1234
    with pytest.raises(orcjit.JITError, match="not defined"):
        engine.run_function("missing", "int()")


def test_archive_with_a_negative_member_size_is_refused():
    good = ar({"m.o": obj("define i32 @m() {\n  ret i32 1\n}\n")})
    bad = good[:8] + good[8:8 + 48] + b"-60       " + good[8 + 58:]
    with pytest.raises(orcjit.InvalidObjectError, match="bad member size"):
        Archive(bad)


def test_objects_and_archives_by_path_and_clear_errors(tmp_path):
    path = tmp_path / "m.o"
    path.write_bytes(obj("define i32 @by_path() {\n  ret i32 3\n}\n"))
    with orcjit.JIT() as jit:
        jit.add_object(path)
        assert jit.lookup("by_path", "int()")() == 3
        with pytest.raises(orcjit.JITError, match="cannot read"):
            jit.add_archive(tmp_path / "missing.a")
        with pytest.raises(orcjit.JITError, match="or a path, not int"):
            jit.add_object(42)  # type: ignore[arg-type]


def test_object_cache_that_cannot_be_written_says_so(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with orcjit.MCJITReplacement() as engine:
        engine.set_object_cache(DirectoryObjectCache(blocker))
        with pytest.raises(orcjit.JITError, match="object cache"):
            engine.add_module("define i32 @f() {\n  ret i32 1\n}\n", module_id="file:/f.ll")


def test_unknown_triple_is_a_configuration_error():
    with pytest.raises(orcjit.ConfigurationError, match="unknown target triple"):
        orcjit.JIT(triple="bogus-none-nothing")
