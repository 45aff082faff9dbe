"""Cost of a call through a lazy stub, per indirection strategy, against a direct call.

A JIT'd loop calls a tiny function N times; the loop itself is JIT'd, so
ctypes is paid once. Caller and callee are separate modules, so no optimiser
sees through the call. Eager: the call is a direct rel32 call. Lazy: every call
goes through the function's stub -- "double" (stub jumps through a pointer)
or "single" (stub is a patched direct jump) -- or, with "patchpoint", the
call itself is rewritten to reach the body. Writes results/call_overhead.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import orcjit  # noqa: E402

# two modules, so that no optimiser sees through the call, in any configuration
CALLEE = """
define i64 @inc(i64 %x) noinline {
  %r = add i64 %x, 1
  ret i64 %r
}
"""
CALLER = """
declare i64 @inc(i64)
define i64 @loop(i64 %n) {
entry:
  br label %body
body:
  %i = phi i64 [0, %entry], [%i1, %body]
  %acc = phi i64 [0, %entry], [%acc1, %body]
  %acc1 = call i64 @inc(i64 %acc)
  %i1 = add i64 %i, 1
  %done = icmp eq i64 %i1, %n
  br i1 %done, label %exit, label %body
exit:
  ret i64 %acc1
}
"""

CONFIGS = {
    "direct (eager JIT)": {},
    "lazy, double indirection": {"lazy": True, "indirection": "double"},
    "lazy, single indirection": {"lazy": True, "indirection": "single"},
    "lazy, patchpoints": {"lazy": True, "indirection": "patchpoint"},
}


def ns_per_call(options: dict, calls: int, reps: int) -> list[float]:
    with orcjit.JIT(opt_level=2, **options) as jit:
        jit.add_ir([CALLEE, CALLER])
        loop = jit.lookup("loop", "int64_t(int64_t)")
        assert loop(1000) == 1000            # compiles everything lazily first
        samples = []
        for _ in range(reps):
            start = time.perf_counter()
            assert loop(calls) == calls
            samples.append((time.perf_counter() - start) / calls * 1e9)
        return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50_000_000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "call_overhead.md"))
    args = parser.parse_args()
    rows = {}
    for name, options in CONFIGS.items():
        rows[name] = ns_per_call(options, args.calls, args.reps)
        print(f"{name:28} median {statistics.median(rows[name]):.2f} ns/call")
    direct = statistics.median(rows["direct (eager JIT)"])
    lines = [
        "# Call overhead through lazy stubs",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"- CPU: {_cpu()}",
        f"- Python {platform.python_version()}, orcjit {orcjit.__version__}",
        "",
        f"A JIT'd loop makes {args.calls:,} calls to a non-inlinable `inc`; {args.reps} "
        "repetitions; nanoseconds per call (loop overhead included in every row).",
        "",
        "| configuration | median ns/call | min ns/call | vs direct | extra ns/call |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, samples in rows.items():
        median = statistics.median(samples)
        lines.append(f"| {name} | {median:.2f} | {min(samples):.2f} | {median / direct:.2f}x "
                     f"| {median - direct:+.2f} |")
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("written to", args.output)


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
