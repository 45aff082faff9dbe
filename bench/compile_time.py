"""Compile time: LLVM IR text -> callable function address.

Compares orcjit with llvmlite's MCJIT and LLJIT at the same optimisation
level, on a small module and on a generated 2,000-function module, and writes
bench/results/compile_time.md.

Every repetition of every engine runs in its own fresh Python process (see
``_common.run_child``): LLVM starts cold each time, as it does for a user's
first compile, and no engine can warm caches or fragment the heap for
another.  Inside the child only "IR text -> address" is timed (plus, in its
own column, creating the engine); interpreter start-up and imports are not.

    python bench/compile_time.py [--opt 2] [--reps 5] [--functions 2000]

Run with PYTHONPATH=src to include orcjit.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import tempfile
import time
from dataclasses import dataclass, field

import _common as C


@dataclass(frozen=True)
class ModuleSpec:
    """A benchmark module: where its IR comes from and how to check it runs."""
    label: str
    symbol: str
    ctype: type          # argument and return type of ``symbol``
    arg: int
    expected: int | None  # None: check that all engines agree instead


def module_specs(n_functions: int) -> dict[str, ModuleSpec]:
    return {
        "small": ModuleSpec("small (3 fns)", C.small_module_entry(),
                            ctypes.c_int32, 20, C.small_module_expected(20)),
        "generated": ModuleSpec(f"generated ({n_functions} fns)", C.GENERATED_ENTRY,
                                ctypes.c_int64, 12345, None),
    }


def module_ir(key: str, n_functions: int) -> str:
    if key == "small":
        return C.small_module_ir()
    return C.generated_module_ir(n_functions)


# ---------------------------------------------------------------------------
# Child: one measurement
# ---------------------------------------------------------------------------

def measure_once(engine_key: str, spec: ModuleSpec, ir_text: str, opt: int) -> dict:
    """Create the engine, then time IR text -> address; call it afterwards."""
    import llvmlite.binding  # noqa: F401  (imports are not part of the timing)
    if engine_key == "orcjit":
        import orcjit  # noqa: F401
    t0 = time.perf_counter()
    engine = C.ENGINES[engine_key](opt)
    t1 = time.perf_counter()
    handle, addresses = engine.add(ir_text, [spec.symbol])
    t2 = time.perf_counter()
    address = addresses[spec.symbol]
    result = None
    if address:
        result = ctypes.CFUNCTYPE(spec.ctype, spec.ctype)(address)(spec.arg)
    engine.remove(handle)
    engine.close()
    return {"engine": engine.name, "setup": t1 - t0, "compile": t2 - t1,
            "phases": engine.last_phases, "result": result}


def child_main(argv: list[str]) -> None:
    engine_key, module_key, ir_path, opt, n_functions = argv
    spec = module_specs(int(n_functions))[module_key]
    with open(ir_path) as f:
        ir_text = f.read()
    C.child_reply(measure_once(engine_key, spec, ir_text, int(opt)))


# ---------------------------------------------------------------------------
# Parent: orchestrate, summarise, write Markdown
# ---------------------------------------------------------------------------

@dataclass
class Cell:
    """All repetitions of one (engine, module) pair."""
    key: str
    engine: str = ""
    compile: C.Samples = field(default_factory=C.Samples)
    setup: C.Samples = field(default_factory=C.Samples)
    phases: dict = field(default_factory=dict)
    results: set = field(default_factory=set)

    def record(self, reply: dict) -> None:
        self.engine = reply["engine"]
        self.compile.add(reply["compile"])
        self.setup.add(reply["setup"])
        self.results.add(reply["result"])
        for phase, seconds in reply["phases"].items():
            self.phases.setdefault(phase, C.Samples()).add(seconds)

    def link_share(self) -> float | None:
        """orcjit's link_seconds / its measured IR->address time (median of
        per-repetition shares); None for engines without that statistic."""
        link = self.phases.get("link")
        if self.key != "orcjit" or link is None:
            return None
        shares = [lk / c for lk, c in zip(link.values, self.compile.values) if c > 0]
        return C.Samples(shares).median


def run_all(engine_keys, module_keys, ir_paths, opt, reps, n_functions) -> dict:
    """Round-robin over repetitions so slow drift hits every engine alike."""
    cells = {(e, m): Cell(e) for m in module_keys for e in engine_keys}
    for rep in range(reps):
        for m in module_keys:
            for e in engine_keys:
                reply = C.run_child(__file__, [e, m, ir_paths[m], str(opt), str(n_functions)])
                cells[e, m].record(reply)
                print(f"rep {rep + 1}/{reps} {m:9} {reply['engine']:24} "
                      f"{reply['compile'] * 1e3:9.1f} ms", flush=True)
    return cells


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def main_table(cells, engine_keys, specs) -> str:
    rows = []
    for m, spec in specs.items():
        base = cells.get(("lljit", m))
        for e in engine_keys:
            cell = cells[e, m]
            ratio = f"{cell.compile.median / base.compile.median:.2f}x" if base else "-"
            share = cell.link_share()
            rows.append([cell.engine, spec.label, ms(cell.compile.median), ms(cell.compile.min),
                         ratio, ms(cell.setup.median),
                         f"{share:.1%}" if share is not None else "-"])
    return C.markdown_table(["engine", "module", "median ms", "min ms", "ratio vs LLJIT",
                             "engine setup ms (median)", "link share"], rows)


def phase_table(cells, engine_keys, specs) -> str:
    rows = []
    for m, spec in specs.items():
        for e in engine_keys:
            cell = cells[e, m]
            parts = ", ".join(f"{p} {ms(s.median)}" for p, s in cell.phases.items())
            rows.append([cell.engine, spec.label, parts])
    return C.markdown_table(["engine", "module", "phases, median ms"], rows)


def result_check(cells, engine_keys, specs) -> list[str]:
    """Every engine must return the same value (and the known one, if any)."""
    lines = []
    for m, spec in specs.items():
        seen = set().union(*(cells[e, m].results for e in engine_keys))
        ok = len(seen) == 1 and (spec.expected is None or seen == {spec.expected})
        verdict = "OK" if ok else "MISMATCH"
        lines.append(f"- {spec.label}: `{spec.symbol}({spec.arg})` returned "
                     f"{sorted(seen, key=str)} in every engine/repetition"
                     + (f" (expected {spec.expected})" if spec.expected is not None else "")
                     + f": {verdict}")
    return lines


def render(cells, engine_keys, specs, args, orcjit_note) -> str:
    return "\n\n".join([
        "# Compile time: IR text to callable address",
        C.machine_info_markdown(),
        f"Optimisation level {args.opt} for every engine (llvmlite new pass manager "
        f"`speed_level={args.opt}` + codegen opt level {args.opt}); {args.reps} repetitions, "
        "each in a fresh process; times are wall-clock from IR text to function address "
        "(engine creation excluded, shown separately). Ratio = median / median of "
        "`llvmlite LLJIT` on the same module. See bench/README.md for what each engine does.",
        main_table(cells, engine_keys, specs),
        "## Phase breakdown\n\n" + phase_table(cells, engine_keys, specs),
        "## Result check\n\n" + "\n".join(result_check(cells, engine_keys, specs)),
        f"## orcjit\n\n{orcjit_note}",
    ]) + "\n"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--opt", type=int, default=2, choices=range(4))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--functions", type=int, default=2000,
                   help="size of the generated module")
    p.add_argument("--output", default=C.results_path("compile_time.md"))
    return p.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    status = C.orcjit_status()
    engine_keys = ["mcjit", "lljit", "lljit-object"] + ([] if status else ["orcjit"])
    orcjit_note = status or "measured (link share = link_seconds from jit.stats() / IR->address time)."
    print(orcjit_note if status else "orcjit importable: measuring it too")
    specs = module_specs(args.functions)
    with tempfile.TemporaryDirectory() as tmp:
        ir_paths = {}
        for m in specs:
            ir_paths[m] = os.path.join(tmp, f"{m}.ll")
            with open(ir_paths[m], "w") as f:
                f.write(module_ir(m, args.functions))
        cells = run_all(engine_keys, list(specs), ir_paths, args.opt, args.reps, args.functions)
    text = render(cells, engine_keys, specs, args, orcjit_note)
    C.write_report(text, args.output)


if __name__ == "__main__":
    C.dispatch(main, child_main)
