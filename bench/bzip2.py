"""bzip2 1.0.8 run from clang-14 bitcode: orcjit vs lli vs native.

Two questions, one run, results in bench/results/bzip2.md:

(a) time to first output: ``bzip2 -c -9`` of a 1 KiB input, whole-process
    wall time (for orcjit: Python start-up + ``import orcjit`` + JIT + run).
    A user running a small C program through a JIT waits for exactly this.
(b) the full workload: ``bzip2 -c -9`` of an 8 MiB input, then ``bzip2 -d
    -c`` of the result.  Cold: each step a whole process, compilation
    included.  Warm (orcjit only): the same steps run a second time in the
    same process, when every function they need is compiled (tiered: and
    recompiled by the background tier, waited for) -- run time after
    compilation, compared with the native executable.

Engines: orcjit lazy, lazy tiered (first calls compile at -O0, a background
thread recompiles what ran at opt_level 2) and eager (``run_main`` in a
child process; all get the eight per-file bitcode modules in one
``add_ir([...])`` call, as one set), Debian's LLVM 14
``lli -jit-kind=orc-lazy`` and ``-jit-kind=mcjit`` (one module made with
llvm-link-14 from the same bitcode) and the native clang-14 -O2 build.  The
bitcode comes in two flavours (clang optimises, or only the JIT does, see
``_bzip2_build.BITCODE_MODES``).  One more row runs orcjit lazy with
``ir_opt_level=0`` on clang-O2 bitcode: no IR pipeline, codegen at -O2, as
lli does.  A final matrix varies orcjit's opt_level (not tiered) on both
flavours.  Every output is compared byte for byte with the native one.
Sources are fetched and built at run time into bench/work/bzip2/.

    python bench/bzip2.py [--reps 5] [--matrix-reps 3] [--size-mib 8] [--no-matrix]

Takes about 6.5 minutes on 2 cores (first run: plus ~10 s download and build).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

import _bzip2_build as B
import _common as C

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORK = os.path.join(HERE, "work", "bzip2")
FLAVOURS = ("clang-O2", "unoptimised")
NO_IR_OPT_LABEL = "orcjit lazy, no IR opt"   # ir_opt_level=0: codegen only, like lli
TIERED_LABEL = "orcjit lazy, tiered"         # -O0 on first call, opt_level in the background
STAT_PHASES = ("parse", "optimize", "codegen", "link", "overhead")


# ---------------------------------------------------------------------------
# Set-up: sources, bitcode, native build, inputs, reference outputs
# ---------------------------------------------------------------------------

@dataclass
class Setup:
    """Everything the measurements need, built once (cached in bench/work)."""
    source_dir: str
    package: str
    modules: dict            # flavour -> per-file bitcode (as clang wrote it; orcjit)
    linked: dict             # flavour -> llvm-link-14 module (lli)
    defined: dict            # flavour -> functions with a body
    native: str
    lli: str
    small: str               # 1 KiB input
    large: str               # the full-workload input
    small_ref: str           # native outputs
    large_ref: str
    seed: int


def build(size: int, seed: int) -> Setup:
    lli = B.llvm14_tool("lli")
    B.llvm14_tool("llvm-link")
    source_dir = B.fetch_bzip2(WORK)
    modules, linked, defined = {}, {}, {}
    for flavour in FLAVOURS:
        modules[flavour] = B.compile_bitcode(source_dir, os.path.join(WORK, "bitcode", flavour),
                                             flavour)
        linked[flavour] = B.link_bitcode(modules[flavour],
                                         os.path.join(WORK, "bitcode", f"bzip2-{flavour}.bc"))
        defined[flavour] = B.count_defined_functions(modules[flavour])
    native = B.build_native(source_dir, os.path.join(WORK, "bzip2-native"))
    small = B.make_input(os.path.join(WORK, f"input-1024-{seed}.bin"), 1024, seed)
    large = B.make_input(os.path.join(WORK, f"input-{size}-{seed}.bin"), size, seed)
    refs = []
    for data in (small, large):
        ref = data + ".native.bz2"
        run_process([native, "-c", "-9", data], ref)
        run_process([native, "-d", "-c", ref], ref + ".out")
        if not B.same_bytes(ref + ".out", data):
            raise SystemExit(f"native bzip2 does not round-trip {data}: broken build?")
        refs.append(ref)
    return Setup(source_dir, B.debian_package_version(WORK), modules, linked, defined, native,
                 lli, small, large, refs[0], refs[1], seed)


def run_process(cmd: list[str], stdout_path: str) -> float:
    """Run a native or lli bzip2 with stdout to a file; wall seconds."""
    with open(stdout_path, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.PIPE)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                           f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return wall


# ---------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Engine:
    """One way of running bzip2; ``run`` gives whole-process wall time and,
    for orcjit, the child's report (per-run times and stats())."""
    key: str
    label: str
    kind: str                    # "native", "lli" or "orcjit"
    flavour: str | None = None   # bitcode flavour (None: native)
    prefix: tuple = ()           # native / lli command before bzip2's arguments
    lazy: bool = False
    tiered: bool = False
    opt_level: int = 2
    ir_opt_level: int | None = None   # orcjit: None = IR pipeline at opt_level
    modules: tuple = ()

    @property
    def options(self) -> str:
        """orcjit's level options, as passed to ``orcjit.JIT``."""
        if self.ir_opt_level is None:
            return f"opt_level={self.opt_level}"
        return f"opt_level={self.opt_level}, ir_opt_level={self.ir_opt_level}"

    def run(self, runs: list[tuple[list[str], str]], stdout_path: str,
            report: str, wait: tuple[int, ...] = ()) -> tuple[float, dict | None]:
        """``runs``: (bzip2 argv, output file).  Processes run them one
        each; an orcjit child runs all of them in one process, calling
        ``wait_for_optimizations()`` before the runs numbered in ``wait``."""
        if self.kind != "orcjit":
            assert len(runs) == 1
            return run_process([*self.prefix, *runs[0][0][1:]], runs[0][1]), None
        spec = B.jit_spec(list(self.modules),
                          [{"argv": argv, "stdout": out, "wait": i in wait}
                           for i, (argv, out) in enumerate(runs)],
                          lazy=self.lazy, opt_level=self.opt_level, report=report,
                          ir_opt_level=self.ir_opt_level, tiered=self.tiered)
        return B.run_jit_child(spec, stdout_path)

    def command(self, args: str) -> str:
        """The command line, for the report (paths relative to the repo)."""
        if self.kind != "orcjit":
            return " ".join(os.path.relpath(p, REPO) if os.path.isabs(p) and p.startswith(REPO)
                            else p for p in self.prefix) + " " + args
        tiered = ", tiered=True" if self.tiered else ""
        return (f"orcjit.JIT(lazy={self.lazy}{tiered}, {self.options}); "
                f"add_ir([{len(self.modules)} x FILE.bc]) (one module per .c file); "
                f"run_main(['bzip2', {', '.join(repr(a) for a in args.split())}])")


def engines_for(setup: Setup) -> list[Engine]:
    """The main comparison: every engine on both bitcode flavours, and orcjit
    lazy without IR optimisation on clang-O2 bitcode (what lli does).

    lli gets the llvm-link-14 module (it runs one file); every orcjit engine
    gets the per-file modules as one set (see ``_bzip2_build.jit_child``)."""
    engines = [Engine("native", "native clang-14 -O2", "native", prefix=(setup.native,))]
    for flavour in FLAVOURS:
        modules = tuple(setup.modules[flavour])
        for kind in ("orc-lazy", "mcjit"):
            engines.append(Engine(f"lli-{kind}-{flavour}", f"lli -jit-kind={kind}", "lli",
                                  flavour, (setup.lli, f"-jit-kind={kind}",
                                            setup.linked[flavour])))
        engines.append(Engine(f"orcjit-lazy-{flavour}", "orcjit lazy", "orcjit", flavour,
                              lazy=True, modules=modules))
        engines.append(Engine(f"orcjit-lazy-tiered-{flavour}", TIERED_LABEL, "orcjit", flavour,
                              lazy=True, tiered=True, modules=modules))
        if flavour == "clang-O2":
            engines.append(Engine(f"orcjit-lazy-{flavour}-no-ir-opt", NO_IR_OPT_LABEL, "orcjit",
                                  flavour, lazy=True, ir_opt_level=0, modules=modules))
        engines.append(Engine(f"orcjit-eager-{flavour}", "orcjit eager", "orcjit", flavour,
                              lazy=False, modules=modules))
    return engines


def matrix_engines(setup: Setup) -> list[Engine]:
    """orcjit lazy at every opt_level on both flavours."""
    return [Engine(f"orcjit-lazy-{flavour}-O{opt}", "orcjit lazy", "orcjit", flavour,
                   lazy=True, opt_level=opt, modules=tuple(setup.modules[flavour]))
            for flavour in FLAVOURS for opt in range(4)]


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------

@dataclass
class Record:
    """All repetitions of one engine in one measurement."""
    first_output: C.Samples = field(default_factory=C.Samples)
    compress: C.Samples = field(default_factory=C.Samples)
    decompress: C.Samples = field(default_factory=C.Samples)
    total: C.Samples = field(default_factory=C.Samples)
    warm_compress: C.Samples = field(default_factory=C.Samples)
    warm_decompress: C.Samples = field(default_factory=C.Samples)
    warm_total: C.Samples = field(default_factory=C.Samples)
    first_reports: list = field(default_factory=list)
    warm_reports: list = field(default_factory=list)


class Checker:
    """Compares every output with its reference; the report lists failures."""

    def __init__(self):
        self.checked = 0
        self.failures: list[str] = []

    def check(self, what: str, output: str, reference: str) -> None:
        self.checked += 1
        if not B.same_bytes(output, reference):
            self.failures.append(what)
            print(f"  OUTPUT MISMATCH: {what}", flush=True)


def out_path(engine: Engine, name: str) -> str:
    folder = os.path.join(WORK, "out")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"{engine.key}.{name}")


def measure_first_output(engine: Engine, setup: Setup, record: Record, check: Checker) -> float:
    out = out_path(engine, "small.bz2")
    wall, report = engine.run([(["bzip2", "-c", "-9", setup.small], out)], out,
                              out_path(engine, "report.json"))
    check.check(f"{engine.key} 1 KiB compress", out, setup.small_ref)
    record.first_output.add(wall)
    if report:
        record.first_reports.append(report)
    return wall


def measure_full_cold(engine: Engine, setup: Setup, record: Record, check: Checker) -> float:
    """Compress, then decompress, each in its own process."""
    compressed, restored = out_path(engine, "large.bz2"), out_path(engine, "large.out")
    report = out_path(engine, "report.json")
    wall_c, _ = engine.run([(["bzip2", "-c", "-9", setup.large], compressed)], compressed, report)
    wall_d, _ = engine.run([(["bzip2", "-d", "-c", setup.large_ref], restored)], restored, report)
    check.check(f"{engine.key} large compress", compressed, setup.large_ref)
    check.check(f"{engine.key} large decompress", restored, setup.large)
    record.compress.add(wall_c)
    record.decompress.add(wall_d)
    record.total.add(wall_c + wall_d)
    return wall_c + wall_d


def measure_full_warm(engine: Engine, setup: Setup, record: Record, check: Checker) -> float:
    """orcjit only: compress twice, decompress twice, in one process; the
    second of each pair runs fully compiled code (tiered: optimised, the
    child waits for the background tier before it)."""
    outs = [out_path(engine, f"warm{i}") for i in range(4)]
    c = ["bzip2", "-c", "-9", setup.large]
    d = ["bzip2", "-d", "-c", setup.large_ref]
    _, report = engine.run([(c, outs[0]), (c, outs[1]), (d, outs[2]), (d, outs[3])],
                           os.devnull, out_path(engine, "report.json"), wait=(1, 3))
    for i, ref in enumerate((setup.large_ref, setup.large_ref, setup.large, setup.large)):
        check.check(f"{engine.key} warm run {i + 1}", outs[i], ref)
    runs = report["runs"]
    assert all(r["rc"] == 0 for r in runs), runs
    record.warm_compress.add(runs[1]["seconds"])
    record.warm_decompress.add(runs[3]["seconds"])
    record.warm_total.add(runs[1]["seconds"] + runs[3]["seconds"])
    record.warm_reports.append(report)
    return runs[1]["seconds"] + runs[3]["seconds"]


def python_floor(reps: int) -> C.Samples:
    """Wall time of ``python -c 'import orcjit'``: what every orcjit run pays first."""
    samples = C.Samples()
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import orcjit"], check=True)
        samples.add(time.perf_counter() - start)
    return samples


def round_robin(engines: list[Engine], reps: int, steps, setup: Setup, check: Checker,
                records: dict) -> None:
    """Each repetition runs every engine once, so drift hits all alike."""
    for rep in range(reps):
        for engine in engines:
            for name, step in steps:
                if step is measure_full_warm and engine.kind != "orcjit":
                    continue
                seconds = step(engine, setup, records[engine.key], check)
                flavour = engine.flavour or "-"
                levels = engine.options if engine.kind == "orcjit" else "-"
                print(f"rep {rep + 1}/{reps} {name:13} {engine.label:22} {flavour:12}"
                      f" {levels:27} {seconds:8.3f} s", flush=True)


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def s(seconds: float) -> str:
    return f"{seconds:.3f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def compiled_counts(reports: list[dict], key: str = "functions_compiled") -> str:
    """Functions compiled (or with ``key="functions_optimized"``: recompiled
    by the background tier), median over repetitions, by the end of the runs."""
    values = sorted(r["runs"][-1]["stats"][key] for r in reports)
    return str(values[len(values) // 2]) if values else "-"


def tiered_counts(e: Engine, rec: Record) -> str:
    """Tiered only: functions optimised in the background by the end of the
    1 KiB child / of the large-input child, and the time the latter waited
    for the background tier before its warm runs (median)."""
    if not e.tiered:
        return "-"
    waits = C.Samples([sum(run.get("wait_seconds", 0.0) for run in r["runs"])
                       for r in rec.warm_reports])
    return (f"{compiled_counts(rec.first_reports, 'functions_optimized')} / "
            f"{compiled_counts(rec.warm_reports, 'functions_optimized')} "
            f"(waited {waits.median:.2f} s)")


def ours(stats: dict) -> float:
    """orcjit's own Python time in a stats() snapshot: linking and everything
    that is not LLVM's (parse, IR pipeline, codegen)."""
    return stats["link_seconds"] + stats["overhead_seconds"]


def lazy_overhead_us(reports: list[dict]) -> float:
    """orcjit's own time per function compiled on first call, in µs: the
    growth of ours() during the runs divided by the functions compiled during
    the runs (median over repetitions).  The time spent in add_ir (printing
    and cutting the modules) is excluded.  With tiering, a background
    recompilation counts as a compilation too."""
    per_function = []
    for r in reports:
        end, start = r["runs"][-1]["stats"], r["after_add"]
        n = (end["functions_compiled"] + end.get("functions_optimized", 0)
             - start["functions_compiled"] - start.get("functions_optimized", 0))
        if n:
            per_function.append((ours(end) - ours(start)) / n)
    return C.Samples(per_function).median * 1e6 if per_function else float("nan")


def whole_overhead_us(reports: list[dict]) -> float:
    """ours() / functions_compiled at the end (median), µs, add_ir included."""
    values = [ours(r["runs"][-1]["stats"])
              / max(1, r["runs"][-1]["stats"]["functions_compiled"]
                    + r["runs"][-1]["stats"].get("functions_optimized", 0)) for r in reports]
    return C.Samples(values).median * 1e6


def phase_split(reports: list[dict]) -> str:
    """stats() at the end of the child, median of each phase, in ms."""
    end = [r["runs"][-1]["stats"] for r in reports]
    parts = [f"{p} {C.Samples([e[p + '_seconds'] for e in end]).median * 1e3:.0f}"
             for p in STAT_PHASES]
    total = C.Samples([e["total_seconds"] for e in end]).median * 1e3
    return ", ".join(parts) + f" (total {total:.0f})"


def first_output_table(engines, records, setup) -> str:
    rows = []
    for e in engines:
        rec = records[e.key]
        base = records.get(f"lli-orc-lazy-{e.flavour}") if e.flavour else None
        compiled = compiled_counts(rec.first_reports) if e.kind == "orcjit" else "-"
        rows.append([e.label, e.flavour or "-", s(rec.first_output.median),
                     s(rec.first_output.min),
                     ratio(rec.first_output.median, base.first_output.median) if base else "-",
                     f"{compiled} / {setup.defined[e.flavour]}" if e.kind == "orcjit" else "-"])
    return C.markdown_table(["engine", "bitcode", "median s", "min s",
                             "ratio vs lli orc-lazy (same bitcode)",
                             "functions compiled / defined"], rows)


def full_table(engines, records) -> str:
    native = records["native"].total.median
    rows = []
    for e in engines:
        rec = records[e.key]
        warm = (f"{s(rec.warm_total.median)} ({ratio(rec.warm_total.median, native)})"
                if rec.warm_total.values else "-")
        rows.append([e.label, e.flavour or "-", s(rec.compress.median),
                     s(rec.decompress.median), s(rec.total.median), s(rec.total.min),
                     ratio(rec.total.median, native), warm])
    return C.markdown_table(["engine", "bitcode", "compress s", "decompress s",
                             "total s (median)", "total s (min)", "total vs native",
                             "orcjit run time after compilation, s (vs native)"], rows)


def orcjit_table(engines, records, setup) -> str:
    rows = []
    for e in (e for e in engines if e.kind == "orcjit"):
        rec = records[e.key]
        warm = rec.warm_reports
        rows.append([f"{e.label} ({e.options})", e.flavour,
                     f"{compiled_counts(rec.first_reports)} / {setup.defined[e.flavour]}",
                     f"{compiled_counts(warm)} / {setup.defined[e.flavour]}",
                     tiered_counts(e, rec),
                     phase_split(rec.first_reports), phase_split(warm),
                     f"{lazy_overhead_us(warm):.0f}" if e.lazy else "-",
                     f"{whole_overhead_us(warm):.0f}"])
    return C.markdown_table(["JIT", "bitcode", "compiled: 1 KiB compress",
                             "compiled: large compress + decompress",
                             "tiered: optimised in background, 1 KiB / large",
                             "stats() split, 1 KiB child, ms",
                             "stats() split, large-input child, ms",
                             "ours (link + overhead) per lazily compiled fn, µs",
                             "ours / functions_compiled, µs"], rows)


def matrix_table(engines, records, setup) -> str:
    native = records["native"].total.median
    rows = []
    for e in engines:
        rec = records[e.key]
        base = records[f"lli-orc-lazy-{e.flavour}"].first_output.median
        rows.append([e.flavour, e.opt_level, s(rec.first_output.median),
                     ratio(rec.first_output.median, base),
                     compiled_counts(rec.first_reports),
                     s(rec.warm_total.median), ratio(rec.warm_total.median, native),
                     f"{lazy_overhead_us(rec.warm_reports):.0f}"])
    return C.markdown_table(["bitcode", "opt_level", "first output median s",
                             "vs lli orc-lazy (same bitcode)", "compiled (1 KiB)",
                             "run time after compilation s", "vs native",
                             "ours (link + overhead) per lazily compiled fn, µs"], rows)


def goals(engines, records, matrix) -> list[str]:
    lines = []
    native = records["native"].total.median
    lli_o2 = records["lli-orc-lazy-clang-O2"].first_output.median
    jits = [e for e in engines if e.kind == "orcjit"]
    lazy = [e for e in jits if e.lazy]
    first_met, warm_met = [], []          # engines meeting each goal

    def names(met: list[Engine], none: str) -> str:
        return "; ".join(f"{e.label} ({e.flavour})" for e in met) or none

    for e in lazy:
        first = records[e.key].first_output.median
        lli = records[f"lli-orc-lazy-{e.flavour}"].first_output.median
        r = first / lli
        if r <= 1.0:
            first_met.append(e)
        lines.append(f"- lazy time to first output <= 1.0x lli orc-lazy ({e.label}, "
                     f"{e.flavour} bitcode): {first:.3f} s vs {lli:.3f} s = {r:.2f}x "
                     f"(vs lli on clang-O2 bitcode: {first / lli_o2:.2f}x): "
                     f"**{'met' if r <= 1.0 else 'not met'}**")
    lines.append(f"- **first-output goal met by**: {names(first_met, 'no lazy variant')} "
                 f"(of {len(lazy)} lazy rows)")
    for e in jits:
        warm = records[e.key].warm_total.median
        r = warm / native
        if r <= 1.05:
            warm_met.append(e)
        lines.append(f"- run time after compilation within 1.05x of native "
                     f"({e.label}, {e.flavour} bitcode): {warm:.3f} s vs {native:.3f} s "
                     f"= {r:.3f}x: **{'met' if r <= 1.05 else 'not met'}**")
    lines.append(f"- **run-time goal met by**: {names(warm_met, 'no orcjit row')} "
                 f"(of {len(jits)} orcjit rows)")
    lines.append("- **both goals at once**: "
                 + names([e for e in first_met if e in warm_met], "no lazy variant"))
    if matrix:
        both = [f"{e.flavour} O{e.opt_level}" for e in matrix
                if records[e.key].first_output.median
                <= records[f"lli-orc-lazy-{e.flavour}"].first_output.median
                and records[e.key].warm_total.median <= 1.05 * native]
        first_only = [f"{e.flavour} O{e.opt_level}" for e in matrix
                      if records[e.key].first_output.median
                      <= records[f"lli-orc-lazy-{e.flavour}"].first_output.median]
        lines.append(f"- lazy, not tiered, configurations (matrix below) meeting both goals at "
                     f"once: {', '.join(both) or 'none'}; meeting the first-output goal alone: "
                     f"{', '.join(first_only) or 'none'}")
    for e in lazy:
        us = lazy_overhead_us(records[e.key].warm_reports)
        whole = whole_overhead_us(records[e.key].warm_reports)
        lines.append(f"- Python overhead (link + overhead) per lazily compiled function "
                     f"< 100 µs ({e.label}, "
                     f"{e.flavour} bitcode): "
                     f"{us:.0f} µs during the runs, {whole:.0f} µs counting add_ir's share: "
                     f"**{'met' if max(us, whole) < 100 else 'not met'}**")
    return lines


def commands(setup: Setup, engines: list[Engine]) -> list[str]:
    small = os.path.relpath(setup.small, REPO)
    lines = ["Bitcode, per file (`bench/work/bzip2/bitcode/<flavour>/`):", ""]
    for flavour, flags in B.BITCODE_MODES.items():
        lines.append(f"- {flavour}: `clang-14 {' '.join(flags)} FILE.c -o FILE.bc`")
    lines += ["- one module for lli: `llvm-link-14 *.bc -o bzip2-<flavour>.bc`",
              f"- native: `{B.native_command_line(setup.source_dir, 'bzip2-native')}`",
              f"- files: {', '.join(B.PROGRAM_SOURCES)}", "",
              "Runs, shown for the first output with clang-O2 bitcode (unoptimised: the same "
              "with `bitcode/unoptimised/` and `bzip2-unoptimised.bc`; the full workload uses "
              "the large input, and `-d -c INPUT.native.bz2` to decompress):", ""]
    for e in engines:
        if e.flavour in (None, FLAVOURS[0]):
            lines.append(f"- {e.label}: `{e.command(f'-c -9 {small}')}`")
    return lines


def notes() -> list[str]:
    return [
        "- **exit()**: bzip2's `main` returns `exitValue` when everything succeeds; it "
        "calls `exit()` only on errors and for `-h`/`-L`/`--help` (checked in bzip2.c "
        "1.0.8, lines 1780-2040). It re-initialises all its global state on entry "
        "(flags, counters, `outputHandleJustInCase`, its argument list is rebuilt), and "
        "its output is flushed by `fflush` in compressStream/uncompressStream. So calling "
        "`main` a second time in the same process is sound; we check every output, the "
        "second runs' included, byte for byte.",
        "- **run time after compilation**: the time of `run_main` for the second compress and "
        "the second decompress in one orcjit process (everything they call is compiled by "
        "then), compared with the native executable's whole-process wall time (which "
        "includes ~1 ms of exec and page faults the warm run does not pay, and reads the "
        "same page-cached input). Before each of the two, the child calls "
        "`jit.wait_for_optimizations()` (not timed; a no-op unless tiered), so the tiered "
        "rows' warm runs use the bodies recompiled at opt_level 2, not the -O0 ones; the "
        "stats table gives how long that wait took. For the eager JIT the second run is as "
        "good as the first (all compiled at add_ir).",
        "- **time to first output** is the wall time of the whole process, measured by the "
        "parent around `subprocess.run`, output to a file: orcjit's child is "
        "`python bench/_bzip2_build.py run-jit SPEC` (Python start-up, `import orcjit`, "
        "`JIT()`, `add_ir` of every module, `run_main`, writing a small JSON report, exit).",
        "- **What each engine is given**: lli, the llvm-link-14 module (it runs one file). "
        "orcjit, every engine (eager, lazy, tiered), the eight per-file modules, unlinked, "
        "in one `add_ir([...])` call, as one set (bzip2's files call each other in both "
        "directions; clang's same-named private globals, `@.str.N`, stay apart). So eager "
        "orcjit optimises each file on its own, as clang does for the native build (no "
        "LTO); lli does no IR optimisation, so for it the linked module changes nothing "
        "but the number of files.",
        "- lli (LLVM 14) runs no IR optimisation, only codegen at its default -O2: fed "
        "unoptimised bitcode it runs unoptimised code (see its full-workload rows). orcjit "
        "runs its opt_level pipeline on every partition (lazy) or module (eager): on "
        "clang-O2 bitcode that is a second -O2 pass, on unoptimised bitcode the only one "
        "(per function when lazy, so without inlining across functions).",
        f"- **{NO_IR_OPT_LABEL}**: `orcjit.JIT(lazy=True, opt_level=2, ir_opt_level=0)` "
        "on clang-O2 bitcode: the IR pipeline is skipped, codegen runs at -O2, which is "
        "what lli does; the like-for-like comparison with lli on the same bitcode.",
        f"- **{TIERED_LABEL}**: `orcjit.JIT(lazy=True, tiered=True, opt_level=2)`: a "
        "function is compiled on its first call at -O0 (no IR pipeline, FastISel), and a "
        "background thread recompiles each function that ran, 0.1 s later, through the "
        "opt_level 2 IR pipeline and codegen, and swaps the new body in through its stub. "
        "A run shorter than that (the 1 KiB first output) never pays for the second tier; "
        "the cold full-workload rows run on -O0 bodies until the background tier catches "
        "up. \"optimised in background\" is `stats()['functions_optimized']`. stats() counts "
        "the background tier's work in every phase and in `total_seconds`; its overhead "
        "figures divide by both tiers' compilations.",
        "- orcjit generates code for the host CPU (`-mcpu=native` equivalent, small code "
        "model, PIC); native and lli use clang's/LLVM's default x86-64 target.",
    ]


def render(args, setup, engines, matrix, records, floor, check, elapsed) -> str:
    clang = B.tool_version(B.llvm14_tool("clang"))
    lli = B.tool_version(setup.lli)
    parts = [
        "# bzip2 1.0.8 from bitcode: time to first output and full workload",
        C.machine_info_markdown() + f"\n- {clang}; lli: {lli}"
        + f"\n- bzip2 {B.BZIP2_VERSION}: Debian source package {setup.package} (upstream "
          "tarball; fetched at run time)"
        + f"\n- inputs: 1 KiB and {os.path.getsize(setup.large):,} bytes from "
          f"`_bzip2_build.input_bytes(size, seed={setup.seed})` (text, tables, random bytes); "
          f"large input sha256 `{B.sha256_of(setup.large)}`, compresses to "
          f"{os.path.getsize(setup.large_ref):,} bytes"
        + f"\n- {args.reps} repetitions (matrix: "
          f"{'not run' if args.no_matrix else args.matrix_reps}), interleaved round-robin "
          f"across engines; each run a fresh process; whole run took {elapsed / 60:.1f} min",
        "## (a) Time to first output: `bzip2 -c -9` of 1 KiB, whole-process wall time\n\n"
        + first_output_table(engines, records, setup)
        + f"\n\nFloor for any orcjit run: `python -c 'import orcjit'` takes "
          f"{floor.median:.3f} s (median, min {floor.min:.3f}).",
        f"## (b) Full workload: {args.size_mib:g} MiB `bzip2 -c -9`, then `bzip2 -d -c`\n\n"
        "Cold: whole-process wall time, compress + decompress, each a process (compilation "
        "included). Last column: orcjit's `run_main` time for the same two steps run a "
        "second time in the same process, after `wait_for_optimizations()` (see notes).\n\n"
        + full_table(engines, records),
        "## orcjit: functions compiled and where the JIT time went\n\n"
        "`stats()` at the end of the 1 KiB first-output child and of the large-input warm "
        "child (compress x2, decompress x2), median over repetitions. Ours per lazily "
        "compiled function = growth of `link_seconds + overhead_seconds` (orcjit's own "
        "Python: everything but LLVM's parse, IR pipeline and codegen) while bzip2 ran / "
        "functions compiled meanwhile (add_ir excluded); "
        "last column = the same sum / `functions_compiled` with add_ir's share "
        "(printing and cutting the modules) included. Tiered rows: functions compiled = "
        "first-tier (-O0) compilations; every phase and the total include the background "
        "tier's work (see notes).\n\n"
        + orcjit_table(engines, records, setup),
        "## Goals\n\n" + "\n".join(goals(engines, records, matrix)),
    ]
    if matrix:
        parts.append("## orcjit lazy: bitcode flavour x opt_level\n\n"
                     + matrix_table(matrix, records, setup))
    parts += ["## Commands\n\n" + "\n".join(commands(setup, engines)),
              "## Notes\n\n" + "\n".join(notes()),
              f"## Output check\n\n{check.checked} outputs compared byte for byte with the "
              "native build's (compressed) or the input (decompressed): "
              + ("all identical." if not check.failures
                 else "**MISMATCHES**: " + ", ".join(check.failures))]
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5, help="repetitions of the main comparison")
    p.add_argument("--matrix-reps", type=int, default=3,
                   help="repetitions of the flavour x opt_level matrix")
    p.add_argument("--no-matrix", action="store_true", help="skip the matrix")
    p.add_argument("--size-mib", type=float, default=8.0, help="full-workload input size")
    p.add_argument("--seed", type=int, default=B.DEFAULT_SEED)
    p.add_argument("--output", default=C.results_path("bzip2.md"))
    return p.parse_args(argv)


def main(argv) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    status = C.orcjit_status()
    if status:
        print(f"error: {status}", file=sys.stderr)
        return 2
    try:
        setup = build(int(args.size_mib * (1 << 20)), args.seed)
    except B.SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    engines = engines_for(setup)
    matrix = [] if args.no_matrix else [
        e for e in matrix_engines(setup) if e.opt_level != 2]   # O2 is in the main table
    records = {e.key: Record() for e in engines + matrix}
    check = Checker()
    round_robin(engines, args.reps, [("first output", measure_first_output),
                                     ("full (cold)", measure_full_cold),
                                     ("full (warm)", measure_full_warm)],
                setup, check, records)
    if matrix:
        round_robin(matrix, args.matrix_reps, [("first output", measure_first_output),
                                               ("full (warm)", measure_full_warm)],
                    setup, check, records)
        # the matrix table shows O2 from the main comparison alongside
        matrix = sorted(matrix + [e for e in engines if e.kind == "orcjit" and e.lazy
                                  and e.ir_opt_level is None and not e.tiered],
                        key=lambda e: (FLAVOURS.index(e.flavour), e.opt_level))
    floor = python_floor(args.reps)
    text = render(args, setup, engines, matrix, records, floor, check,
                  time.perf_counter() - started)
    with open(args.output, "w") as f:
        f.write(text)
    print(text)
    print(f"written to {args.output}")
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
