"""Memory over add/call/remove cycles: does removing code give memory back?

Each cycle adds a small module (unique symbol names, see
``_common.small_module_ir``), looks its ``int(int)`` entry up, calls it and
checks the result, then removes the module.  Resident set size is read after
cycle 100 (once allocator pools, caches and lazily initialised LLVM state
have settled) and at the end; the difference is what the engine keeps per
cycle for good.  Writes bench/results/memory_cycles.md.

Each engine runs in its own child process, so one engine's heap cannot hide
or inflate another's.

    python bench/memory_cycles.py [--cycles 10000] [--opt 2]

Run with PYTHONPATH=src to include orcjit.
"""

from __future__ import annotations

import argparse
import gc
import time

import _common as C

WARMUP_CYCLES = 100
TREND_POINTS = 10
DEFAULT_ENGINES = ["baseline", "mcjit", "mcjit-fresh", "lljit", "orcjit"]


# ---------------------------------------------------------------------------
# Child: the cycles
# ---------------------------------------------------------------------------

def one_cycle(engine: C.Engine, i: int) -> None:
    """Add, look up, call (and check), remove.  Each cycle's module has its
    own names and its own constant, so a stale or wrong lookup fails loudly."""
    tag, k, x = str(i), i % 1000, i % 50
    name = C.small_module_entry(tag)
    handle, addresses = engine.add(C.small_module_ir(tag, k), [name])
    if engine.executes:
        fn = engine.int_int(handle, addresses, name)
        got, expected = fn(x), C.small_module_expected(x, k)
        if got != expected:
            raise AssertionError(f"cycle {i}: {name}({x}) = {got}, expected {expected}")
        del fn
    engine.remove(handle)


def settled_rss() -> int:
    """RSS after a full collection, so Python garbage is not counted."""
    gc.collect()
    return C.rss_bytes()


def run_cycles(engine_key: str, cycles: int, opt: int) -> dict:
    engine = C.ENGINES[engine_key](opt)
    every = max(1, cycles // TREND_POINTS)
    trend, rss_warm, t_warm = [], None, None
    for i in range(cycles):
        one_cycle(engine, i)
        done = i + 1
        if done == WARMUP_CYCLES:
            rss_warm, t_warm = settled_rss(), time.perf_counter()
        if done % every == 0:
            trend.append((done, settled_rss()))
    t_end = time.perf_counter()
    rss_end = settled_rss()
    measured = cycles - WARMUP_CYCLES
    engine.close()
    return {"key": engine_key, "engine": engine.name, "cycles": cycles, "rss_warm": rss_warm,
            "rss_end": rss_end, "trend": trend,
            "seconds_per_cycle": (t_end - t_warm) / measured if measured > 0 else None}


def child_main(argv: list[str]) -> None:
    engine_key, cycles, opt = argv
    C.child_reply(run_cycles(engine_key, int(cycles), int(opt)))


# ---------------------------------------------------------------------------
# Parent
# ---------------------------------------------------------------------------

def mb(n: int) -> str:
    return f"{n / 2**20:.1f}"


def growth_per_cycle(reply: dict) -> float:
    return (reply["rss_end"] - reply["rss_warm"]) / (reply["cycles"] - WARMUP_CYCLES)


def summary_table(replies: list[dict]) -> str:
    """The brief's columns, plus growth per cycle and, when the no-JIT
    baseline ran, growth per cycle beyond it (what the JIT itself keeps)."""
    base = next((r for r in replies if r["key"] == "baseline"), None)
    rows = []
    for r in replies:
        per_cycle = growth_per_cycle(r)
        beyond = "-" if base is None or r is base else \
            f"{(per_cycle - growth_per_cycle(base)) / 1024:.2f}"
        rows.append([r["engine"], r["cycles"], mb(r["rss_warm"]), mb(r["rss_end"]),
                     mb(r["rss_end"] - r["rss_warm"]), f"{per_cycle / 1024:.2f}", beyond,
                     f"{r['seconds_per_cycle'] * 1e6:.0f}"])
    return C.markdown_table(
        ["engine", "cycles", f"RSS after {WARMUP_CYCLES} (MB)", "RSS at end (MB)",
         "growth (MB)", "growth per cycle (KB)", "beyond baseline (KB/cycle)",
         "µs per cycle"], rows)


def trend_table(replies: list[dict]) -> str:
    """RSS at regular intervals: a leak is a slope, a cache is a plateau."""
    points = [c for c, _ in replies[0]["trend"]]
    rows = [[r["engine"]] + [mb(rss) for _, rss in r["trend"]] for r in replies]
    return C.markdown_table(["engine \\ after cycle"] + [str(p) for p in points], rows)


def render(replies, args, orcjit_note) -> str:
    return "\n\n".join([
        "# Memory over add / call / remove cycles",
        C.machine_info_markdown(),
        f"{args.cycles} cycles per engine, each engine in its own process, optimisation "
        f"level {args.opt}. Growth = RSS at end - RSS after cycle {WARMUP_CYCLES}; "
        f"µs per cycle is measured over cycles {WARMUP_CYCLES + 1}..{args.cycles} "
        "(add + look up + call + remove, including parse/optimise/codegen of a "
        "3-function module). See bench/README.md for what each engine does on remove.",
        summary_table(replies),
        "## RSS trend (MB)\n\n" + trend_table(replies),
        f"## orcjit\n\n{orcjit_note}",
    ]) + "\n"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=10_000)
    p.add_argument("--opt", type=int, default=2, choices=range(4))
    p.add_argument("--engines", nargs="+", default=DEFAULT_ENGINES, choices=list(C.ENGINES))
    p.add_argument("--output", default=C.results_path("memory_cycles.md"))
    args = p.parse_args(argv)
    if args.cycles <= WARMUP_CYCLES:
        p.error(f"--cycles must be more than {WARMUP_CYCLES}")
    return args


def main(argv):
    args = parse_args(argv)
    status = C.orcjit_status()
    engine_keys = [e for e in args.engines if not (status and e == "orcjit")]
    orcjit_note = status or "measured: jit.add_ir / jit.lookup(name, 'int(int)') / jit.remove(h)."
    print(orcjit_note if status else "orcjit importable: measuring it too")
    replies = []
    for e in engine_keys:
        t0 = time.perf_counter()
        replies.append(C.run_child(__file__, [e, str(args.cycles), str(args.opt)]))
        r = replies[-1]
        print(f"{r['engine']:34} growth {mb(r['rss_end'] - r['rss_warm'])} MB "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    text = render(replies, args, orcjit_note)
    C.write_report(text, args.output)


if __name__ == "__main__":
    C.dispatch(main, child_main)
