"""Fetch, build and run bzip2 1.0.8 for the bzip2 demo and benchmark.

Shared by ``examples/bzip2_lazy.py`` (the newcomer's demo) and
``bench/bzip2.py`` (the benchmark), so that both build bzip2 the same way:

* the sources come from Debian's source package at run time (``apt-get
  source --download-only bzip2``; nothing third-party is committed).  We use
  the upstream ``bzip2_1.0.8.orig.tar.gz`` inside it; Debian's patches change
  documentation, scripts, the Makefile and make ``-V``/``-L`` exit, nothing
  on the compress/decompress paths;
* the eight C files of the ``bzip2`` program are compiled by clang-14 to one
  bitcode module each (two flavours, see :data:`BITCODE_MODES`), linked into
  one module with llvm-link-14 for lli (which runs one file; orcjit takes the
  eight modules as one set, see :func:`jit_child`), and to a native -O2
  executable, the reference for output and speed;
* the input is generated deterministically (:func:`make_input`).

This file is also the child process that runs bzip2 under orcjit
(``python bench/_bzip2_build.py run-jit SPEC_JSON``, see :func:`jit_child`):
``run_main`` runs bzip2 in the calling process, where it writes to fd 1 and
may call ``exit()``, so every orcjit run gets a process of its own.  Only
cheap modules are imported at the top, because that child's start-up is part
of the "time to first output" measurement.
"""

from __future__ import annotations

import json
import os
import sys
import time

BZIP2_VERSION = "1.0.8"
PROGRAM_SOURCES = ("bzip2.c", "blocksort.c", "huffman.c", "crctable.c", "randtable.c",
                   "compress.c", "decompress.c", "bzlib.c")
CFLAGS = ("-O2", "-g0", "-D_FILE_OFFSET_BITS=64")

#: How the bitcode is made.  ``clang-O2``: clang runs its whole -O2 pipeline
#: per file (inlining included), the JIT gets optimised IR.  ``unoptimised``:
#: clang's front end only (-O2 so that functions are not marked optnone), the
#: JIT's own pipeline does all the optimisation, one function at a time when
#: lazy (so no inlining across functions).
BITCODE_MODES = {
    "clang-O2": ("-c", "-emit-llvm", *CFLAGS),
    "unoptimised": ("-c", "-emit-llvm", *CFLAGS, "-Xclang", "-disable-llvm-passes"),
}

HERE = os.path.dirname(os.path.abspath(__file__))


class SetupError(RuntimeError):
    """Something outside orcjit is missing; the message says how to get it."""


def log_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------

LLVM14_PACKAGES = {"clang": "clang-14", "llvm-link": "llvm-14", "lli": "llvm-14-runtime",
                   "llvm-dis": "llvm-14"}


def llvm14_tool(name: str) -> str:
    """Path of Debian's LLVM 14 ``name`` (clang, llvm-link, lli), or SetupError."""
    for path in (f"/usr/bin/{name}-14", f"/usr/lib/llvm-14/bin/{name}"):
        if os.access(path, os.X_OK):
            return path
    package = LLVM14_PACKAGES.get(name, "llvm-14")
    raise SetupError(f"{name}-14 not found (looked in /usr/bin and /usr/lib/llvm-14/bin).\n"
                     f"Install it with:  apt-get update && apt-get install -y {package}")


def tool_version(path: str) -> str:
    """First line of ``path --version`` that names a version."""
    import subprocess
    out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    return next((line.strip() for line in out.splitlines() if "version" in line), out.strip())


def _run(cmd: list[str], what: str, cwd: str | None = None) -> None:
    """Run a build command; on failure raise SetupError with its output."""
    import subprocess
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SetupError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                         f"{proc.stdout}{proc.stderr}".rstrip())


# ---------------------------------------------------------------------------
# Debian source package
# ---------------------------------------------------------------------------

APT_LISTS = ("/etc/apt/sources.list", "/etc/apt/sources.list.d")


def _apt_source_files() -> list[str]:
    files = []
    if os.path.isfile(APT_LISTS[0]):
        files.append(APT_LISTS[0])
    if os.path.isdir(APT_LISTS[1]):
        files += sorted(os.path.join(APT_LISTS[1], f) for f in os.listdir(APT_LISTS[1])
                        if f.endswith((".list", ".sources")))
    return files


def has_deb_src_entry() -> bool:
    """True if apt already knows a deb-src line (one-line or deb822 format)."""
    for path in _apt_source_files():
        with open(path, errors="replace") as f:
            for line in f:
                words = line.split()
                if not words or words[0].startswith("#"):
                    continue
                if words[0] == "deb-src":                               # one-line format
                    return True
                if words[0] == "Types:" and "deb-src" in words[1:]:     # deb822 format
                    return True
    return False


def _debian_codename() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("VERSION_CODENAME="):
                    return line.split("=", 1)[1].strip().strip('"') or "bookworm"
    except OSError:
        pass
    return "bookworm"


def add_deb_src_entry(log=log_to_stderr) -> str:
    """Add Debian's main archive as a deb-src source, in the format this
    machine uses (deb822 ``.sources`` files on Debian 12, one-line
    ``.list`` files on older set-ups), and return the file written."""
    if os.geteuid() != 0:
        raise SetupError("apt has no deb-src entry and we are not root: add one, e.g.\n"
                         "  echo 'deb-src http://deb.debian.org/debian bookworm main' "
                         "> /etc/apt/sources.list.d/deb-src.list && apt-get update")
    codename = _debian_codename()
    deb822 = any(p.endswith(".sources") for p in _apt_source_files())
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    if deb822:
        path = "/etc/apt/sources.list.d/deb-src.sources"
        text = (f"Types: deb-src\nURIs: http://deb.debian.org/debian\n"
                f"Suites: {codename} {codename}-updates\nComponents: main\n"
                + (f"Signed-By: {keyring}\n" if os.path.exists(keyring) else ""))
    else:
        path = "/etc/apt/sources.list.d/deb-src.list"
        text = f"deb-src http://deb.debian.org/debian {codename} main\n"
    with open(path, "w") as f:
        f.write(text)
    log(f"added a deb-src entry for Debian {codename} to {path}")
    return path


def _apt_get(args: list[str], cwd: str | None = None):
    import subprocess
    return subprocess.run(["apt-get", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def fetch_bzip2(work: str, log=log_to_stderr) -> str:
    """Download Debian's bzip2 source package into ``work`` (once) and unpack
    the upstream tarball; returns the source directory."""
    import glob
    import shutil
    import tarfile
    source_dir = os.path.join(work, f"bzip2-{BZIP2_VERSION}")
    if all(os.path.exists(os.path.join(source_dir, f)) for f in PROGRAM_SOURCES):
        return source_dir
    if shutil.which("apt-get") is None:
        raise SetupError("apt-get not found: this script fetches bzip2 from Debian's "
                         "source package and needs a Debian (12) machine")
    os.makedirs(work, exist_ok=True)
    tarball = os.path.join(work, f"bzip2_{BZIP2_VERSION}.orig.tar.gz")
    if not os.path.exists(tarball):
        added = False
        if not has_deb_src_entry():
            add_deb_src_entry(log)
            added = True
        update = None
        if added:
            log("apt-get update ...")
            update = _apt_get(["update"])
        log("apt-get source --download-only bzip2 ...")
        proc = _apt_get(["source", "--download-only", "bzip2"], cwd=work)
        if proc.returncode != 0 and not added:          # maybe stale lists: update once
            log("apt-get update ...")
            update = _apt_get(["update"])
            proc = _apt_get(["source", "--download-only", "bzip2"], cwd=work)
        if proc.returncode != 0 or not os.path.exists(tarball):
            found = [os.path.basename(p) for p in glob.glob(os.path.join(work, "bzip2_*"))]
            detail = (proc.stderr or proc.stdout).strip()
            if update is not None and update.returncode != 0:
                detail += f"\n(apt-get update failed too: {update.stderr.strip()[-1000:]})"
            raise SetupError("could not fetch Debian's bzip2 source package "
                             f"(apt-get source --download-only bzip2, exit {proc.returncode}; "
                             f"files: {found or 'none'}; want {os.path.basename(tarball)}):\n"
                             + detail)
    with tarfile.open(tarball) as tar:
        tar.extractall(work, filter="data")
    if not os.path.isdir(source_dir):
        raise SetupError(f"{tarball} did not unpack to {source_dir}")
    return source_dir


def debian_package_version(work: str) -> str:
    """'1.0.8-5' from the downloaded .dsc, or '?'."""
    import glob
    for dsc in glob.glob(os.path.join(work, "bzip2_*.dsc")):
        with open(dsc, errors="replace") as f:
            for line in f:
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
    return "?"


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------

def _fresh(target: str, inputs: list[str]) -> bool:
    """True if ``target`` exists and is newer than every input (make-style)."""
    if not os.path.exists(target):
        return False
    mtime = os.path.getmtime(target)
    return all(os.path.getmtime(i) <= mtime for i in inputs)


def compile_bitcode(source_dir: str, out_dir: str, mode: str) -> list[str]:
    """One bitcode module per program source, clang-14 flags from
    :data:`BITCODE_MODES`; both cores are used."""
    import subprocess
    clang = llvm14_tool("clang")
    os.makedirs(out_dir, exist_ok=True)
    jobs, outputs = [], []
    for source in PROGRAM_SOURCES:
        src = os.path.join(source_dir, source)
        out = os.path.join(out_dir, source[:-2] + ".bc")
        outputs.append(out)
        if not _fresh(out, [src]):
            cmd = [clang, *BITCODE_MODES[mode], src, "-o", out]
            jobs.append((cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT, text=True)))
    for cmd, proc in jobs:
        output, _ = proc.communicate()
        if proc.returncode != 0:
            raise SetupError(f"clang-14 failed: {' '.join(cmd)}\n{output}")
    return outputs


def link_bitcode(modules: list[str], out: str) -> str:
    """llvm-link-14 the modules into one (for lli, which runs one file)."""
    if not _fresh(out, modules):
        _run([llvm14_tool("llvm-link"), *modules, "-o", out], "llvm-link-14")
    return out


def build_native(source_dir: str, out: str) -> str:
    """The reference: the same eight files, clang-14 -O2, an ordinary executable."""
    sources = [os.path.join(source_dir, s) for s in PROGRAM_SOURCES]
    if not _fresh(out, sources):
        _run([llvm14_tool("clang"), *CFLAGS, *sources, "-o", out], "clang-14 (native build)")
    return out


def native_command_line(source_dir: str, out: str) -> str:
    return " ".join(["clang-14", *CFLAGS, *PROGRAM_SOURCES, "-o", out])


def count_defined_functions(modules: list[str]) -> int:
    """Functions with a body in the given bitcode modules (the lazy JIT's
    upper bound on what it could compile)."""
    import llvmlite.binding as llvm
    total = 0
    for path in modules:
        with open(path, "rb") as f:
            module = llvm.parse_bitcode(f.read())
        total += sum(1 for fn in module.functions if not fn.is_declaration)
    return total


# ---------------------------------------------------------------------------
# Input data
# ---------------------------------------------------------------------------

DEFAULT_SEED = 20240229


def input_bytes(size: int, seed: int = DEFAULT_SEED) -> bytes:
    """``size`` bytes of mixed, partly compressible data, always the same for
    a (size, seed); a smaller size gives a prefix of a larger one.

    Chunks of three kinds, chosen at random: English-like text (words drawn
    from a Zipf-distributed vocabulary, so bzip2's sorting sees long and
    varied repeats), CSV-like tables of numbers, and random bytes (which
    bzip2 cannot compress).  Roughly 75 / 15 / 10 % of the bytes.
    """
    import random
    rng = random.Random(seed)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    letter_weights = [12, 9, 8, 7.5, 7, 6.7, 6.3, 6, 6, 4.3, 4, 2.8, 2.8, 2.4, 2.4, 2.2,
                      2, 2, 1.9, 1.5, 1, 0.8, 0.2, 0.2, 0.1, 0.1]
    vocabulary = ["".join(rng.choices(letters, letter_weights, k=rng.randint(1, 10)))
                  for _ in range(5000)]
    zipf = [1.0 / (rank + 1) for rank in range(len(vocabulary))]
    cumulative, acc = [], 0.0
    for w in zipf:
        acc += w
        cumulative.append(acc)
    out = bytearray()
    while len(out) < size:
        kind = rng.random()
        if kind < 0.80:                         # a paragraph of text
            words = rng.choices(vocabulary, cum_weights=cumulative, k=rng.randint(30, 300))
            sentence_ends = set(rng.sample(range(len(words)), k=max(1, len(words) // 12)))
            text = " ".join(w + ("." if i in sentence_ends else "")
                            for i, w in enumerate(words))
            out += text.capitalize().encode() + b"\n\n"
        elif kind < 0.93:                       # a table of numbers
            row, base = rng.randint(1, 10**6), rng.randint(0, 10**4)
            for i in range(rng.randint(20, 120)):
                out += (f"{row + i},{base + rng.randint(-50, 50)},"
                        f"{rng.random():.4f},{rng.choice(vocabulary)}\n").encode()
        else:                                   # incompressible bytes
            out += rng.randbytes(rng.randint(256, 2048))
    return bytes(out[:size])


def make_input(path: str, size: int, seed: int = DEFAULT_SEED) -> str:
    """Write :func:`input_bytes` to ``path`` unless it is already there."""
    if not (os.path.exists(path) and os.path.getsize(path) == size):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path + ".tmp", "wb") as f:
            f.write(input_bytes(size, seed))
        os.replace(path + ".tmp", path)
    return path


def sha256_of(path: str) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def same_bytes(a: str, b: str) -> bool:
    import filecmp
    return filecmp.cmp(a, b, shallow=False)


# ---------------------------------------------------------------------------
# Running bzip2 under orcjit, in a child process
# ---------------------------------------------------------------------------

def jit_spec(modules: list[str], runs: list[dict], *, lazy: bool, opt_level: int,
             report: str, ir_opt_level: int | None = None, tiered: bool = False,
             wait_at_end: bool = False) -> dict:
    """What :func:`jit_child` should do.  ``runs``: ``{"argv": [...],
    "stdout": path or None, "wait": bool}``, run one after another in the
    same JIT (a second identical run measures fully compiled code); ``wait``:
    call ``wait_for_optimizations()`` first (tiered: the run then uses the
    optimised bodies).  ``ir_opt_level``: orcjit's option of that name (None:
    the IR pipeline runs at ``opt_level``); ``tiered``: orcjit's option;
    ``wait_at_end``: call ``wait_for_optimizations()`` after the runs and
    report ``stats()`` once more (``"final"``)."""
    return {"modules": modules, "runs": runs, "lazy": lazy, "opt_level": opt_level,
            "ir_opt_level": ir_opt_level, "tiered": tiered, "wait_at_end": wait_at_end,
            "report": report}


def run_jit_child(spec: dict, stdout_path: str | None = None,
                  python: str = sys.executable) -> tuple[float, dict]:
    """Run :func:`jit_child` in a fresh interpreter; return (whole-process
    wall seconds, its report).  The child's fd 1 is ``stdout_path`` (or
    /dev/null); runs with their own ``stdout`` redirect it themselves."""
    import subprocess
    cmd = [python, os.path.join(HERE, "_bzip2_build.py"), "run-jit", json.dumps(spec)]
    if os.path.exists(spec["report"]):
        os.remove(spec["report"])
    with open(stdout_path or os.devnull, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.PIPE)
        wall = time.perf_counter() - start
    if proc.returncode != 0 or not os.path.exists(spec["report"]):
        argv = " | ".join(" ".join(r["argv"]) for r in spec["runs"])
        mode = ("lazy" if spec["lazy"] else "eager") + (", tiered" if spec["tiered"] else "")
        raise RuntimeError(f"orcjit child ({mode}, "
                           f"opt_level={spec['opt_level']}, ir_opt_level={spec['ir_opt_level']}, "
                           f"{argv}) failed with exit status "
                           f"{proc.returncode}:\n{proc.stderr.decode(errors='replace')[-4000:]}")
    with open(spec["report"]) as f:
        return wall, json.load(f)


def wait_for_optimizations(jit) -> float:
    """``jit.wait_for_optimizations()`` (tiered: until the background tier has
    caught up; otherwise returns at once); the seconds it took."""
    start = time.perf_counter()
    jit.wait_for_optimizations()
    return time.perf_counter() - start


def jit_child(spec: dict) -> None:
    """The child: build the JIT, add the modules, run bzip2's main once per
    entry of ``spec["runs"]``, write timings and stats() snapshots as JSON.

    Every JIT gets the per-file modules in one ``add_ir`` call, as one set
    (bzip2's files call each other both ways).  A run with ``"wait"`` first
    calls ``wait_for_optimizations()`` (its seconds are reported), and so
    does ``"wait_at_end"`` after the last run.

    bzip2's main() returns normally when everything succeeds (its exit()
    calls are on error paths, and ``-h``/``-L``), and re-initialises all of
    its global state on entry, so calling it several times in one process is
    sound.  If it does exit(), the process ends and the parent reports that.
    """
    import ctypes
    import orcjit
    libc = ctypes.CDLL(None)
    t0 = time.perf_counter()
    jit = orcjit.JIT(lazy=spec["lazy"], tiered=spec["tiered"], opt_level=spec["opt_level"],
                     ir_opt_level=spec["ir_opt_level"])
    bitcode = []
    for path in spec["modules"]:
        with open(path, "rb") as f:
            bitcode.append(f.read())
    jit.add_ir(bitcode)
    t1 = time.perf_counter()
    report = {"add_seconds": t1 - t0, "after_add": jit.stats(), "runs": []}
    for run in spec["runs"]:
        if run.get("stdout"):
            fd = os.open(run["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.close(fd)
        waited = wait_for_optimizations(jit) if run.get("wait") else 0.0
        start = time.perf_counter()
        rc = jit.run_main(run["argv"])
        seconds = time.perf_counter() - start
        libc.fflush(None)            # bzip2 flushes its output; be sure before fd 1 moves
        report["runs"].append({"argv": run["argv"], "rc": rc, "seconds": seconds,
                               "wait_seconds": waited, "stats": jit.stats()})
    if spec.get("wait_at_end"):
        report["final"] = {"wait_seconds": wait_for_optimizations(jit), "stats": jit.stats()}
    with open(spec["report"], "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run-jit":
        jit_child(json.loads(sys.argv[2]))
    else:
        sys.exit(f"usage: {sys.argv[0]} run-jit SPEC_JSON  (used by bench/bzip2.py and "
                 "examples/bzip2_lazy.py)")
