"""The lli-compatible command: option parsing, running programs, error exits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orcjit.cli import UsageError, main, parse_args

HELLO = r"""
@.s = private constant [13 x i8] c"hello %s %d\0A\00"
declare i32 @printf(ptr, ...)
define i32 @main(i32 %argc, ptr %argv) {
  %p = getelementptr ptr, ptr %argv, i32 1
  %a = load ptr, ptr %p
  call i32 (ptr, ...) @printf(ptr @.s, ptr %a, i32 %argc)
  ret i32 7
}
"""


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    path = tmp_path / "hello.ll"
    path.write_text(HELLO)
    return path


def orcjit(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orcjit", *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_parse_lli_style_options():
    inv = parse_args(["-jit-kind=orc-lazy", "--extra-module", "a.ll", "-extra-module=b.ll",
                      "-O3", "-mattr=+avx2,-sse4a", "-no-process-syms", "-fake-argv0=prog",
                      "input.bc", "-program-option", "x"])
    assert inv.input == "input.bc"
    assert inv.program_args == ["-program-option", "x"]
    assert inv.opt_level == 3
    assert inv.options["jit-kind"] == "orc-lazy"
    assert inv.options["extra-module"] == ["a.ll", "b.ll"]
    assert inv.options["mattr"] == ["+avx2", "-sse4a"]
    assert inv.options["no-process-syms"] is True
    assert inv.options["fake-argv0"] == "prog"


@pytest.mark.parametrize("argv, message", [
    (["-bogus", "x.ll"], "Unknown command line argument '-bogus'"),
    (["-jit-kind=fast", "x.ll"], "Cannot find option named 'fast'"),
    (["-extra-module"], "requires a value"),
    (["-no-process-syms=maybe", "x.ll"], "invalid value for boolean"),
    (["-compile-threads=two", "x.ll"], "invalid for integer"),
])
def test_bad_command_lines(argv, message):
    with pytest.raises(UsageError, match=message):
        parse_args(argv)


@pytest.mark.parametrize("kind", ["mcjit", "orc", "orc-lazy"])
def test_runs_main_with_arguments_and_returns_its_status(hello, kind):
    result = orcjit(f"-jit-kind={kind}", str(hello), "world", "x")
    assert result.returncode == 7
    assert result.stdout == "hello world 3\n"


def test_input_from_stdin():
    result = orcjit("-", "z", stdin=HELLO)
    assert (result.returncode, result.stdout) == (7, "hello z 2\n")


def test_entry_function_and_fake_argv0(tmp_path):
    path = tmp_path / "entry.ll"
    path.write_text("""
        declare i32 @puts(ptr)
        define i32 @other(i32 %argc, ptr %argv) {
          %a = load ptr, ptr %argv
          call i32 @puts(ptr %a)
          ret i32 3
        }""")
    result = orcjit("-entry-function=other", "-fake-argv0=pretend", str(path))
    assert (result.returncode, result.stdout) == (3, "pretend\n")


def test_extra_module_object_and_archive(tmp_path):
    from orcjit.frontends.ir import parse_ir
    from orcjit.layers import create_target_machine

    main = tmp_path / "main.ll"
    main.write_text("""
        declare i32 @from_module()
        declare i32 @from_object()
        declare i32 @from_archive()
        define i32 @main() {
          %a = call i32 @from_module()
          %b = call i32 @from_object()
          %c = call i32 @from_archive()
          %s = add i32 %a, %b
          %t = add i32 %s, %c
          ret i32 %t
        }""")
    (tmp_path / "extra.ll").write_text("define i32 @from_module() {\n  ret i32 1\n}\n")
    tm = create_target_machine()
    obj = tm.emit_object(parse_ir("define i32 @from_object() {\n  ret i32 10\n}\n"))
    (tmp_path / "extra.o").write_bytes(obj)
    member = tm.emit_object(parse_ir("define i32 @from_archive() {\n  ret i32 100\n}\n"))
    unused = tm.emit_object(parse_ir("define i32 @never_linked() {\n  ret i32 0\n}\n"))
    (tmp_path / "m.o").write_bytes(member)
    (tmp_path / "u.o").write_bytes(unused)
    subprocess.run(["/usr/lib/llvm-14/bin/llvm-ar", "rcs", str(tmp_path / "lib.a"),
                    str(tmp_path / "m.o"), str(tmp_path / "u.o")], check=True) \
        if Path("/usr/lib/llvm-14/bin/llvm-ar").exists() else pytest.skip("no llvm-ar")
    result = orcjit(f"-extra-module={tmp_path / 'extra.ll'}",
                    f"-extra-object={tmp_path / 'extra.o'}",
                    f"-extra-archive={tmp_path / 'lib.a'}", str(main))
    assert result.returncode == 111, result.stderr


@pytest.mark.parametrize("args, message", [
    (["-bogus"], "Unknown command line argument '-bogus'"),
    (["/nonexistent.ll"], "Could not open input file"),
    (["-force-interpreter"], "no interpreter"),
    (["-remote-mcjit"], "not supported yet"),
    (["-jit-kind=orc-lazy", "-per-module-lazy", "-tiered"], "without -per-module-lazy"),
    (["-mtriple=bogus-none-nothing"], "unknown target triple"),
])
def test_error_exits_are_one_line_and_nonzero(hello, args, message):
    extra = [] if args[-1].endswith(".ll") else [str(hello)]
    result = orcjit(*args, *extra)
    assert result.returncode == 1
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_invalid_ir_names_the_file(tmp_path):
    bad = tmp_path / "bad.ll"
    bad.write_text("define i32 @main( {\n")
    result = orcjit(str(bad))
    assert result.returncode == 1 and f"{bad}:" in result.stderr


def test_help_and_version(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "-jit-kind" in out and "-extra-archive" in out
    assert main(["--version"]) == 0


def test_each_extra_module_joins_the_jitdylib_named_before_it():
    argv = ["-extra-module=a.ll", "-jd=one", "-extra-module=b.ll", "-jd", "two",
            "-extra-module", "c.ll"]
    expected = [("a.ll", ""), ("b.ll", "one"), ("c.ll", "two")]
    assert parse_args([*argv, "main.ll", "arg"]).extra_modules == expected
    assert parse_args(argv).extra_modules == expected          # main module on stdin
