#!/usr/bin/env python3
"""Run LLVM 14's own lli tests against Debian's lli-14 and against `orcjit`.

    python conformance/run.py [--only lli|orcjit] [--jobs N] [--filter REGEX]

Fetches llvm/test/ExecutionEngine from Debian's llvm-toolchain-14 source
package into conformance/work/ (once; later runs reuse it), runs the tests
whose RUN lines use lli with the real `lit` (PyPI) and Debian's FileCheck,
not, llc..., once with `lli` = Debian's lli-14 and once with `lli` = our
`orcjit` command, and writes conformance/results/executionengine.{md,json}
and conformance/results/lli_options.md. See conformance/README.md.

Needs: Debian 12 with llvm-14 and llvm-14-tools installed, `pip install
lit==14.0.6` in the environment of the Python running this script, and root
(or a deb-src entry plus the source package already fetchable) for the first
fetch.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
DOWNLOAD = WORK / "download"
SRC = WORK / "llvm-14"                 # the extracted llvm/test/ExecutionEngine
TEST_ROOT = SRC / "llvm" / "test"      # lit suite root (lit.site.cfg.py here)
EE = TEST_ROOT / "ExecutionEngine"
STAMP = SRC / "SOURCE_VERSION"
RESULTS = HERE / "results"
CAUSES = HERE / "causes.toml"

SOURCE_PACKAGE = "llvm-toolchain-14"
LLVM_BIN = Path("/usr/lib/llvm-14/bin")
LIT_VERSION = "14.0.6"                 # the lit of the tests' LLVM release
TEST_SUFFIXES = {".ll", ".c", ".test", ".txt", ".s", ".mir", ".yaml"}

# Result codes: lit's, plus "-" for "not run".
GOOD = {"PASS", "XFAIL", "UNSUPPORTED"}


def log(*args):
    print(*args, flush=True)


def sh(argv, **kw):
    return subprocess.run(argv, text=True, capture_output=True, **kw)


# --------------------------------------------------------------------------
# 1. Fetching the tests


def source_version() -> str | None:
    out = sh(["apt-cache", "showsrc", SOURCE_PACKAGE]).stdout
    m = re.search(r"^Version:\s*(\S+)", out, re.M)
    return m.group(1) if m else None


def has_deb_src(etc: Path = Path("/etc")) -> bool:
    """True if any apt source (one-line or deb822) enables deb-src."""
    apt = etc / "apt"
    for f in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*"))]:
        if f.suffix == ".sources":
            if re.search(r"^Types:.*\bdeb-src\b", f.read_text(), re.M | re.I):
                return True
        elif f.name == "sources.list" or f.suffix == ".list":
            if f.exists() and re.search(r"^\s*deb-src\s", f.read_text(), re.M):
                return True
    return False


def add_deb_src(etc: Path = Path("/etc")) -> Path:
    """Add a deb-src twin of the main Debian archive, in its file's format."""
    codename = re.search(r"^VERSION_CODENAME=\"?(\w+)",
                         (etc / "os-release").read_text(), re.M).group(1)
    listd = etc / "apt" / "sources.list.d"
    deb822 = listd / "debian.sources"
    if deb822.exists():
        # Debian 12's layout: copy the main archive's stanza, Types changed.
        stanza = deb822.read_text().strip().split("\n\n")[0]
        target = listd / "deb-src.sources"
        target.write_text(re.sub(r"^Types:.*$", "Types: deb-src", stanza,
                                 flags=re.M) + "\n")
    else:
        target = listd / "deb-src.list"
        target.write_text(f"deb-src http://deb.debian.org/debian {codename} "
                          f"{codename}-updates main\n")
    log(f"added {target}")
    return target


def fetch_sources() -> str:
    """Extract llvm/test/ExecutionEngine into work/llvm-14; return version."""
    if STAMP.exists() and EE.is_dir():
        return STAMP.read_text().strip()
    version = source_version()
    if version is None:
        if not has_deb_src():
            if os.geteuid() != 0:
                sys.exit("no deb-src entry in /etc/apt: add one (see "
                         "conformance/README.md) or run as root")
            add_deb_src()
        log("apt-get update ...")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        version = source_version()
        if version is None:
            sys.exit(f"apt-cache showsrc {SOURCE_PACKAGE}: not found")
    log(f"fetching {SOURCE_PACKAGE} {version} (~130 MB) ...")
    shutil.rmtree(DOWNLOAD, ignore_errors=True)
    DOWNLOAD.mkdir(parents=True)
    subprocess.run(["apt-get", "source", "--download-only", "-qq",
                    f"{SOURCE_PACKAGE}={version}"], cwd=DOWNLOAD, check=True)
    (orig,) = DOWNLOAD.glob("*.orig.tar.*")
    log(f"extracting llvm/test/ExecutionEngine from {orig.name} ...")
    shutil.rmtree(SRC, ignore_errors=True)
    SRC.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(orig), "-C", str(SRC),
                    "--strip-components=1", "--wildcards",
                    "*/llvm/test/ExecutionEngine/*"], check=True)
    shutil.rmtree(DOWNLOAD)
    STAMP.write_text(f"{SOURCE_PACKAGE} {version} ({orig.name})\n")
    return STAMP.read_text().strip()


def write_site_config(source: str):
    """Generate lit.site.cfg.py next to the tests from our template."""
    template = (HERE / "lit.site.cfg.py.in").read_text()
    for key, value in {"LLVM_TOOLS_DIR": str(LLVM_BIN),
                       "SOURCE_VERSION": source,
                       "LIT_CFG": str(HERE / "lit.cfg.py")}.items():
        template = template.replace(f"@{key}@", repr(value))
    (TEST_ROOT / "lit.site.cfg.py").write_text(template)


# --------------------------------------------------------------------------
# 2. What the tests are, read from their RUN lines


@dataclass
class Invocation:
    """One lli command in a RUN line."""
    options: list[tuple[str, str, str | None]]  # (name, spelling, value)
    positional: list[str]                      # input file, program args
    negated: bool                              # run under `not`
    stdin: bool                                # reads the module from stdin


@dataclass
class TestInfo:
    name: str                                  # path relative to llvm/test
    kind: str                                  # jit | interpreter | remote
    invocations: list[Invocation] = field(default_factory=list)


def run_commands(path: Path) -> list[str]:
    """The test's RUN commands, continuation lines joined (as lit does)."""
    commands, pending = [], ""
    for line in path.read_text(errors="replace").splitlines():
        if "RUN:" not in line:
            continue
        part = line.split("RUN:", 1)[1].rstrip()
        if part.endswith("\\"):
            pending += part[:-1] + " "
        else:
            commands.append((pending + part).strip())
            pending = ""
    return commands


class LliHelp:
    """lli-14's option list (--help-list-hidden): names, values, help."""

    def __init__(self, lli: Path):
        out = sh([str(lli), "--help-list-hidden"]).stdout
        self.takes_value: dict[str, bool] = {}
        self.help: dict[str, str] = {}
        for m in re.finditer(r"^  -{1,2}([\w.-]+)(=<[^>]*>)?\s+- (.*)$", out, re.M):
            self.takes_value[m.group(1)] = bool(m.group(2))
            self.help[m.group(1)] = m.group(3).strip()


SEPARATORS = {"|", "||", "&&", ";"}
REDIRECT = re.compile(r"^(\d?>>?|<)")        # <, >, >>, 2>, 2>&1, >/dev/null
SEPARATE_TARGET = {"<", ">", ">>", "2>", "2>>"}  # the file is the next word


def parse_option(words: list[str], j: int, lli_help: LliHelp):
    """Parse the option words[j]; return ((name, spelling, value), next j).

    LLVM's command line takes `-name=value`, `--name=value`, `-name value`
    for options with a value, and `-O0` for the prefix option -O."""
    word = words[j]
    spelling, eq, value = word.partition("=")
    name = spelling.lstrip("-")
    if eq:
        return (name, spelling, value), j + 1
    if name not in lli_help.takes_value and name.startswith("O") and len(name) > 1:
        return ("O", word, name[1:]), j + 1
    if lli_help.takes_value.get(name) and j + 1 < len(words):
        return (name, spelling, words[j + 1]), j + 2
    return (name, spelling, None), j + 1


def parse_invocations(command: str, lli_help: LliHelp) -> list[Invocation]:
    """Every lli command in one RUN command."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    found = []
    for i, word in enumerate(words):
        if word not in ("lli", "%lli"):
            continue
        inv = Invocation([], [], negated=i > 0 and words[i - 1] == "not",
                         stdin=False)
        j = i + 1
        while j < len(words) and words[j] not in SEPARATORS:
            w = words[j]
            if REDIRECT.match(w):
                inv.stdin |= w == "<"
                j += 2 if w in SEPARATE_TARGET else 1
            elif inv.positional or not w.startswith("-") or w == "-":
                inv.positional.append(w)      # input file, then program args
                j += 1
            else:
                option, j = parse_option(words, j, lli_help)
                inv.options.append(option)
        found.append(inv)
    return found


def scan_tests(lli_help: LliHelp) -> list[TestInfo]:
    from lli_test_format import LLI_WORD   # lit.cfg.py's rule for "runs lli"
    tests = []
    for path in sorted(EE.rglob("*")):
        rel = path.relative_to(TEST_ROOT)
        if path.suffix not in TEST_SUFFIXES or "Inputs" in rel.parts \
                or not path.is_file():
            continue
        commands = run_commands(path)
        if not any(LLI_WORD.search(c) for c in commands):
            continue
        info = TestInfo(str(rel), "jit")
        for c in commands:
            info.invocations += parse_invocations(c, lli_help)
        if "remote" in rel.parts:
            info.kind = "remote"
        elif any(name == "force-interpreter" and value not in ("false", "0")
                 for inv in info.invocations for name, _, value in inv.options):
            info.kind = "interpreter"
        tests.append(info)
    return tests


# --------------------------------------------------------------------------
# 3. Running lit


@dataclass
class Configuration:
    name: str       # key in the results: "lli" or "orcjit"
    label: str      # column title
    command: str    # what `lli` / `%lli` become


def probe(command: str) -> tuple[bool, str]:
    """Does `command --version` work? Returns (ok, first/last line)."""
    try:
        r = sh(shlex.split(command) + ["--version"], timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    text = (r.stdout + r.stderr).strip()
    lines = text.splitlines() or [""]
    return r.returncode == 0, lines[0] if r.returncode == 0 else lines[-1]


def run_lit(cfg: Configuration, jobs: int, filter_re: str | None,
            timeout: int) -> dict[str, dict]:
    out = WORK / "out" / cfg.name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    argv = [sys.executable, "-c", "import sys, lit.main; sys.argv[0] = 'lit'; sys.exit(lit.main.main())",
            "-v", "-j", str(jobs), "--allow-empty-runs",
            "-D", f"lli={cfg.command}", "-D", f"exec_root={out / 'exec'}",
            "-o", str(out / "lit.json")]
    try:
        import psutil  # noqa: F401  (lit needs it for --timeout)
        argv += ["--timeout", str(timeout)]
    except ImportError:
        log("  (psutil missing: running without a per-test timeout)")
    if filter_re:
        argv += ["--filter", filter_re]
    argv.append(str(EE))
    log(f"[{cfg.label}] lit with lli = {cfg.command}")
    with open(out / "lit.log", "w") as logfile:
        subprocess.run(argv, stdout=logfile, stderr=subprocess.STDOUT)
    if not (out / "lit.json").exists():
        sys.exit(f"lit wrote no results; see {out / 'lit.log'}")
    data = json.loads((out / "lit.json").read_text())
    results = {}
    for t in data["tests"]:
        name = t["name"].split(" :: ", 1)[1]
        entry = {"code": t["code"], "elapsed": round(t["elapsed"] or 0, 3)}
        if t["code"] not in ("PASS", "XFAIL"):
            entry["excerpt"] = excerpt(t["output"])
        results[name] = entry
    return results


def shorten_paths(text: str) -> str:
    for path, short in ((WORK, "work/"), (HERE.parent, ""), (LLVM_BIN, "")):
        text = text.replace(str(path) + "/", short)
    return text


def excerpt(output: str, lines: int = 8, chars: int = 800) -> str:
    """What a failing test printed, without the script, FileCheck's input
    dump and traceback frames; paths shortened."""
    m = re.search(r"Test requires the following unavailable features: (.*)", output)
    if m:
        return "requires " + m.group(1).strip()
    m = re.search(r"Exit Code: (-?\d+)", output)
    kept = [f"exit code {m.group(1)}"] if m else []
    for section in re.findall(r"Command Output \((?:stdout|stderr)\):\n--\n(.*?)\n--\n",
                              output, re.S):
        section = re.sub(r"\nInput file: <stdin>.*?>>>>>>", "", section, flags=re.S)
        frames = False
        for line in section.splitlines():
            if line.startswith("Traceback ("):
                frames = True
                continue
            if frames and (line.startswith(" ") or not line.strip()):
                continue              # a frame, its source line, its ^^^ marks
            frames = False
            if line.strip():
                kept.append(line.rstrip())
    if len(kept) <= 1:                # silent: list the RUN lines instead
        kept.append("(no output; a RUN line exited wrongly, e.g. `not` saw success)")
        kept += re.findall(r"^: 'RUN: at line \d+'; *(.*)$", output, re.M)
    return shorten_paths("\n".join(kept[:lines]))[:chars]


# --------------------------------------------------------------------------
# 4. Results


def load_previous() -> dict:
    path = RESULTS / "executionengine.json"
    return json.loads(path.read_text()) if path.exists() else {}


def load_causes() -> dict[str, str]:
    if not CAUSES.exists():
        return {}
    return tomllib.loads(CAUSES.read_text()).get("causes", {})


def cause_for(test: dict, causes: dict[str, str], meta: dict) -> str:
    name, kind = test["test"], test["kind"]
    if kind == "remote":
        return "remote: later"
    parts = []
    if kind == "interpreter":
        parts.append("interpreter: out of scope")
    lli, orc = test.get("lli", {}), test.get("orcjit", {})
    if name in causes and orc.get("code") not in ("PASS", "XFAIL"):
        parts.append(causes[name])
    elif name not in causes:
        if lli.get("code") == "UNSUPPORTED":
            parts.append(lli.get("excerpt", "unsupported"))
        elif orc.get("code", "-") not in GOOD | {"-"} and kind != "interpreter" \
                and not meta.get("orcjit", {}).get("command_works", True):
            parts.append("orcjit command missing")
    return "; ".join(parts)


def counts(tests: list[dict], key: str) -> Counter:
    return Counter(t[key]["code"] for t in tests
                   if t["kind"] != "remote" and key in t)


def write_results(tests: list[dict], meta: dict):
    RESULTS.mkdir(exist_ok=True)
    causes = load_causes()
    for t in tests:
        t["cause"] = cause_for(t, causes, meta)
    (RESULTS / "executionengine.json").write_text(json.dumps(
        {"meta": meta, "tests": tests}, indent=1, sort_keys=True) + "\n")

    in_process = [t for t in tests if t["kind"] != "remote"]
    interp = [t for t in in_process if t["kind"] == "interpreter"]
    in_scope = [t for t in in_process if t["kind"] == "jit"
                and t.get("lli", {}).get("code") == "PASS"]
    orc_pass = [t for t in in_scope if t.get("orcjit", {}).get("code") == "PASS"]
    codes = ["PASS", "FAIL", "UNSUPPORTED", "XFAIL", "XPASS", "TIMEOUT", "UNRESOLVED"]

    md = ["# LLVM 14 ExecutionEngine tests: lli-14 and orcjit", "",
          "Generated by `python conformance/run.py` (see conformance/README.md);",
          "do not edit: causes of failures go in `conformance/causes.toml`.", "",
          f"Tests: `llvm/test/ExecutionEngine` of Debian's {meta['source']},",
          f"run with lit {meta['lit']} and Debian's FileCheck/not/llc/... from",
          f"`{LLVM_BIN}`.", "",
          f"{len(in_process)} tests run lli in-process ({len(interp)} of them force "
          f"LLVM's interpreter: out of scope for orcjit); "
          f"{len(tests) - len(in_process)} more (MCJIT/remote) need "
          "lli-child-target and are not run yet.", "",
          "| configuration | command | date | " + " | ".join(codes) + " |",
          "|---|---|---|" + "---:|" * len(codes)]
    for key in ("lli", "orcjit"):
        m = meta.get(key)
        if not m:
            continue
        c = counts(tests, key)
        label = "lli-14" if key == "lli" else "orcjit"
        md.append(f"| {label} | `{m['command']}` | {m['date']} | "
                  + " | ".join(str(c.get(code, 0)) for code in codes) + " |")
    md += ["", f"**Goal**: every in-process test that lli-14 passes without the "
               f"interpreter passes through orcjit: **{len(orc_pass)} / "
               f"{len(in_scope)}**.", ""]
    for key in ("lli", "orcjit"):
        m = meta.get(key, {})
        if m.get("filter"):
            md.append(f"- {key}: last run with `--filter {m['filter']}`; other "
                      "tests keep their earlier results.")
        if m.get("version"):
            md.append(f"- `{m['command']} --version`: {m['version']}")
    md += ["", "| test | kind | lli-14 | orcjit | cause |", "|---|---|---|---|---|"]
    for t in tests:
        row = [f"`{t['test'].removeprefix('ExecutionEngine/')}`", t["kind"],
               t.get("lli", {}).get("code", "-"), t.get("orcjit", {}).get("code", "-"),
               t["cause"].replace("|", "\\|").replace("\n", " ")]
        md.append("| " + " | ".join(row) + " |")
    failing = [t for t in tests if t["kind"] == "jit"
               and t.get("orcjit", {}).get("code", "-") not in GOOD | {"-"}]
    if failing:
        md += ["", "## What the failing in-scope tests printed through orcjit", "",
               "Exit code and output of the test's RUN lines, shortened; "
               "`conformance/work/out/orcjit/lit.log` has all of it.", ""]
        for t in failing:
            md += [f"### `{t['test'].removeprefix('ExecutionEngine/')}`", "", "```",
                   t["orcjit"].get("excerpt", "").replace("```", "` ` `"), "```", ""]
    (RESULTS / "executionengine.md").write_text("\n".join(md).rstrip() + "\n")


def write_options_table(tests: list[TestInfo], lli_help: LliHelp):
    """Which lli options the RUN lines use, for whoever writes the CLI."""
    by_option: dict[str, dict] = defaultdict(
        lambda: {"tests": {"jit": set(), "interpreter": set(), "remote": set()},
                 "spellings": set(), "values": set()})
    negated, stdin, prog_args, default_kind = set(), set(), set(), set()
    for t in tests:
        for inv in t.invocations:
            for name, written, value in inv.options:
                o = by_option[name]
                o["tests"][t.kind].add(t.name)
                o["spellings"].add(written)
                if value is not None:
                    o["values"].add(value)
            if t.kind == "remote":
                continue
            if inv.negated:
                negated.add(t.name)
            if inv.stdin or not inv.positional:
                stdin.add(t.name)
            if len(inv.positional) > 1:
                prog_args.add(t.name)
            if t.kind == "jit" and not any(o[0] == "jit-kind" for o in inv.options):
                default_kind.add(t.name)

    def example(o):
        for kind in ("jit", "interpreter", "remote"):
            if o["tests"][kind]:
                return sorted(o["tests"][kind])[0].removeprefix("ExecutionEngine/")

    def short(values):
        vals = sorted(v.replace(str(TEST_ROOT), "") for v in values)
        text = ", ".join(f"`{v}`" for v in vals[:6])
        return text + (f", … ({len(vals)} values)" if len(vals) > 6 else "")

    rows = sorted(by_option.items(), key=lambda kv: (
        -len(kv[1]["tests"]["jit"]), -len(kv[1]["tests"]["interpreter"]),
        -len(kv[1]["tests"]["remote"]), kv[0]))
    md = ["# lli options used by LLVM 14's ExecutionEngine tests", "",
          "Generated by `python conformance/run.py` from the RUN lines of the tests",
          "in `results/executionengine.md`. Counts are tests (not RUN lines):",
          "*jit* = in-process without the interpreter (orcjit's scope), *interp* =",
          "forcing the interpreter, *remote* = MCJIT/remote (later).", "",
          "| option | jit | interp | remote | spellings | values used | example test | lli-14 help |",
          "|---|---:|---:|---:|---|---|---|---|"]
    for name, o in rows:
        n = {k: len(v) for k, v in o["tests"].items()}
        md.append(f"| `-{name}` | {n['jit']} | {n['interpreter']} | {n['remote']} | "
                  + ", ".join(f"`{s}`" for s in sorted(o["spellings"])) + " | "
                  + short(o["values"]) + f" | `{example(o)}` | "
                  + lli_help.help.get(name, "**not an lli-14 option**").replace("|", "\\|")
                  + " |")

    def listing(names):
        names = sorted(n.removeprefix("ExecutionEngine/") for n in names)
        return ", ".join(f"`{n}`" for n in names)

    md += ["", "Other command-line behaviour the in-process tests rely on:", "",
           f"- `not lli ...` (lli must exit non-zero, with a message on stderr): "
           f"{len(negated)} tests: {listing(negated)}",
           f"- module read from stdin (no input file: `lli < %s`, `opt ... | lli`): "
           f"{len(stdin)}: {listing(stdin)}",
           f"- program arguments after the input file: {len(prog_args)}: "
           f"{listing(prog_args)}",
           f"- a *jit* test with an lli command without `-jit-kind` (lli's default "
           f"kind): {len(default_kind)} tests, e.g. {listing(sorted(default_kind)[:5])}",
           "- exit code: lli returns `main`'s return value; RUN lines without "
           "`not` need it to be 0.", ""]
    (RESULTS / "lli_options.md").write_text("\n".join(md) + "\n")


# --------------------------------------------------------------------------


def default_orcjit_command() -> str:
    script = Path(sys.executable).parent / "orcjit"
    return str(script) if script.exists() else f"{sys.executable} -m orcjit"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=["lli", "orcjit"],
                   help="run one configuration; the other keeps its last results")
    p.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 2)
    p.add_argument("--filter", metavar="REGEX",
                   help="run only tests whose name matches (lit --filter)")
    p.add_argument("--timeout", type=int, default=120, help="seconds per test")
    p.add_argument("--lli", default=str(LLVM_BIN / "lli"),
                   help="reference lli (default: %(default)s)")
    p.add_argument("--orcjit", default=default_orcjit_command(),
                   help="our command (default: %(default)s)")
    args = p.parse_args(argv)

    try:
        import lit
    except ImportError:
        sys.exit(f"lit is missing: {sys.executable} -m pip install lit=={LIT_VERSION}")
    if lit.__version__ != LIT_VERSION:
        log(f"note: lit {lit.__version__}; the tests are LLVM {LIT_VERSION}'s")
    for tool in ("lli", "FileCheck", "not", "count", "llc", "llvm-config"):
        if not (LLVM_BIN / tool).exists():
            sys.exit(f"{LLVM_BIN / tool} missing: apt-get install llvm-14 llvm-14-tools")

    source = fetch_sources()
    write_site_config(source)
    lli_help = LliHelp(LLVM_BIN / "lli")
    infos = scan_tests(lli_help)

    previous = load_previous()
    meta = previous.get("meta", {})
    meta.update(source=source, lit=lit.__version__)
    old = {t["test"]: t for t in previous.get("tests", [])}
    tests = []
    for info in infos:
        t = {"test": info.name, "kind": info.kind}
        for key in ("lli", "orcjit"):
            if key in old.get(info.name, {}):
                t[key] = old[info.name][key]
        tests.append(t)

    configs = [Configuration("lli", "lli-14", args.lli),
               Configuration("orcjit", "orcjit", args.orcjit)]
    for cfg in configs:
        if args.only and cfg.name != args.only:
            continue
        works, version = probe(cfg.command)
        if not works:
            log(f"[{cfg.label}] `{cfg.command} --version` fails: {version}")
        results = run_lit(cfg, args.jobs, args.filter, args.timeout)
        if not args.filter:            # a full run replaces older results
            for t in tests:
                t.pop(cfg.name, None)
        for t in tests:
            if t["test"] in results:
                t[cfg.name] = results[t["test"]]
            elif t["kind"] == "remote":
                t[cfg.name] = {"code": "-"}
        meta[cfg.name] = {
            "command": cfg.command.replace(str(HERE.parent) + "/", ""), "command_works": works,
            "version": version if works else f"fails: {version}",
            "date": datetime.date.today().isoformat(), "filter": args.filter,
            "tests_run": len(results)}

    write_results(tests, meta)
    write_options_table(infos, lli_help)

    # Summary
    in_process = [t for t in tests if t["kind"] != "remote"]
    log(f"\n{len(in_process)} in-process lli tests "
        f"({sum(t['kind'] == 'interpreter' for t in in_process)} interpreter), "
        f"{len(tests) - len(in_process)} remote (not run)")
    for key, label in (("lli", "lli-14"), ("orcjit", "orcjit")):
        c = counts(tests, key)
        if c:
            log(f"  {label:7} " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    in_scope = [t for t in in_process if t["kind"] == "jit"
                and t.get("lli", {}).get("code") == "PASS"]
    ok = sum(t.get("orcjit", {}).get("code") == "PASS" for t in in_scope)
    log(f"  goal: orcjit passes {ok} / {len(in_scope)} "
        "(in-process, no interpreter, passing with lli-14)")
    stale = [t["test"] for t in tests if t["test"] in load_causes()
             and t.get("orcjit", {}).get("code") == "PASS"]
    if stale:
        log(f"  passing now, drop from {CAUSES.name}: " + ", ".join(stale))
    log(f"  wrote {RESULTS.relative_to(HERE.parent)}/executionengine.md, "
        "executionengine.json, lli_options.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
