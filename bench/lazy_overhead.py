"""Per-function cost of lazy compilation, split into LLVM's work and ours.

A module of N small functions is added to a lazy JIT; each function is then
called once, so each is compiled on that first call. From jit.stats():
LLVM's work (parse, optimise, codegen) and ours (partitioning, linking,
bookkeeping -- everything else), in microseconds per function. Writes
results/lazy_overhead.md.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import orcjit  # noqa: E402


def module(n: int) -> str:
    parts = ["define internal i64 @seven() {\n  ret i64 7\n}"]
    for i in range(n):
        parts.append(f"define i64 @f{i}(i64 %x) {{\n  %m = mul i64 %x, {i}\n"
                     f"  %s = call i64 @seven()\n  %r = add i64 %m, %s\n  ret i64 %r\n}}")
    return "\n".join(parts)


def measure(n: int, opt_level: int, indirection: str) -> dict[str, float]:
    with orcjit.LazyJIT(opt_level=opt_level, indirection=indirection) as jit:
        jit.add_ir(module(n))
        prototype = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)
        for i in range(n):
            assert prototype(jit.address(f"f{i}"))(2) == 2 * i + 7
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "lazy_overhead.md"))
    args = parser.parse_args()
    rows = []
    for opt_level in (0, 2):
        for indirection in ("double", "single", "patchpoint"):
            runs = [measure(args.functions, opt_level, indirection) for _ in range(args.reps)]
            median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            rows.append((opt_level, indirection, median))
            print(opt_level, indirection, {k: round(v, 1) for k, v in median.items()})
    lines = [
        "# Lazy compilation: cost per function",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"- Python {platform.python_version()}, orcjit {orcjit.__version__}",
        "",
        f"{args.functions} small functions (plus a shared helper), each compiled on its first "
        f"call; median of {args.reps} runs; microseconds per compiled function.",
        "LLVM = parse + optimise + codegen; ours = linking + everything else (partitioning, "
        "stubs, callbacks, bookkeeping). Goal for ours: under 100 µs.",
        "",
        "| -O | indirection | total µs | LLVM µs (codegen) | ours µs | of which link µs | other µs |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for opt_level, indirection, m in rows:
        lines.append(f"| {opt_level} | {indirection} | {m['total_us']:.0f} | {m['llvm_us']:.0f} "
                     f"({m['codegen_us']:.0f}) | {m['ours_us']:.0f} | {m['link_us']:.0f} "
                     f"| {m['other_us']:.0f} |")
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("written to", args.output)


if __name__ == "__main__":
    main()
