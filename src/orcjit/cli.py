"""``orcjit``: an lli-compatible command.

    orcjit [options] <input .ll/.bc | -> [program arguments...]

Options follow LLVM's command-line conventions, as lli's do: one or two
dashes, ``-opt=value`` or ``-opt value``, booleans as ``-flag`` or
``-flag=true|false``; the first argument that is not an option is the
input, and everything after it goes to the program. The exit status is
main's return value. ``orcjit --help`` lists every option.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .errors import InvalidIRError, JITError, UnresolvedSymbolsError

PROG = "orcjit"


@dataclass(frozen=True)
class Option:
    kind: str            # "bool", "str", "list", "int"
    help: str
    default: Any = None
    choices: tuple[str, ...] = ()


OPTIONS: dict[str, Option] = {
    "jit-kind": Option("str", "which JIT: mcjit (MCJITReplacement), orc (eager), "
                       "orc-lazy (per function)", "mcjit", ("mcjit", "orc", "orc-lazy")),
    "entry-function": Option("str", "function to run instead of main", "main"),
    "extra-module": Option("list", "another IR/bitcode module to add (repeatable)"),
    "extra-object": Option("list", "a relocatable object file to add (repeatable)"),
    "extra-archive": Option("list", "a static archive; members are linked on demand"),
    "mtriple": Option("str", "target triple (default: the module's or the host's)"),
    "march": Option("str", "target architecture (x86-64 only today)"),
    "mcpu": Option("str", "target CPU (default: the host's)"),
    "mattr": Option("list", "target features, e.g. +avx2,-sse4.1"),
    "relocation-model": Option("str", "relocation model", "pic",
                               ("default", "static", "pic", "dynamic-no-pic")),
    "code-model": Option("str", "code model", "small",
                         ("tiny", "small", "kernel", "medium", "large")),
    "load": Option("list", "load a shared library whose symbols JIT'd code may use"),
    "dlopen": Option("list", "load a shared library whose symbols JIT'd code may use"),
    "fake-argv0": Option("str", "argv[0] for the program (default: the input's name)"),
    "disable-lazy-compilation": Option("bool", "accepted; MCJIT mode is never lazy", False),
    "no-process-syms": Option("bool", "do not resolve symbols from this process", False),
    "per-module-lazy": Option("bool", "with orc-lazy: defer whole modules, not functions", False),
    "force-interpreter": Option("bool", "use LLVM's interpreter (not supported)", False),
    "enable-cache-manager": Option("bool", "cache compiled objects (see -object-cache-dir)", False),
    "object-cache-dir": Option("str", "where -enable-cache-manager keeps objects", ""),
    "jd": Option("list", "accepted: one JITDylib holds every module here"),
    "compile-threads": Option("int", "accepted; compilation happens on calling threads", 0),
    "thread-entry": Option("list", "run this function on a new thread before main (repeatable)"),
    "lljit-platform": Option("str", "accepted; orcjit has one platform", ""),
    "orc-lazy-debug": Option("str", "print what orc-lazy compiles: funcs-to-stdout, "
                             "mods-to-stdout", "no-dump",
                             ("no-dump", "funcs-to-stdout", "mods-to-stdout", "mods-to-disk")),
    "emulated-tls": Option("bool", "emulated thread-local storage (not supported: "
                           "llvmlite cannot switch it on)", False),
    "jit-linker": Option("str", "accepted: orcjit always links with its own linker", "default",
                         ("default", "rtdyld", "jitlink")),
    "generate": Option("list", "built-in functions JIT'd code may call: "
                       "__dump_jit_debug_descriptor, __dump_jit_debug_objects"),
    "indirection": Option("str", "orc-lazy stubs: double, single or patchpoint", "double",
                          ("double", "single", "patchpoint")),
    "tiered": Option("bool", "orc-lazy: first calls compile at -O0, functions that ran are "
                     "recompiled at -O<level> in the background (orcjit's own option)", False),
    "remote-mcjit": Option("bool", "run in a child process (not supported yet)", False),
    "mcjit-remote-process": Option("str", "child executor for -remote-mcjit (not supported yet)"),
    "stats": Option("bool", "print where the time went to stderr at exit", False),
}
OPT_LEVELS = ("0", "1", "2", "3")


class UsageError(Exception):
    """A bad command line: one line for the user, exit status 1."""


@dataclass
class Invocation:
    options: dict[str, Any]
    opt_level: int
    input: str
    program_args: list[str]
    #: each -extra-module with the JITDylib of the last -jd before it ("" if none; lli's rule)
    extra_modules: list[tuple[str, str]] = field(default_factory=list)


def parse_args(argv: Sequence[str]) -> Invocation:
    options: dict[str, Any] = {name: ([] if opt.kind == "list" else opt.default)
                               for name, opt in OPTIONS.items()}
    opt_level = 2
    extra_modules: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-" or not arg.startswith("-"):
            return Invocation(options, opt_level, arg, list(argv[i + 1:]), extra_modules)
        if arg == "--":
            if i + 1 >= len(argv):
                break
            return Invocation(options, opt_level, argv[i + 1], list(argv[i + 2:]),
                              extra_modules)
        body = arg.lstrip("-")
        if body in ("O" + level for level in OPT_LEVELS):
            opt_level = int(body[1])
            i += 1
            continue
        name, has_value, value = body.partition("=")
        if name == "O" and value in OPT_LEVELS:
            opt_level = int(value)
            i += 1
            continue
        option = OPTIONS.get(name)
        if option is None:
            raise UsageError(f"Unknown command line argument '{arg}'.  Try: '{PROG} --help'")
        if option.kind == "bool":
            if has_value and value not in ("true", "false", "1", "0"):
                raise UsageError(f"for the -{name} option: '{value}' is invalid value for "
                                 "boolean argument! Try 0 or 1")
            options[name] = not has_value or value in ("true", "1")
            i += 1
            continue
        if not has_value:
            if i + 1 >= len(argv):
                raise UsageError(f"for the -{name} option: requires a value!")
            value = argv[i + 1]
            i += 1
        i += 1
        if option.choices and value not in option.choices:
            raise UsageError(f"for the -{name} option: Cannot find option named '{value}'!")
        if option.kind == "list":
            options[name].extend(value.split(",") if name == "mattr" else [value])
            if name == "extra-module":
                extra_modules.append((value, options["jd"][-1] if options["jd"] else ""))
        elif option.kind == "int":
            try:
                options[name] = int(value)
            except ValueError:
                raise UsageError(f"for the -{name} option: '{value}' value invalid for "
                                 "integer argument!") from None
        else:
            options[name] = value
    return Invocation(options, opt_level, "-", [], extra_modules)  # like lli: module on stdin


def usage() -> str:
    lines = [f"OVERVIEW: {PROG} -- an lli-compatible JIT built from orcjit's layers", "",
             f"USAGE: {PROG} [options] <input bitcode or IR | -> <program arguments>...", "",
             "OPTIONS:",
             f"  {'-O0 .. -O3':34} optimisation level (default -O2: codegen; the IR is "
             "not optimised, as with lli)"]
    for name, opt in OPTIONS.items():
        value = "" if opt.kind == "bool" else "=<value>"
        extra = f" ({'|'.join(opt.choices)})" if opt.choices else ""
        lines.append(f"  {'-' + name + value:34} {opt.help}{extra}")
    lines += [f"  {'--help':34} this text", f"  {'--version':34} print the version"]
    return "\n".join(lines)


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"{path}: error: Could not open input file: {e.strerror}") from None


def _display_name(path: str) -> str:
    return "<stdin>" if path == "-" else path


def _features(options: dict[str, Any]) -> str | None:
    return ",".join(options["mattr"]) if options["mattr"] else None


def _engine(inv: Invocation) -> Any:
    """Build the JIT the options ask for."""
    from .jits import JIT
    from .mcjit import DirectoryObjectCache, MCJITReplacement

    o = inv.options
    if o["march"] and o["march"] not in ("x86-64", "x86_64"):
        raise UsageError(f"-march={o['march']}: only x86-64 is supported")
    common = dict(opt_level=inv.opt_level, ir_opt_level=0, triple=o["mtriple"], cpu=o["mcpu"],
                  features=_features(o), code_model=_code_model(o["code-model"]),
                  reloc_model=_reloc_model(o["relocation-model"]),
                  process_symbols=not o["no-process-syms"])
    if o["jit-kind"] == "mcjit":
        engine = MCJITReplacement(**common)
        if o["enable-cache-manager"]:
            engine.set_object_cache(DirectoryObjectCache(o["object-cache-dir"] or "."))
        return engine
    lazy: bool | str = False
    if o["jit-kind"] == "orc-lazy":
        lazy = "module" if o["per-module-lazy"] else True
    if o["tiered"] and lazy is not True:
        raise UsageError("-tiered needs -jit-kind=orc-lazy (without -per-module-lazy)")
    return JIT(lazy=lazy, indirection=o["indirection"], tiered=bool(o["tiered"]), **common)


def _code_model(name: str) -> str:
    return {"tiny": "small"}.get(name, name)


def _reloc_model(name: str) -> str:
    return {"dynamic-no-pic": "dynamicnopic"}.get(name, name)


def run(inv: Invocation) -> int:
    o = inv.options
    if o["force-interpreter"]:
        raise UsageError("-force-interpreter: orcjit has no interpreter; it always compiles")
    if o["remote-mcjit"] or o["mcjit-remote-process"]:
        raise UsageError("-remote-mcjit: remote execution is not supported yet")
    if o["emulated-tls"]:
        raise UsageError("-emulated-tls: not supported (llvmlite cannot switch emulated TLS on)")
    unknown = [name for name in o["generate"] if name not in _BUILTINS]
    if unknown:
        raise UsageError(f"-generate={unknown[0]}: no such built-in function "
                         f"(known: {', '.join(_BUILTINS)})")
    source = _read_input(inv.input)
    engine = _Engine(inv)
    for name in o["generate"]:
        engine.define(name, _BUILTINS[name], "void(void*)")
    try:
        for library in o["load"] + o["dlopen"]:
            engine.jit.load_library(library)
        modules = [(_display_name(path), _read_input(path), dylib)
                   for path, dylib in inv.extra_modules]
        main_module = (_display_name(inv.input), source, "main" if o["jd"] else "")
        # MCJIT links at finalize: lli's order, main first. The other JITs link
        # (or emit globals) as modules arrive: what main needs comes first.
        order = [main_module, *modules] if engine.mcjit else [*modules, main_module]
        for path, text, dylib in order:
            engine.add_module(path, text, dylib)
        for path in o["extra-object"]:
            engine.add_object(path, _read_input(path))
        for path in o["extra-archive"]:
            engine.add_archive(path, _read_input(path))
        threads = [_start_thread(engine, name) for name in o["thread-entry"]]
        result = engine.jit.run_main([o["fake-argv0"] or inv.input, *inv.program_args],
                                     entry=o["entry-function"])
        for thread in threads:
            thread.join()
        if o["stats"] and engine.mcjit is None:
            print(f"{PROG}: stats: {engine.jit.stats()}", file=sys.stderr)
        return int(result)
    finally:
        engine.jit.close()           # static destructors run here, as lli runs them


class _Engine:
    """The JIT the options ask for, behind one way of adding code to it."""

    def __init__(self, inv: Invocation):
        from .mcjit import MCJITReplacement

        self.jit = _engine(inv)
        self.mcjit = self.jit if isinstance(self.jit, MCJITReplacement) else None
        self.cache_ids = bool(self.mcjit and inv.options["enable-cache-manager"])
        if self.mcjit is None and self.jit.lazy is not None:
            self.jit.lazy.callbacks.on_failure = _exit_after_failed_compile
        dump = _DUMPS.get(inv.options["orc-lazy-debug"])
        if dump is not None and self.mcjit is None:
            if self.jit.lazy is not None:
                self.jit.lazy.on_partition = dump
            if self.jit.deferred is not None:
                self.jit.deferred.on_emit = dump

    def add_module(self, path: str, source: bytes, dylib: str = "") -> None:
        try:
            if self.mcjit is not None:
                module_id = "file:" + path if self.cache_ids and path != "<stdin>" else None
                self.mcjit.add_module(source, module_id)
            else:
                self.jit.add_ir(source, name=path, dylib=dylib)
        except InvalidIRError as e:
            raise InvalidIRError(str(e).replace("<string>", path)) from None

    def add_object(self, path: str, data: bytes) -> None:
        if self.mcjit is not None:
            self.mcjit.add_object_file(data)
        else:
            self.jit.add_object(data, name=path)

    def add_archive(self, path: str, data: bytes) -> None:
        self.jit.add_archive(data, path) if self.mcjit is None else self.mcjit.add_archive(data)

    def define(self, name: str, function: Callable[..., Any], signature: str) -> None:
        target = self.mcjit.definitions if self.mcjit is not None else self.jit
        target.define(name, function, signature)

    def address(self, name: str) -> int:
        if self.mcjit is not None:
            return self.mcjit.get_function_address(name)
        return int(self.jit.address(name))


def _exit_after_failed_compile(error: BaseException) -> None:
    """A lazy compile failed inside the program: exit 1 (as lli does), not crash."""
    import os

    _flush_c_stdio()
    os._exit(1)


@functools.cache
def _libc_stdout() -> tuple[Any, Any]:
    """libc and its ``stdout``, looked up once (dumps may come per compiled function)."""
    import ctypes

    libc = ctypes.CDLL(None)
    return libc, ctypes.c_void_p.in_dll(libc, "stdout")


def _c_stdout(data: str | bytes) -> None:
    """Write through C's stdout, so dumps interleave with JIT'd printf in order."""
    libc, stdout = _libc_stdout()
    raw = data.encode() if isinstance(data, str) else data
    libc.fwrite(raw, 1, len(raw), stdout)


def _dump_functions(module: Any, functions: list[str]) -> None:
    _c_stdout("[ " + "".join(f"{name} " for name in functions) + "]\n")


def _dump_module(module: Any, functions: list[str]) -> None:
    _c_stdout(f"----- Module Start -----\n{module}----- Module End -----\n")


def _dump_module_to_disk(module: Any, functions: list[str]) -> None:
    with open(module.name.replace("/", "_") + ".ll", "w") as f:
        f.write(str(module))


def _dump_debug_descriptor(address: int) -> None:
    from .runtime.debugger import format_descriptor

    _c_stdout(format_descriptor(address))


def _dump_debug_objects(address: int) -> None:
    from .runtime.debugger import debug_objects

    _c_stdout(debug_objects(address))


#: lli's -generate built-ins (test helpers reading the GDB JIT descriptor)
_BUILTINS: dict[str, Callable[[int], None]] = {
    "__dump_jit_debug_descriptor": _dump_debug_descriptor,
    "__dump_jit_debug_objects": _dump_debug_objects,
}

_DUMPS: dict[str, Callable[[Any, list[str]], None]] = {
    "funcs-to-stdout": _dump_functions,
    "mods-to-stdout": _dump_module,
    "mods-to-disk": _dump_module_to_disk,
}


def _start_thread(engine: _Engine, name: str) -> threading.Thread:
    """lli's -thread-entry: run ``void name(void)`` on its own thread beside main."""
    from .signatures import to_prototype

    address = engine.address(name)
    if not address:
        raise UsageError(f"-thread-entry: no function named '{name}'")
    entry: Callable[[], None] = to_prototype("void()")(address)
    thread = threading.Thread(target=entry, name=f"thread-entry {name}")
    thread.start()
    return thread


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("--help", "-help", "-h") for a in args[:_first_positional(args)]):
        print(usage())
        return 0
    if any(a in ("--version", "-version") for a in args[:_first_positional(args)]):
        print(f"{PROG} {__version__}")
        return 0
    try:
        inv = parse_args(args)
        status = run(inv)
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except UnresolvedSymbolsError as e:
        print(f"{PROG}: JIT session error: {e}", file=sys.stderr)
        return 1
    except JITError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    _flush_c_stdio()
    return status & 0xFF          # as the shell sees main's return value


def _first_positional(args: list[str]) -> int:
    for i, arg in enumerate(args):
        if arg == "-" or not arg.startswith("-"):
            return i
    return len(args)


def _flush_c_stdio() -> None:
    """JIT'd code writes through C stdio; flush it before Python's own output."""
    _libc_stdout()[0].fflush(None)


def entry_point() -> None:
    try:
        sys.exit(main())
    except BrokenPipeError:          # e.g. `orcjit --help | head`
        sys.exit(1)


if __name__ == "__main__":
    entry_point()
