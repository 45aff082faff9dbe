"""Per-function cost of lazy compilation, split into LLVM's work and ours.

A module of N small functions is added to a lazy JIT; each function is then
called once, so each is compiled on that first call. From jit.stats():
LLVM's work (parse, optimise, codegen) and ours (partitioning, linking,
bookkeeping -- everything else), in microseconds per function. Code
generation runs on the native worker (another core) where there is one;
rows with it off show what that saves.

A second figure runs our part with warm caches: the same lazy stack (no IR
pipeline) is driven once to record each partition's object, then again with
a compiler that replays the recorded objects, so no code generation runs
between our steps. The difference from the first figure is what LLVM's code
generation costs our Python by evicting it from the CPU caches. Writes
results/lazy_overhead.md.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import _common as C  # noqa: E402

import orcjit  # noqa: E402
from orcjit.runtime.native_worker import wanted as native_worker_wanted


module = C.lazy_module


INDIRECTION_NAMES = ("double", "single", "patchpoint")
#: every f<i> of module(n): int64_t(int64_t)
PROTOTYPE = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)


def call_each_once(n: int, address) -> None:
    """Call f0..f<n-1> through their addresses (each compiles on this first call)."""
    for i in range(n):
        assert PROTOTYPE(address(f"f{i}"))(2) == 2 * i + 7


def measure(n: int, opt_level: int, indirection: str,
            native_worker: bool | None = None) -> dict[str, float]:
    with orcjit.LazyJIT(opt_level=opt_level, indirection=indirection,
                        native_worker=native_worker) as jit:
        jit.add_ir(module(n))
        call_each_once(n, jit.address)
        s = jit.stats()
    count = s["functions_compiled"]
    ours = s["link_seconds"] + s["overhead_seconds"]
    return {
        "functions": count,
        "total_us": s["total_seconds"] / count * 1e6,
        "llvm_us": (s["parse_seconds"] + s["optimize_seconds"] + s["codegen_seconds"]) / count * 1e6,
        "codegen_us": s["codegen_seconds"] / count * 1e6,
        "link_us": s["link_seconds"] / count * 1e6,
        "other_us": s["overhead_seconds"] / count * 1e6,
        "ours_us": ours / count * 1e6,
    }


def lazy_stack_run(n: int, indirection: str, wrap_compiler) -> dict[str, float]:
    """Call each function of module(n) once through a CompileOnDemandLayer put
    straight on the compiler (no IR pipeline); our own time per function."""
    stack, lazy = C.lazy_stack(module(n), wrap_compiler, indirection)
    try:
        call_each_once(n, lazy.get_symbol_address)
        count = lazy.functions_compiled
        llvm = lazy.parse_seconds + stack.compiler.codegen_seconds
        ours = lazy.compile_seconds - llvm
        return {"ours_us": ours / count * 1e6, "link_us": stack.linker.link_seconds / count * 1e6}
    finally:
        lazy.close()
        stack.close()


def measure_replayed(n: int, indirection: str) -> dict[str, float]:
    """Our time per function with code generation replaced by recorded objects."""
    recorded: dict[str, bytes] = {}
    lazy_stack_run(n, indirection, C.recording_compiler(recorded))
    return lazy_stack_run(n, indirection, C.replaying_compiler(recorded))


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over repeated runs."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--output", default=C.results_path("lazy_overhead.md"))
    args = parser.parse_args()
    rows = []
    worker = "on" if native_worker_wanted() else "off (one CPU, or turned off)"
    configurations = [(opt_level, indirection, None) for opt_level in (0, 2)
                      for indirection in INDIRECTION_NAMES]
    if native_worker_wanted():       # the same run, code generated on the calling thread
        configurations += [(0, "double", False), (2, "double", False)]
    for opt_level, indirection, native_worker in configurations:
        median = median_of([measure(args.functions, opt_level, indirection, native_worker)
                            for _ in range(args.reps)])
        rows.append([opt_level, indirection, worker if native_worker is None else "off",
                     *(f"{median[k]:.0f}" for k in (
                         "total_us", "llvm_us", "codegen_us", "ours_us", "link_us", "other_us")),
                     f"{median['total_us'] - median['codegen_us']:.0f}"])
        print(opt_level, indirection, native_worker, {k: round(v, 1) for k, v in median.items()})
    replayed = []
    for indirection in INDIRECTION_NAMES:
        median = median_of([measure_replayed(args.functions, indirection)
                            for _ in range(args.reps)])
        replayed.append([indirection, f"{median['ours_us']:.0f}", f"{median['link_us']:.0f}"])
        print("replayed", indirection, {k: round(v, 1) for k, v in median.items()})
    text = "\n".join([
        "# Lazy compilation: cost per function",
        "",
        C.machine_info_markdown(),
        f"- orcjit {orcjit.__version__}",
        "",
        (f"{args.functions} small functions (plus a shared helper), each compiled on its first "
         f"call; median of {args.reps} runs; microseconds per compiled function. "
         "LLVM = parse + optimise + codegen; ours = linking + everything else (partitioning, "
         "stubs, callbacks, bookkeeping). Goal for ours: under 100 µs. \"all but codegen\" "
         "adds LLVM's parse and IR pipeline to ours. \"native worker\": code generation on "
         "the native worker thread (another core, the default where there is one) or on the "
         "calling thread (off)."),
        "",
        C.markdown_table(["-O", "indirection", "native worker", "total µs", "LLVM µs",
                          "of which codegen µs", "ours µs", "of which link µs", "other µs",
                          "all but codegen µs"], rows),
        "",
        ("The same work of ours with warm caches: the lazy stack without IR pipeline, "
         "its objects replayed from a recorded run, so no code generation runs between "
         "our steps (LLVM still parses each partition)."),
        "",
        C.markdown_table(["indirection", "ours µs, warm caches", "of which link µs"], replayed),
    ]) + "\n"
    C.write_report(text, args.output)


if __name__ == "__main__":
    main()
