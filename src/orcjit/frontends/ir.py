"""LLVM IR in any form -> a verified llvmlite ``ModuleRef`` for the host.

Accepts IR text (``str`` or UTF-8 ``bytes``), bitcode (``bytes``, raw or
wrapped), an ``llvmlite.ir.Module`` and an ``llvmlite.binding.ModuleRef``.
A module without a target triple or data layout gets the target machine's.
LLVM's complaints become :class:`~orcjit.errors.InvalidIRError` carrying
LLVM's message; nothing is printed to stderr.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import llvmlite.binding as llvm

from ..errors import InvalidIRError
from ..runtime.llvm_calls import parse_assembly

_BITCODE_MAGICS = (b"BC\xc0\xde", b"\xde\xc0\x17\x0b")

# LLVM prints a module's target lines first: looked for in the head of the text only
_TARGET_LINE = re.compile(r'^target (triple|datalayout) = "[^"]', re.MULTILINE)
_TARGET_HEAD = 2048
# what LLVM's -O0 pipeline acts on: always-inline definitions, -finstrument-functions
# attributes, coroutine intrinsics (see optimization_pipeline)
_O0_PIPELINE_WORK = re.compile(r"alwaysinline|instrument-function-|llvm\.coro\.")
#: attributes parse_ir notes on a module parsed from text
_TEXT_NOTES = ("_orcjit_has_target", "_orcjit_inert_at_o0")

_init_lock = threading.Lock()
_initialized = False


def initialize_llvm() -> None:
    """Initialise the native target once (idempotent, thread-safe)."""
    global _initialized
    if _initialized:
        return
    with _init_lock:
        if not _initialized:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            llvm.initialize_native_asmparser()
            _initialized = True


IRSource = str | bytes | bytearray | memoryview | Any   # llvmlite.ir.Module, ModuleRef


def is_bitcode(data: bytes | bytearray | memoryview) -> bool:
    return bytes(data[:4]) in _BITCODE_MAGICS


def has_target_lines(text: str) -> bool:
    """Whether IR text starts with both a target triple and a data layout."""
    return len(set(_TARGET_LINE.findall(text, 0, _TARGET_HEAD))) == 2


def has_o0_pipeline_work(text: str) -> bool:
    """Whether IR text may hold something LLVM's -O0 pipeline acts on (if
    not, the pipeline would leave its module unchanged)."""
    return _O0_PIPELINE_WORK.search(text) is not None


#: modules one shared context parses before it is retired (see _SharedContext)
SHARED_CONTEXT_USES = 64


class _SharedContext:
    """One thread's LLVMContext for many short-lived modules (lazy partitions).

    A context per partition costs ~35 us to create and destroy (see
    bench/README.md). But a context keeps what its modules made unique
    (types, constants) after they are freed, so one serves
    ``SHARED_CONTEXT_USES`` modules and is then retired: closed when its
    last module is disposed. Contexts are per thread, because LLVM's are not
    thread-safe and lazy compilation runs on many threads.
    """

    _of_thread = threading.local()

    def __init__(self) -> None:
        self.context = llvm.create_context()
        self.uses = self.live = 0
        self.retired = False
        self._lock = threading.Lock()     # a module may be disposed on another thread

    @classmethod
    def lend(cls) -> _SharedContext:
        """This thread's shared context, counted as held by one more module
        until :meth:`release`."""
        shared: _SharedContext | None = getattr(cls._of_thread, "current", None)
        if shared is None or shared.uses >= SHARED_CONTEXT_USES:
            if shared is not None:
                shared.retire()
            shared = cls._of_thread.current = cls()
        shared.uses += 1
        with shared._lock:
            shared.live += 1
        return shared

    def retire(self) -> None:
        with self._lock:
            self.retired = True
            if not self.live:
                self.context.close()

    def release(self) -> None:
        with self._lock:
            self.live -= 1
            if self.retired and not self.live:
                self.context.close()


def parse_ir(source: IRSource, name: str | None = None, verify: bool = True,
             shared_context: bool = False, *, has_target: bool | None = None,
             inert_at_o0: bool | None = None) -> llvm.ModuleRef:
    """Parse IR in any accepted form and verify it; raises InvalidIRError.

    ``verify=False`` skips the verifier (~0.25 ms for a small module) for IR
    derived from a module that was verified already. ``shared_context``
    parses IR text into this thread's shared context (for many small
    modules that are compiled and disposed at once, such as partitions).

    What is noted about parsed text (target lines present, nothing for the
    -O0 pipeline to do) describes that text: a ModuleRef handed in, which
    may have changed since, loses those notes. A caller that knows them of
    its text (a partition, cut from a module looked at once) passes
    ``has_target`` and ``inert_at_o0``; None has the text searched.
    """
    initialize_llvm()
    if isinstance(source, str):
        return _parse_text(source, name, verify, shared_context, has_target, inert_at_o0)
    if isinstance(source, llvm.ModuleRef):
        module = source
        for note in _TEXT_NOTES:
            if hasattr(module, note):
                delattr(module, note)
    else:
        if isinstance(source, (bytes, bytearray, memoryview)):
            if is_bitcode(source):
                context = llvm.create_context()
                try:
                    module = llvm.parse_bitcode(bytes(source), context=context)
                except RuntimeError as e:
                    raise InvalidIRError(f"invalid bitcode: {e}") from None
                return _checked(_owning(module, context), name, verify)
            try:
                source = bytes(source).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidIRError("input is neither LLVM bitcode nor UTF-8 IR text") from None
        elif type(source).__module__.startswith("llvmlite.ir"):
            source = str(source)
        else:
            raise InvalidIRError(
                f"cannot read IR from {type(source).__name__}: give IR text, bitcode bytes, "
                "an llvmlite.ir.Module or an llvmlite.binding.ModuleRef")
        return _parse_text(source, name, verify, shared_context, has_target, inert_at_o0)
    return _checked(module, name, verify)


def _parse_text(text: str, name: str | None, verify: bool, shared_context: bool,
                has_target: bool | None, inert_at_o0: bool | None) -> llvm.ModuleRef:
    """parse_ir of IR text."""
    shared = _SharedContext.lend() if shared_context else None
    context = shared.context if shared else llvm.create_context()
    try:
        module = parse_assembly(text, context, name)
    except RuntimeError as e:
        if shared:
            shared.release()
        else:
            context.close()
        raise InvalidIRError(str(e).strip()) from None
    _owning(module, shared or context)
    if has_target if has_target is not None else has_target_lines(text):
        module._orcjit_has_target = True  # type: ignore[attr-defined]
    if inert_at_o0 if inert_at_o0 is not None else not has_o0_pipeline_work(text):
        module._orcjit_inert_at_o0 = True  # type: ignore[attr-defined]
    return _checked(module, None, verify) if verify else module     # (named as parsed)


def _owning(module: llvm.ModuleRef,
            context: llvm.ContextRef | _SharedContext) -> llvm.ModuleRef:
    """Tie a context to its module; :func:`dispose` frees both, module first
    (a shared context, see _SharedContext.lend, once it is retired and this
    was its last module)."""
    module._orcjit_context = context  # type: ignore[attr-defined]
    return module


def dispose(module: llvm.ModuleRef) -> None:
    """Free a module ``parse_ir`` made, then its context; leave others alone
    (a ModuleRef the user passed in is the user's).

    Done explicitly: left to the garbage collector, a module and its context
    in one reference cycle may be finalised context first, which crashes LLVM.
    """
    context = getattr(module, "_orcjit_context", None)
    if context is None:
        return
    module.close()
    del module._orcjit_context
    if isinstance(context, _SharedContext):
        context.release()
    else:
        context.close()


def _checked(module: llvm.ModuleRef, name: str | None, verify: bool = True) -> llvm.ModuleRef:
    try:
        if verify:
            module.verify()
    except RuntimeError as e:
        dispose(module)
        raise InvalidIRError(f"IR does not verify: {str(e).strip()}") from None
    if name:
        module.name = name
    return module


def target_description(target_machine: llvm.TargetMachine) -> tuple[str, str]:
    """(triple, data layout) of a target machine (~90 us: compute it once)."""
    return target_machine.triple, str(target_machine.target_data)


def prepare_for_target(module: llvm.ModuleRef, triple: str, data_layout: str) -> None:
    """Fill in a missing triple and data layout.

    Asking LLVM costs four calls through the FFI (~25 us); a module parsed
    from text that starts with both lines (a lazy partition) is known to
    have them.
    """
    if getattr(module, "_orcjit_has_target", False):
        return
    if not module.triple:
        module.triple = triple
    if not module.data_layout:
        module.data_layout = data_layout
