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
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import _common as C  # noqa: E402

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
    parser.add_argument("--output", default=C.results_path("call_overhead.md"))
    args = parser.parse_args()
    samples = {}
    for name, options in CONFIGS.items():
        samples[name] = ns_per_call(options, args.calls, args.reps)
        print(f"{name:28} median {statistics.median(samples[name]):.2f} ns/call")
    direct = statistics.median(samples["direct (eager JIT)"])
    rows = []
    for name, values in samples.items():
        median = statistics.median(values)
        rows.append([name, f"{median:.2f}", f"{min(values):.2f}", f"{median / direct:.2f}x",
                     f"{median - direct:+.2f}"])
    text = "\n".join([
        "# Call overhead through lazy stubs",
        "",
        C.machine_info_markdown(),
        f"- orcjit {orcjit.__version__}",
        "",
        (f"A JIT'd loop makes {args.calls:,} calls to a non-inlinable `inc`; {args.reps} "
         "repetitions; nanoseconds per call (loop overhead included in every row)."),
        "",
        C.markdown_table(["configuration", "median ns/call", "min ns/call", "vs direct",
                          "extra ns/call"], rows),
    ]) + "\n"
    C.write_report(text, args.output)


if __name__ == "__main__":
    main()
