"""Shared pieces of the orcjit benchmarks.

Both benchmark scripts compare orcjit with llvmlite's own JITs.  Everything
they have in common lives here so that the engines are driven in exactly the
same way by both scripts:

* IR generators: a small hand-written module, a large generated one, and
  many small functions for the lazy benchmarks;
* engine adapters: one small class per engine, all with the same interface
  (``add`` IR text -> handle and addresses, ``remove`` a handle), so that a
  benchmark loop never special-cases an engine;
* helpers to run one measurement in a child process and to summarise and
  print results as Markdown.

Nothing in here imports llvmlite or orcjit at module level: the parent
process of a benchmark only orchestrates children, and each child decides
which engine it imports.
"""

from __future__ import annotations

import ctypes
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

# ---------------------------------------------------------------------------
# Lazy compilation: many small functions
# ---------------------------------------------------------------------------

def lazy_module(n: int) -> str:
    """``n`` small functions ``f<i>(x) = x * i + seven()``, int64_t(int64_t),
    each a first call to compile (lazy_overhead.py, lazy_instructions.py)."""
    parts = ["define internal i64 @seven() {\n  ret i64 7\n}"]
    for i in range(n):
        parts.append(f"define i64 @f{i}(i64 %x) {{\n  %m = mul i64 %x, {i}\n"
                     f"  %s = call i64 @seven()\n  %r = add i64 %m, %s\n  ret i64 %r\n}}")
    return "\n".join(parts)


def lazy_stack(module_text: str, wrap_compiler, indirection: str = "double"):
    """(stack, layer): a CompileOnDemandLayer put straight on a LayerStack's
    compiler (no IR pipeline), ``module_text`` added. ``wrap_compiler`` wraps
    the compiler (to record or replay objects); promoted names are the same
    in every such stack, so recorded objects replay by module name. orcjit
    is imported here, from wherever the caller put it on the path."""
    import itertools

    from orcjit.frontends.ir import dispose, parse_ir
    from orcjit.layers.compile_on_demand import INDIRECTIONS, CompileOnDemandLayer
    from orcjit.lazy import CompileCallbackManager
    from orcjit.stack import LayerStack

    stack = LayerStack(opt_level=0, wrap_compiler=wrap_compiler)
    pool = stack.linker.memory_pool
    stubs_kind, patch_call_sites = INDIRECTIONS[indirection]
    lazy = CompileOnDemandLayer(stack.compiler, stubs_kind(pool), CompileCallbackManager(pool),
                                resolver=stack.linker.resolver, patch_call_sites=patch_call_sites)
    lazy._set_ids = itertools.count(1)
    source = parse_ir(module_text)
    lazy.add_module_set([source])
    dispose(source)
    return stack, lazy


def recording_compiler(recorded: dict[str, bytes]):
    """A ``wrap_compiler`` for lazy_stack that keeps each object by module name."""
    def recording(compiler):
        def compile_and_record(module) -> bytes:
            recorded[module.name] = data = compiler(module)
            return data
        return compile_and_record
    return recording


def replaying_compiler(recorded: dict[str, bytes]):
    """A ``wrap_compiler`` for lazy_stack that returns the recorded objects
    instead of generating code."""
    return lambda compiler: lambda module: recorded[module.name]


#: globals each function of lazy_module_large reads, and calls it makes
LARGE_GLOBALS, LARGE_STEPS = 40, 120


def lazy_module_large(n: int) -> str:
    """``n`` functions shaped like real C ones: each reads 40 globals of the
    module and makes 40 calls (to libc's ``llabs``, out of reach, and to
    ``seven``), so its object has ~80 relocations, a GOT and a PLT."""
    parts = [f"@g{j} = global i64 {j}" for j in range(LARGE_GLOBALS)]
    parts += ["declare i64 @llabs(i64)",
              "define internal i64 @seven(i64 %x) {\n  %r = add i64 %x, 7\n  ret i64 %r\n}"]
    for i in range(n):
        body = [f"define i64 @f{i}(i64 %v0) {{"]
        for j in range(LARGE_STEPS):
            if j % 3 == 0:
                callee = "llabs" if j % 2 else "seven"
                body.append(f"  %v{j + 1} = call i64 @{callee}(i64 %v{j})")
            elif j % 3 == 1:
                body.append(f"  %l{j} = load i64, ptr @g{j % LARGE_GLOBALS}\n"
                            f"  %v{j + 1} = add i64 %v{j}, %l{j}")
            else:
                body.append(f"  %v{j + 1} = xor i64 %v{j}, {i}")
        body.append(f"  ret i64 %v{LARGE_STEPS}\n}}")
        parts.append("\n".join(body))
    return "\n".join(parts)


# ---------------------------------------------------------------------------
# Small module
# ---------------------------------------------------------------------------

SMALL_MODULE_TEMPLATE = """\
@counter_{tag} = global i32 {k}

define i32 @fib_{tag}(i32 %n) {{
entry:
  %small = icmp slt i32 %n, 2
  br i1 %small, label %done, label %recurse
recurse:
  %n1 = sub i32 %n, 1
  %n2 = sub i32 %n, 2
  %a = call i32 @fib_{tag}(i32 %n1)
  %b = call i32 @fib_{tag}(i32 %n2)
  %s = add i32 %a, %b
  ret i32 %s
done:
  ret i32 %n
}}

define i32 @sum_{tag}(i32 %n) {{
entry:
  %empty = icmp sle i32 %n, 0
  br i1 %empty, label %exit, label %loop
loop:
  %i = phi i32 [ 0, %entry ], [ %i.next, %loop ]
  %acc = phi i32 [ 0, %entry ], [ %acc.next, %loop ]
  %acc.next = add i32 %acc, %i
  %i.next = add i32 %i, 1
  %more = icmp slt i32 %i.next, %n
  br i1 %more, label %loop, label %exit
exit:
  %r = phi i32 [ 0, %entry ], [ %acc.next, %loop ]
  ret i32 %r
}}

define i32 @entry_{tag}(i32 %x) {{
entry:
  %m = and i32 %x, 15
  %f = call i32 @fib_{tag}(i32 %m)
  %s = call i32 @sum_{tag}(i32 %x)
  %c = load i32, ptr @counter_{tag}
  %c.next = add i32 %c, 1
  store i32 %c.next, ptr @counter_{tag}
  %t = add i32 %f, %s
  %r = add i32 %t, %c
  ret i32 %r
}}
"""


def small_module_ir(tag: str = "0", k: int = 7) -> str:
    """A handful of functions (recursive fib, a loop sum, a global variable).

    ``tag`` makes every symbol name unique, so that many copies can live in
    one JIT (the memory benchmark adds one copy per cycle); ``k`` is the
    global's initial value, so that each copy computes a different result and
    a stale lookup would be caught by the result check.
    """
    return SMALL_MODULE_TEMPLATE.format(tag=tag, k=k)


def small_module_entry(tag: str = "0") -> str:
    """Name of the ``int(int)`` function of :func:`small_module_ir`."""
    return f"entry_{tag}"


def small_module_expected(x: int, k: int = 7) -> int:
    """What the *first* call ``entry(x)`` returns (the global starts at k)."""
    a, b = 0, 1
    for _ in range(x & 15):
        a, b = b, a + b
    return a + x * (x - 1) // 2 + k


# ---------------------------------------------------------------------------
# Large generated module
# ---------------------------------------------------------------------------

GENERATED_ENTRY = "bench_entry"


class _FunctionWriter:
    """Emits the body of one generated function, tracking SSA names and the
    current basic block (phi nodes need to name their predecessor)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.lines: list[str] = []
        self.block = "entry"
        self._n = 0

    def tmp(self) -> str:
        self._n += 1
        return f"%t{self._n}"

    def label(self, stem: str) -> str:
        self._n += 1
        return f"{stem}{self._n}"

    def emit(self, line: str) -> None:
        self.lines.append("  " + line)

    def start_block(self, name: str) -> None:
        self.lines.append(f"{name}:")
        self.block = name

    def arithmetic(self, v: str, count: int) -> str:
        """A straight-line chain of integer ops; keeps it UB-free (shift
        amounts masked, divisors forced odd) so every engine and every
        optimisation level must compute the same value."""
        for _ in range(count):
            op = self.rng.choice(["add", "sub", "mul", "xor", "shl", "lshr", "udiv"])
            c = self.rng.randint(1, 1 << 20)
            out = self.tmp()
            if op in ("shl", "lshr"):
                amount = self.tmp()
                self.emit(f"{amount} = and i64 {v}, 31")
                self.emit(f"{out} = {op} i64 {v}, {amount}")
            elif op == "udiv":
                self.emit(f"{out} = udiv i64 {v}, {c | 1}")
            else:
                self.emit(f"{out} = {op} i64 {v}, {c}")
            folded = self.tmp()
            self.emit(f"{folded} = add i64 {out}, %x")
            v = folded
        return v

    def table_loop(self, v: str, table: str) -> str:
        """A loop over a global table: 1..1024 iterations (a bound too large
        for full unrolling, like a real data-dependent loop), loads,
        accumulates."""
        trip = self.tmp()
        self.emit(f"{trip} = and i64 {v}, 1023")
        pre, loop, done = self.block, self.label("loop"), self.label("after")
        i, acc, i_next, acc_next = self.tmp(), self.tmp(), self.tmp(), self.tmp()
        self.emit(f"br label %{loop}")
        self.start_block(loop)
        self.emit(f"{i} = phi i64 [ 0, %{pre} ], [ {i_next}, %{loop} ]")
        self.emit(f"{acc} = phi i64 [ {v}, %{pre} ], [ {acc_next}, %{loop} ]")
        idx, ptr, elem, mixed = self.tmp(), self.tmp(), self.tmp(), self.tmp()
        self.emit(f"{idx} = and i64 {i}, 63")
        self.emit(f"{ptr} = getelementptr [64 x i64], ptr {table}, i64 0, i64 {idx}")
        self.emit(f"{elem} = load i64, ptr {ptr}")
        self.emit(f"{mixed} = mul i64 {acc}, {self.rng.randint(3, 99)}")
        self.emit(f"{acc_next} = add i64 {mixed}, {elem}")
        self.emit(f"{i_next} = add i64 {i}, 1")
        more = self.tmp()
        self.emit(f"{more} = icmp ult i64 {i_next}, {trip}")
        self.emit(f"br i1 {more}, label %{loop}, label %{done}")
        self.start_block(done)
        return acc_next

    def memset_strlen(self, v: str, buf: str) -> str:
        """Fill a global buffer with a variable length (llvm.memset becomes a
        call to libc memset) and measure it with strlen: two external
        symbols the JIT's linker has to resolve in the host process."""
        length, byte, nonzero, n, out = (self.tmp() for _ in range(5))
        self.emit(f"{length} = and i64 {v}, 255")  # buffers are 256 bytes
        self.emit(f"{byte} = trunc i64 {v} to i8")
        self.emit(f"{nonzero} = or i8 {byte}, 1")
        self.emit(f"call void @llvm.memset.p0.i64(ptr {buf}, i8 {nonzero}, i64 {length}, i1 false)")
        self.emit(f"{n} = call i64 @strlen(ptr {buf})")
        self.emit(f"{out} = add i64 {v}, {n}")
        return out

    def counter_bump(self, v: str) -> str:
        """Read-modify-write of a mutable global shared by all functions."""
        old, new = self.tmp(), self.tmp()
        self.emit(f"{old} = load i64, ptr @calls")
        self.emit(f"{new} = add i64 {old}, 1")
        self.emit(f"store i64 {new}, ptr @calls")
        out = self.tmp()
        self.emit(f"{out} = xor i64 {v}, {old}")
        return out

    def guarded_calls(self, v: str, callees: list[str]) -> str:
        """Calls to other generated functions, only while depth > 0, so that
        the call graph (a DAG: callees have lower indices) stays cheap to
        execute whatever its shape."""
        pre, body, join = self.block, self.label("calls"), self.label("join")
        go = self.tmp()
        self.emit(f"{go} = icmp sgt i32 %d, 0")
        self.emit(f"br i1 {go}, label %{body}, label %{join}")
        self.start_block(body)
        depth = self.tmp()
        self.emit(f"{depth} = sub i32 %d, 1")
        acc = v
        for callee in callees:
            r, mixed = self.tmp(), self.tmp()
            self.emit(f"{r} = call i64 @{callee}(i64 {acc}, i32 {depth})")
            self.emit(f"{mixed} = xor i64 {r}, {acc}")
            acc = mixed
        self.emit(f"br label %{join}")
        self.start_block(join)
        out = self.tmp()
        self.emit(f"{out} = phi i64 [ {v}, %{pre} ], [ {acc}, %{body} ]")
        return out


def _generated_function(index: int, rng: random.Random, n_tables: int,
                        n_buffers: int) -> str:
    """One function ``i64 @f<index>(i64 %x, i32 %d)`` of random shape/size."""
    w = _FunctionWriter(rng)
    w.start_block("entry")
    # Geometric-ish sizes: most functions are small, a few are big.
    v = w.arithmetic("%x", min(40, int(rng.expovariate(1 / 5)) + 1))
    if rng.random() < 0.5:
        v = w.table_loop(v, f"@tbl{rng.randrange(n_tables)}")
    if rng.random() < 0.25:
        v = w.memset_strlen(v, f"@buf{rng.randrange(n_buffers)}")
    if rng.random() < 0.2:
        v = w.counter_bump(v)
    if index > 0 and rng.random() < 0.7:
        callees = [f"f{rng.randrange(index)}" for _ in range(rng.randint(1, 2))]
        v = w.guarded_calls(v, callees)
    if rng.random() < 0.3:
        v = w.arithmetic(v, rng.randint(1, 6))
    w.emit(f"ret i64 {v}")
    body = "\n".join(w.lines)
    return f"define i64 @f{index}(i64 %x, i32 %d) {{\n{body}\n}}\n"


def generated_module_ir(n_functions: int = 2000, seed: int = 2024) -> str:
    """A large, deterministic module resembling compiler output.

    Functions of varying size with loops, branches, calls between functions
    (a DAG, guarded by a depth argument), global tables and buffers, a shared
    mutable counter and calls to libc (``memset`` via ``llvm.memset``,
    ``strlen``).  All functions are external, so the optimiser cannot delete
    them; with llvmlite's JIT code model (large, on x86-64) every call and
    global access becomes an absolute relocation, giving the linker plenty to
    do.  ``bench_entry(i64) -> i64`` calls the eight highest functions.
    """
    rng = random.Random(seed)
    n_tables, n_buffers = 32, 8
    parts = [
        "declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)",
        "declare i64 @strlen(ptr)",
        "@calls = global i64 0",
    ]
    for t in range(n_tables):
        values = ", ".join(f"i64 {rng.randint(-1 << 40, 1 << 40)}" for _ in range(64))
        kind = "constant" if t % 2 else "global"
        parts.append(f"@tbl{t} = internal {kind} [64 x i64] [{values}]")
    for b in range(n_buffers):
        parts.append(f"@buf{b} = global [256 x i8] zeroinitializer")
    parts.append("")
    parts.extend(_generated_function(i, rng, n_tables, n_buffers)
                 for i in range(n_functions))
    calls = [f"f{i}" for i in range(max(0, n_functions - 8), n_functions)]
    body, acc = [], "%x"
    for k, callee in enumerate(calls):
        body.append(f"  %r{k} = call i64 @{callee}(i64 {acc}, i32 3)")
        acc = f"%r{k}"
    parts.append("define i64 @bench_entry(i64 %x) {\nentry:\n"
                 + "\n".join(body) + f"\n  ret i64 {acc}\n}}\n")
    return "\n".join(parts)


# ---------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------
#
# Every engine answers the same three questions: add this IR text and give me
# these symbols' addresses; give me an int(int) callable; remove what you
# added.  ``last_phases`` is the breakdown of the latest add, in seconds.

INT_INT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)


class Engine:
    """Interface shared by all engine adapters."""

    name = "?"
    executes = True      # False only for the no-JIT baseline
    last_phases: dict

    def add(self, ir_text: str, symbols: list[str]):
        """Compile and link ``ir_text``; return (handle, {symbol: address})."""
        raise NotImplementedError

    def remove(self, handle) -> None:
        raise NotImplementedError

    def int_int(self, handle, addresses: dict, name: str):
        """An ``int(int)`` Python callable for an added function."""
        return INT_INT(addresses[name])

    def close(self) -> None:
        pass


class _PhaseTimer:
    """Collects named wall-clock phases of one add()."""

    def __init__(self):
        self.phases: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - t0


def _free_pass_manager(mpm) -> None:
    """Really free a llvmlite ModulePassManager (see LlvmliteFrontEnd)."""
    from llvmlite.binding import ffi
    from llvmlite.binding.newpassmanagers import NewPassManager
    if type(mpm)._dispose is ffi.ObjectRef._dispose:   # llvmlite 0.50 MRO bug
        NewPassManager._dispose(mpm)
        mpm.detach()
    else:
        mpm.close()


class LlvmliteFrontEnd:
    """Parse + optimise, identically for every llvmlite-based engine.

    One target machine configuration (host CPU and features, codegen opt
    level = ``opt``, llvmlite's JIT code model) and llvmlite's new pass
    manager default pipeline at ``speed_level=opt`` -- the same thing orcjit
    is specified to run -- so that the engines differ only in what happens
    after optimisation.  Each module is parsed into a fresh LLVMContext,
    as LLJIT and orcjit do, so nothing accumulates in the global context.

    Two llvmlite 0.50 pitfalls are worked around here (see bench/README.md):

    * a ModulePassManager is never freed (``ModulePassManager`` inherits
      ``ObjectRef._dispose``, a no-op, ahead of ``NewPassManager._dispose``):
      ~85 KB leaked per module at -O2.  We free it explicitly.
    * every ``run`` appends instrumentation callbacks to the PassBuilder,
      never removed: with one shared PassBuilder, optimising the small
      module slows from ~3 ms to ~30 ms over 2,000 modules.  So the
      PassBuilder is created per module (~10 us, leaks ~1.5 KB).
      (A ModulePassManager cannot be shared either: running it on a second
      module aborts the process.)
    """

    def __init__(self, opt: int):
        import llvmlite.binding as llvm
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        self.llvm = llvm
        self.opt = opt
        self._target = llvm.Target.from_default_triple()
        self._cpu = llvm.get_host_cpu_name()
        self._features = llvm.get_host_cpu_features().flatten()
        self._pass_tm = self.target_machine()

    def target_machine(self):
        """A new TargetMachine; engines that take ownership need their own."""
        return self._target.create_target_machine(
            cpu=self._cpu, features=self._features, opt=self.opt, jit=True)

    def optimize(self, module) -> None:
        """llvmlite's new pass manager, default pipeline at ``opt``."""
        llvm = self.llvm
        pto = llvm.create_pipeline_tuning_options(speed_level=self.opt)
        pb = llvm.create_pass_builder(self._pass_tm, pto)
        mpm = pb.getModulePassManager()
        try:
            mpm.run(module, pb)
        finally:
            _free_pass_manager(mpm)

    def parse_and_optimize(self, ir_text: str, timer: _PhaseTimer):
        """Return (module, context); keep the context alive as long as the
        module (llvmlite does not tie their lifetimes once an engine owns the
        module)."""
        with timer("parse"):
            ctx = self.llvm.create_context()
            module = self.llvm.parse_assembly(ir_text, context=ctx)
        with timer("optimize"):
            self.optimize(module)
        return module, ctx


class FrontEndOnly(Engine):
    """Baseline, not a JIT: parse + optimise + emit an object file, then
    drop everything.  Whatever memory this keeps per module is llvmlite's
    (and shared by every engine here); the JITs' own retention is their
    growth minus this.  It produces no callable code."""

    name = "baseline: parse+optimise+emit_object, no JIT"
    executes = False

    def __init__(self, opt: int):
        self.front = LlvmliteFrontEnd(opt)
        self._tm = self.front.target_machine()
        self.last_phases = {}

    def add(self, ir_text, symbols):
        timer = _PhaseTimer()
        module, ctx = self.front.parse_and_optimize(ir_text, timer)
        with timer("codegen"):
            self._tm.emit_object(module)
        self.last_phases = timer.phases
        module.close()
        return None, {}

    def remove(self, handle):
        pass


class _MCJITModule:
    """What one MCJIT add() leaves behind.  The LLVMContexts must outlive the
    engine's copy of the module: llvmlite lets a ModuleRef (and with it the
    context) be garbage-collected while the engine still owns the module,
    and disposing the engine then crashes."""
    __slots__ = ("ee", "ee_ctx", "module", "ctx")

    def __init__(self, ee, ee_ctx, module, ctx):
        self.ee, self.ee_ctx, self.module, self.ctx = ee, ee_ctx, module, ctx


class MCJITEngine(Engine):
    """llvmlite MCJIT: ``create_mcjit_compiler`` + ``add_module`` +
    ``finalize_object`` + ``get_function_address``.

    ``fresh_engine_per_module=False``: one engine; remove() is
    ``ee.remove_module(mod)``.  ``True``: each add() gets its own engine
    (the usual way to be able to free MCJIT code: drop the engine).
    """

    def __init__(self, opt: int, fresh_engine_per_module: bool = False):
        self.front = LlvmliteFrontEnd(opt)
        self.fresh = fresh_engine_per_module
        self.name = "llvmlite MCJIT" + (" (engine per module)" if self.fresh else "")
        self._shared = None if self.fresh else self._new_engine()
        self._live: set[_MCJITModule] = set()
        self.last_phases = {}

    def _new_engine(self):
        """(engine, context of its initial empty module).  Creating the
        engine from an empty module and then add_module() is equivalent to
        ``create_mcjit_compiler(module, tm)``: MCJIT compiles at finalize."""
        llvm = self.front.llvm
        ctx = llvm.create_context()
        empty = llvm.parse_assembly("", context=ctx)
        return llvm.create_mcjit_compiler(empty, self.front.target_machine()), ctx

    def add(self, ir_text, symbols):
        timer = _PhaseTimer()
        module, ctx = self.front.parse_and_optimize(ir_text, timer)
        with timer("codegen+link"):
            ee, ee_ctx = self._new_engine() if self.fresh else self._shared
            ee.add_module(module)
            ee.finalize_object()
        with timer("lookup"):
            addresses = {s: ee.get_function_address(s) for s in symbols}
        self.last_phases = timer.phases
        handle = _MCJITModule(ee, ee_ctx, module, ctx)
        self._live.add(handle)
        return handle, addresses

    def remove(self, handle):
        self._live.remove(handle)
        if self.fresh:
            handle.ee.close()           # frees the engine, its code and the module
        else:
            handle.ee.remove_module(handle.module)
            handle.module.close()

    def close(self):
        for handle in list(self._live):
            self.remove(handle)
        if self._shared is not None:
            self._shared[0].close()


class LLJITEngine(Engine):
    """llvmlite LLJIT (``create_lljit_compiler``), one JIT library per add.

    ``JITLibraryBuilder`` takes IR only as *text* (LLJIT parses it itself)
    and LLJIT runs no IR optimisation, only codegen at the target machine's
    opt level.  To give
    it the same pipeline as the others we optimise in llvmlite first and
    then hand over either

    * ``via="ir"``: the optimised module printed back to text
      (``JITLibraryBuilder.add_ir``): LLJIT re-parses, codegens and links;
    * ``via="object"``: an object file from ``TargetMachine.emit_object``
      (``add_object_img``): LLJIT only links.  This is the same division of
      labour as orcjit (llvmlite does codegen, the JIT links).

    remove() closes the ResourceTracker, which clears the JITDylib.
    """

    def __init__(self, opt: int, via: str = "ir"):
        assert via in ("ir", "object")
        self.front = LlvmliteFrontEnd(opt)
        self.via = via
        self.name = "llvmlite LLJIT" + (" (object)" if via == "object" else "")
        self._tm = self.front.target_machine() if via == "object" else None
        self._lljit = self.front.llvm.create_lljit_compiler(self.front.target_machine())
        self._libraries = 0
        self.last_phases = {}

    def add(self, ir_text, symbols):
        llvm = self.front.llvm
        timer = _PhaseTimer()
        module, ctx = self.front.parse_and_optimize(ir_text, timer)
        builder = llvm.JITLibraryBuilder()
        if self.via == "ir":
            with timer("print IR"):
                builder.add_ir(str(module))
        else:
            with timer("codegen"):
                builder.add_object_img(self._tm.emit_object(module))
        del module, ctx
        builder.add_current_process()
        for s in symbols:
            builder.export_symbol(s)
        self._libraries += 1
        step = "link" if self.via == "object" else "parse+codegen+link"
        with timer(step):
            tracker = builder.link(self._lljit, f"lib{self._libraries}")
        self.last_phases = timer.phases
        return tracker, {s: tracker[s] for s in symbols}

    def remove(self, handle):
        handle.close()

    def close(self):
        self._lljit.close()


class OrcJITEngine(Engine):
    """orcjit: ``JIT(opt_level)``, ``add_ir``, ``address``, ``remove``.

    Its phase breakdown comes from ``jit.stats()`` (difference across the
    add), plus our own wall-clock time for the whole call.
    """

    name = "orcjit"
    STAT_KEYS = ("parse_seconds", "optimize_seconds", "codegen_seconds",
                 "link_seconds", "overhead_seconds")

    def __init__(self, opt: int):
        import orcjit
        self.jit = orcjit.JIT(opt_level=opt)
        self.last_phases = {}

    def _stat_seconds(self):
        stats = self.jit.stats()
        return {k: float(stats.get(k, 0.0)) for k in self.STAT_KEYS}

    def add(self, ir_text, symbols):
        before = self._stat_seconds()
        handle = self.jit.add_ir(ir_text)
        addresses = {s: self.jit.address(s) for s in symbols}
        after = self._stat_seconds()
        self.last_phases = {k.removesuffix("_seconds"): after[k] - before[k]
                            for k in self.STAT_KEYS}
        return handle, addresses

    def int_int(self, handle, addresses, name):
        return self.jit.lookup(name, "int(int)")

    def remove(self, handle):
        self.jit.remove(handle)

    def close(self):
        self.jit.close()


ENGINES = {
    "baseline": lambda opt: FrontEndOnly(opt),
    "mcjit": lambda opt: MCJITEngine(opt),
    "mcjit-fresh": lambda opt: MCJITEngine(opt, fresh_engine_per_module=True),
    "lljit": lambda opt: LLJITEngine(opt, via="ir"),
    "lljit-object": lambda opt: LLJITEngine(opt, via="object"),
    "orcjit": lambda opt: OrcJITEngine(opt),
}


def orcjit_status() -> str | None:
    """None if orcjit can be benchmarked, else a one-line reason.

    Checked in a child process with the same environment the measurements
    use, so that a broken orcjit import cannot take the parent down and the
    parent's answer matches what the children will see.
    """
    probe = ("import sys\n"
             "try:\n"
             "    import orcjit\n"
             "except ImportError as e:\n"
             "    print('orcjit not importable:', e); sys.exit(0)\n"
             "if not hasattr(orcjit, 'JIT'):\n"
             "    print('orcjit not importable: orcjit.JIT does not exist yet'); sys.exit(0)\n"
             "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    if lines == ["ok"]:
        return None
    if proc.returncode == 0 and lines:
        return lines[-1]
    return f"orcjit import failed: {lines[-1] if lines else proc.returncode}"


# ---------------------------------------------------------------------------
# Child processes, statistics, machine info, Markdown
# ---------------------------------------------------------------------------

CHILD_FLAG = "--child"


def write_report(text: str, path: str) -> None:
    """Write a Markdown report and show it."""
    with open(path, "w") as f:
        f.write(text)
    print(text)
    print(f"written to {path}")


def dispatch(main, child_main) -> None:
    """A bench script's entry: the parent's main, or a measuring child's."""
    if sys.argv[1:2] == [CHILD_FLAG]:
        child_main(sys.argv[2:])
    else:
        main(sys.argv[1:])


def run_child(script: str, args: list[str]) -> dict:
    """Run ``script --child args...`` and return the JSON it prints last.

    One process per measurement: each starts with a cold LLVM, its own heap
    and nothing left over from other engines.  Interpreter start-up and
    imports are not timed (the child times only the region of interest).
    """
    cmd = [sys.executable, os.path.abspath(script), CHILD_FLAG, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {' '.join(args)} failed (rc={proc.returncode}):\n"
                           f"{proc.stdout}{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_reply(payload: dict) -> None:
    """The child side of :func:`run_child`."""
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


@dataclass
class Samples:
    """Repeated measurements of one quantity, in seconds."""
    values: list[float] = field(default_factory=list)

    def add(self, v: float) -> None:
        self.values.append(v)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def min(self) -> float:
        return min(self.values)


def rss_bytes() -> int:
    """Resident set size of this process (psutil if present, else /proc)."""
    try:
        import psutil
        return psutil.Process().memory_info().rss
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info_markdown() -> str:
    """Header block: what ran, where, when."""
    import llvmlite
    import llvmlite.binding as llvm
    llvm_version = ".".join(map(str, llvm.llvm_version_info))
    return "\n".join([
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- CPU: {_cpu_model()} ({os.cpu_count()} logical CPUs)",
        f"- OS: {platform.platform()}",
        f"- Python: {platform.python_version()} ({sys.executable})",
        f"- llvmlite {llvmlite.__version__}, LLVM {llvm_version}",
    ])


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def results_path(name: str) -> str:
    """bench/results/<name>, creating the folder."""
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, name)
