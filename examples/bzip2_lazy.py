"""bzip2, compiled function by function on first call by orcjit's lazy JIT.

A real C program (bzip2 1.0.8, 8 source files, ~60-110 functions) run from
LLVM bitcode: each function is compiled only when it is first called, so a
run compiles just what it needs.  By default the lazy JIT is tiered: a first
call compiles the function quickly at -O0, and a background thread
recompiles the functions that ran at full optimisation (--opt-level) and
swaps them in (``--no-tiered``: each function compiled once, at
--opt-level).  The demo

1. fetches bzip2's sources from Debian's source package (``apt-get source``;
   as root it adds a deb-src entry if apt has none) into examples/work/,
2. compiles each program file to bitcode with clang-14, and the same files to
   a native executable (clang-14 -O2), the reference,
3. generates an input (8 MiB by default, deterministic: text, tables and
   random bytes),
4. runs ``bzip2 -c -9`` and ``bzip2 -d -c`` natively and under orcjit's lazy
   JIT, checks that orcjit's compressed output is byte-identical to the
   native one and that the round trip gives the input back, and says how
   many functions were compiled (and, tiered, optimised in the background,
   after waiting for that tier to finish) and where the time went.

Run it from the repository root (first run: ~1 minute for the download and
build; later runs reuse examples/work/):

    python examples/bzip2_lazy.py
    python examples/bzip2_lazy.py --size-mib 1 --bitcode clang-O2 --opt-level 3
    python examples/bzip2_lazy.py --no-tiered

Needs Debian 12 with clang-14 (``apt-get install clang-14``) and orcjit
importable (``pip install -e .``).  bzip2 runs inside a child Python process
(``run_main`` runs ``main`` in the calling process and bzip2 writes to fd 1).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
import _bzip2_build as B  # noqa: E402  (shared with bench/bzip2.py)

DEFAULT_WORK = os.path.join(REPO, "examples", "work", "bzip2")
DEFAULT_BITCODE = "unoptimised"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run bzip2 1.0.8 from LLVM bitcode under orcjit's lazy JIT and check "
                    "its output against a native build.",
        epilog="Bitcode flavours: 'unoptimised' = clang-14 front end only, orcjit optimises "
               "each function (the default); 'clang-O2' = clang-14 optimises each file, "
               "orcjit optimises again. The defaults (tiered, unoptimised bitcode) are the "
               "fastest configuration measured for this demo; see bench/results/bzip2.md.")
    parser.add_argument("--size-mib", type=float, default=8.0,
                        help="input size in MiB (default 8)")
    parser.add_argument("--seed", type=int, default=B.DEFAULT_SEED,
                        help=f"input generator seed (default {B.DEFAULT_SEED})")
    parser.add_argument("--bitcode", choices=sorted(B.BITCODE_MODES), default=DEFAULT_BITCODE,
                        help=f"how clang-14 makes the bitcode (default {DEFAULT_BITCODE})")
    parser.add_argument("--opt-level", type=int, choices=range(4), default=2,
                        help="orcjit's opt_level: IR pipeline and codegen level (tiered: of "
                             "the background recompilation) (default 2)")
    parser.add_argument("--tiered", action=argparse.BooleanOptionalAction, default=True,
                        help="tiered lazy compilation: first calls compile at -O0, a "
                             "background thread recompiles what ran at --opt-level and swaps "
                             "it in (default: on; --no-tiered compiles each function once, "
                             "at --opt-level)")
    parser.add_argument("--work", default=DEFAULT_WORK,
                        help="download/build/output directory (default examples/work/bzip2)")
    return parser.parse_args()


def rel(path: str) -> str:
    """A path as the user would type it from the repository root."""
    return os.path.relpath(path) if path.startswith(os.getcwd()) else path


def check_orcjit() -> None:
    try:
        import orcjit  # noqa: F401
    except ImportError as e:
        raise B.SetupError(f"cannot import orcjit ({e}); install it with: pip install -e .")


def build(args: argparse.Namespace) -> dict:
    """Fetch and build everything the runs need (cached in --work)."""
    B.llvm14_tool("clang")                       # fail early, with the apt-get line
    source_dir = B.fetch_bzip2(args.work, log=lambda m: print("  " + m, flush=True))
    modules = B.compile_bitcode(source_dir, os.path.join(args.work, "bitcode", args.bitcode),
                                args.bitcode)
    native = B.build_native(source_dir, os.path.join(args.work, "bzip2-native"))
    size = int(args.size_mib * (1 << 20))
    data = B.make_input(os.path.join(args.work, f"input-{size}-{args.seed}.bin"), size,
                        args.seed)
    return {"source_dir": source_dir, "modules": modules, "native": native, "input": data,
            "defined": B.count_defined_functions(modules),
            "package": B.debian_package_version(args.work)}


def run_native(native: str, argv: list[str], out: str) -> float:
    """Run the native bzip2 with stdout to ``out``; wall seconds."""
    with open(out, "wb") as f:
        start = time.perf_counter()
        proc = subprocess.run([native, *argv[1:]], stdout=f, stdin=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"native bzip2 {' '.join(argv[1:])} failed ({proc.returncode})")
    return seconds


def run_orcjit(args: argparse.Namespace, built: dict, compress_argv: list[str],
               decompress_argv: list[str], outs: tuple[str, str]) -> tuple[float, dict]:
    """Compress then decompress in one lazily compiling child process."""
    spec = B.jit_spec(built["modules"],
                      [{"argv": compress_argv, "stdout": outs[0]},
                       {"argv": decompress_argv, "stdout": outs[1]}],
                      lazy=True, opt_level=args.opt_level, tiered=args.tiered,
                      wait_at_end=args.tiered,
                      report=os.path.join(args.work, "orcjit-report.json"))
    return B.run_jit_child(spec)


def show_setup(args: argparse.Namespace, built: dict) -> None:
    size = os.path.getsize(built["input"])
    flags = " ".join(B.BITCODE_MODES[args.bitcode])
    print(f"  sources   {rel(built['source_dir'])} (Debian source package "
          f"bzip2 {built['package']}, upstream tarball)")
    print(f"  bitcode   {len(built['modules'])} modules, {built['defined']} functions defined:"
          f" clang-14 {flags}")
    print(f"  native    {rel(built['native'])} (clang-14 -O2, the reference)")
    print(f"  input     {rel(built['input'])}: {size:,} bytes, seed {args.seed}, "
          f"sha256 {B.sha256_of(built['input'])[:16]}...")


def show_runs(rows: list[tuple]) -> None:
    print(f"\n  {'run':<26} {'native':>8} {'orcjit lazy':>12}  {'compiled':>9}  output")
    for label, native_s, jit_s, compiled, verdict in rows:
        print(f"  {label:<26} {native_s:>6.2f} s {jit_s:>10.2f} s  {compiled:>9}  {verdict}")


def show_stats(report: dict, defined: int, wall: float, opt_level: int) -> None:
    tiered = "final" in report          # the child waited for the background tier
    stats = (report["final"] if tiered else report["runs"][-1])["stats"]
    n = stats["functions_compiled"]
    compile_s = stats["total_seconds"]
    run_s = sum(r["seconds"] for r in report["runs"])
    lazy_overhead = stats["overhead_seconds"] - report["after_add"]["overhead_seconds"]
    lazy_n = n - report["after_add"]["functions_compiled"]
    print(f"\norcjit compiled {n} of {defined} defined functions "
          f"({100 * n / max(defined, 1):.0f}%){' at -O0' if tiered else ''}; the others were "
          "never called.")
    phases = (f"parse {stats['parse_seconds']:.2f}, optimise {stats['optimize_seconds']:.2f}, "
              f"codegen {stats['codegen_seconds']:.2f}, link {stats['link_seconds']:.2f}")
    if tiered:
        print(f"  tiered: {stats['functions_optimized']} of them recompiled at "
              f"opt_level={opt_level} in the background and swapped in (after the runs, "
              f"waited {report['final']['wait_seconds']:.2f} s for the last ones)")
        print(f"  JIT time {compile_s:.2f} s, of which {stats['background_seconds']:.2f} s "
              f"recompiling in the background; {phases} s (both tiers)")
    else:
        print(f"  JIT time {compile_s:.2f} s: {phases}, orcjit overhead "
              f"{stats['overhead_seconds']:.2f} s")
        if lazy_n:
            print(f"  orcjit's own overhead per lazily compiled function: "
                  f"{lazy_overhead / lazy_n * 1e6:.0f} us")
    # a second tier recompiles beside the program: only first calls' compilation is in the runs
    first_calls_s = (stats["total_seconds"] - stats["background_seconds"]
                     - report["after_add"]["total_seconds"])
    print(f"  bzip2 ran for {run_s - first_calls_s:.2f} s"
          f" (both runs, compilation on first calls excluded); child process wall time "
          f"{wall:.2f} s (Python start-up and imports included)")


def main() -> int:
    args = parse_args()
    print(f"bzip2 {B.BZIP2_VERSION} under orcjit's lazy JIT "
          f"(bitcode: {args.bitcode}, opt_level={args.opt_level}"
          f"{', tiered' if args.tiered else ''})\n")
    try:
        check_orcjit()
        built = build(args)
    except B.SetupError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    show_setup(args, built)

    work, data = args.work, built["input"]
    native_bz2, native_out = os.path.join(work, "native.bz2"), os.path.join(work, "native.out")
    jit_bz2, jit_out = os.path.join(work, "orcjit.bz2"), os.path.join(work, "orcjit.out")
    compress = ["bzip2", "-c", "-9", data]
    native_c = run_native(built["native"], compress, native_bz2)
    native_d = run_native(built["native"], ["bzip2", "-d", "-c", native_bz2], native_out)
    wall, report = run_orcjit(args, built, compress, ["bzip2", "-d", "-c", jit_bz2],
                              (jit_bz2, jit_out))

    ok_c = B.same_bytes(jit_bz2, native_bz2)
    ok_d = B.same_bytes(jit_out, data)
    runs = report["runs"]
    first = runs[0]["stats"]["functions_compiled"] - report["after_add"]["functions_compiled"]
    second = runs[1]["stats"]["functions_compiled"] - runs[0]["stats"]["functions_compiled"]
    show_runs([
        ("bzip2 -c -9 INPUT", native_c, runs[0]["seconds"], f"{first}",
         f"identical to native ({os.path.getsize(jit_bz2):,} bytes)" if ok_c
         else "DIFFERS from native"),
        ("bzip2 -d -c INPUT.bz2", native_d, runs[1]["seconds"], f"{second} more",
         "identical to the input" if ok_d else "DIFFERS from the input"),
    ])
    print("  (orcjit times include compiling each function on its first call"
          + (", at -O0;\n   the background tier swaps optimised bodies in as they are ready)"
             if args.tiered else ")"))
    show_stats(report, built["defined"], wall, args.opt_level)
    bad = [r["rc"] for r in runs if r["rc"] != 0]
    if not (ok_c and ok_d) or bad:
        print(f"\nFAILED: outputs differ or bzip2 returned {bad}", file=sys.stderr)
        return 1
    print("\nround trip OK: orcjit's bzip2 output is byte-identical to the native build's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
