"""The executor interface: the process where JIT'd code lives and runs.

The linker never touches target memory directly. It builds segments in
local working memory and asks an executor to reserve address space, to
write and protect segments (running finalise actions such as eh-frame
registration), to undo that, and to call code. The operations mirror
LLVM's executor-process-control (reserve / initialize / deinitialize /
release, memory writes, dylib open and lookup, run-as-main, calls), so a
remote executor can implement them over a wire protocol.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntFlag
from typing import NamedTuple


class Protection(IntFlag):
    NONE = 0
    READ = 1
    WRITE = 2
    EXEC = 4


class ActionCall(NamedTuple):
    """A call the executor makes for us: ``function(*args)`` with integer args."""

    function: int
    args: tuple[int, ...] = ()


@dataclass(slots=True)
class SegmentWrite:
    """Content for ``[address, address + size)``; bytes past ``content`` are zero.

    ``protection`` None: the pages have their final protection already."""

    address: int
    size: int
    content: bytes | bytearray
    protection: Protection | None


@dataclass(slots=True)
class FinalizeRequest:
    """Segments to commit, and actions: run ``finalize`` now, ``deallocate`` on undo."""

    segments: Sequence[SegmentWrite]
    actions: Sequence[tuple[ActionCall, ActionCall | None]] = field(default_factory=tuple)


class Executor(ABC):
    """Where JIT'd code is placed and run."""

    #: granularity of protections
    page_size: int = 4096

    # -- memory --------------------------------------------------------
    @abstractmethod
    def reserve(self, size: int) -> int:
        """Reserve ``size`` bytes of inaccessible address space; returns its base."""

    @abstractmethod
    def protect(self, address: int, size: int, protection: Protection) -> None:
        """Give reserved pages a protection (never both WRITE and EXEC)."""

    @abstractmethod
    def initialize(self, request: FinalizeRequest) -> int:
        """Write and protect segments, run finalise actions; returns a key for deinitialize."""

    @abstractmethod
    def deinitialize(self, key: int) -> None:
        """Run the deallocate actions of an initialize; segments it protected become
        inaccessible again and their memory goes back. (Segments written with
        ``protection`` None are the caller's to :meth:`discard`.)"""

    @abstractmethod
    def discard(self, address: int, size: int) -> None:
        """Give the memory of reserved pages back; they read as zeros afterwards
        and keep their protection."""

    @abstractmethod
    def release(self, base: int) -> None:
        """Give back a whole reservation."""

    @abstractmethod
    def write(self, address: int, data: bytes) -> None:
        """Write bytes at an address (also into code, e.g. to update a stub)."""

    @abstractmethod
    def read(self, address: int, size: int) -> bytes:
        """Read bytes at an address."""

    def write_pointer(self, address: int, value: int) -> None:
        """Store an aligned 64-bit pointer in one write (threads may be reading it)."""
        self.write(address, value.to_bytes(8, "little"))

    # -- symbols -------------------------------------------------------
    @abstractmethod
    def load_library(self, path: str | None) -> int:
        """Open a shared library (None: the process itself); returns a handle."""

    @abstractmethod
    def lookup(self, handle: int, name: str) -> int:
        """Address of ``name`` in an opened library, or 0."""

    # -- calls -----------------------------------------------------------
    @abstractmethod
    def call(self, call: ActionCall) -> int:
        """Call ``function(*args)`` (integer arguments); returns its integer result."""

    @abstractmethod
    def run_as_main(self, address: int, argv: Sequence[str],
                    envp: Sequence[str] | None = None) -> int:
        """Call ``int main(int argc, char **argv, char **envp)`` (envp: the
        executor's environment by default); returns its result."""

    def close(self) -> None:
        """Release everything the executor holds."""
