"""Instructions per lazily compiled function, counted by valgrind.

``lazy_overhead.py`` reports microseconds, and on a shared VM those move by
20-30% from one run to the next and more from one day to the next: a change
of 5% in our own work cannot be seen in them. This counts instructions
instead (valgrind's callgrind), which repeat exactly for the same code and
input whatever else the machine does.

What is counted: a lazy stack compiles each of N functions on its first
call, with code generation replaced by objects recorded from a real run of
the same revision (as lazy_overhead's warm-cache figure). Two shapes: the
small functions of ``lazy_module`` (lazy_overhead's), and ``lazy_module_large``'s,
shaped like real C functions (~80 relocations, a GOT and a PLT each). The
count is everything but LLVM's IR parser, which is reported apart
(callgrind's inclusive count of ``llvm::parseAssemblyString``): our Python --
partition, link, stubs, bookkeeping -- and llvmlite's wrapping of each
partition module. Runs with two values of N are subtracted, so start-up and
the module's own set-up cancel out.

``--against REV`` counts another revision of orcjit the same way, from a
temporary git worktree, in the same run: a deterministic A/B.
Writes results/lazy_instructions.md.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import _common as C

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: shape -> (module generator, functions in it, the runs call its first FEW
#: and MANY, check f<i>(2) -> expected result or None)
SHAPES: dict[str, tuple[Callable[[int], str], int, int, int, Callable[[int], int] | None]] = {
    "small": (C.lazy_module, 1300, 200, 1200, lambda i: 2 * i + 7),
    "large": (C.lazy_module_large, 260, 40, 240, None),
}
_LLVM_PARSE = "llvm::parseAssemblyString("


# -- in a child: record, or replay ------------------------------------------------------

def _lazy_stack(src: str, shape: str, wrap_compiler):
    """The lazy layer of C.lazy_stack, with ``src``'s orcjit and ``shape``'s module."""
    sys.path.insert(0, src)
    generate, functions = SHAPES[shape][:2]
    return C.lazy_stack(generate(functions), wrap_compiler)[1]


def _call_first(lazy, shape: str, n: int) -> None:
    import ctypes
    prototype = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)
    expected = SHAPES[shape][4]
    for i in range(n):
        result = prototype(lazy.get_symbol_address(f"f{i}"))(2)
        assert expected is None or result == expected(i)


def child_record(src: str, shape: str, objects: str) -> None:
    recorded: dict[str, bytes] = {}
    _call_first(_lazy_stack(src, shape, C.recording_compiler(recorded)), shape, SHAPES[shape][1])
    Path(objects).write_bytes(pickle.dumps(recorded))
    os._exit(0)       # (no teardown: nothing of it is measured)


def child_replay(src: str, shape: str, objects: str, n: int) -> None:
    recorded = pickle.loads(Path(objects).read_bytes())
    _call_first(_lazy_stack(src, shape, C.replaying_compiler(recorded)), shape, n)
    sys.stdout.flush()
    os._exit(0)


# -- the parent ---------------------------------------------------------------------------

def callgrind(args: list[str], out: Path) -> tuple[int, int]:
    """(instructions of the whole run, of them in LLVM's IR parser)."""
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *args],
                   check=True, capture_output=True)
    report = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(out)],
                            check=True, capture_output=True, text=True).stdout
    total = parse = 0
    for line in report.splitlines():
        match = re.match(r"\s*([\d,]+) .*?(PROGRAM TOTALS|\S*$)", line)
        if not match:
            continue
        count = int(match.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in line:
            total = count
        elif _LLVM_PARSE in line and not parse:
            parse = count
    return total, parse


def measure(src: Path, shape: str, workdir: Path) -> dict[str, float]:
    """Instructions per lazily compiled function of ``shape`` for the orcjit in ``src``."""
    objects = workdir / f"objects.{shape}.pickle"
    me = [sys.executable, str(Path(__file__).resolve()), "--shape", shape]
    subprocess.run([*me, "--child", "record", "--src", str(src), "--objects", str(objects)],
                   check=True)
    _generate, _functions, few, many, _check = SHAPES[shape]
    counts = {}
    for n in (few, many):
        counts[n] = callgrind([*me, "--child", "replay", "--src", str(src),
                               "--objects", str(objects), "--calls", str(n)],
                              workdir / f"callgrind.{shape}.{n}")
    per = many - few
    total = (counts[many][0] - counts[few][0]) / per
    parse = (counts[many][1] - counts[few][1]) / per
    return {"total": total, "llvm_parse": parse, "ours": total - parse}


def revision_of(tree: Path) -> str:
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], check=False,
                          capture_output=True, text=True).stdout.strip() or "(working tree)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="another git revision to count the same way")
    parser.add_argument("--output", default=C.results_path("lazy_instructions.md"))
    parser.add_argument("--shape", choices=sorted(SHAPES), help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=["record", "replay"], help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--objects", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "record":
        return child_record(args.src, args.shape, args.objects)
    if args.child == "replay":
        return child_replay(args.src, args.shape, args.objects, args.calls)
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        sys.exit("valgrind is needed: apt-get install -y valgrind")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trees = [("this tree", ROOT, revision_of(ROOT))]
        if args.against:
            other = Path(tmp) / "against"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q",
                            str(other), args.against], check=True)
            trees.append((args.against, other, revision_of(other)))
        try:
            for shape in SHAPES:
                for label, tree, revision in trees:
                    workdir = Path(tmp) / f"work-{len(rows)}"
                    workdir.mkdir()
                    counts = measure(tree / "src", shape, workdir)
                    rows.append((shape, label, revision, counts))
                    print(shape, label, revision, {k: round(v) for k, v in counts.items()})
        finally:
            if args.against:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(Path(tmp) / "against")], check=False)
    this_tree = {shape: c["ours"] for shape, label, _r, c in rows if label == "this tree"}
    table = [[shape, label, revision, f"{c['total'] / 1000:.0f}k",
              f"{c['llvm_parse'] / 1000:.0f}k", f"{c['ours'] / 1000:.0f}k",
              f"{c['ours'] / this_tree[shape]:.2f}"]
             for shape, label, revision, c in rows]
    text = "\n".join([
        "# Lazy compilation: instructions per function",
        "",
        C.machine_info_markdown(),
        "",
        ("Instructions (valgrind callgrind) per function compiled on its first call, code "
         "generation replaced by objects recorded from the same revision; two runs with "
         "different numbers of first calls subtracted (small: 1,200 - 200 of 1,300 "
         "functions of lazy_overhead's module; large: 240 - 40 of 260 functions shaped like "
         "real C ones, ~80 relocations each). \"ours\" is everything but LLVM's IR parser: "
         "orcjit's Python and llvmlite's wrapping of each partition module. Counts repeat "
         "exactly for the same code, whatever the machine's speed: this is the figure to "
         "compare revisions with."),
        "",
        C.markdown_table(["functions", "orcjit", "revision", "total", "LLVM's parse", "ours",
                          "ours vs this tree"], table),
    ]) + "\n"
    C.write_report(text, args.output)


if __name__ == "__main__":
    main()
