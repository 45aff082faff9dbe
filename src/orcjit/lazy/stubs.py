"""IndirectStubsManager: named stubs that jump through an updatable pointer.

A stub is ``jmp *slot(%rip)`` in code memory; its slot is an 8-byte pointer
in memory that is read-only to JIT'd code and updated by us through the
executor's write view in one aligned store, so a thread calling the stub
sees the old target or the new one, never half of each. The stub's address
is the function's address for everyone: taking it anywhere gives the same
value, whatever body the slot points at now.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import ModuleType

from ..arch import x86_64
from ..errors import JITError
from ..link.memory import MemoryPool


@dataclass(slots=True)
class _Block:
    memory: object
    stubs: int      # address of the first stub
    slots: int      # address of the first slot


class IndirectStubsManager:
    """Creates stubs in blocks of ``block_size``; reuses freed ones."""

    def __init__(self, pool: MemoryPool, arch: ModuleType = x86_64, block_size: int = 512):
        self.pool = pool
        self.arch = arch
        self.block_size = block_size
        self._blocks: list[_Block] = []
        self._free: list[tuple[int, int]] = []            # (stub, slot)
        self._by_name: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def _stub_code(self, stub: int, slot: int) -> bytes:
        return self.arch.stub_code(stub, slot)

    def _grow(self) -> None:
        memory = self.pool.create_memory_manager()
        n = self.block_size
        code_base, slots_base, _ = memory.allocate([n * self.arch.STUB_SIZE, n * 8, 0])
        code = b"".join(self._stub_code(code_base + i * self.arch.STUB_SIZE, slots_base + i * 8)
                        for i in range(n))
        memory.finalize([code, bytes(n * 8), b""])
        self._blocks.append(_Block(memory, code_base, slots_base))
        self._free.extend((code_base + i * self.arch.STUB_SIZE, slots_base + i * 8)
                          for i in reversed(range(n)))

    def create_stub(self, name: str, target: int) -> int:
        """A new stub ``name`` jumping to ``target``; returns the stub's address."""
        with self._lock:
            if name in self._by_name:
                raise JITError(f"a stub named {name!r} already exists")
            if not self._free:
                self._grow()
            stub, slot = self._free.pop()
            self._by_name[name] = (stub, slot)
            self._retarget(stub, slot, target)
        return stub

    def _retarget(self, stub: int, slot: int, target: int) -> None:
        self.pool.executor.write_pointer(slot, target)

    def find_stub(self, name: str) -> int:
        """The stub's address, or 0."""
        entry = self._by_name.get(name)
        return entry[0] if entry else 0

    def pointer_address(self, name: str) -> int:
        """Where the stub's target is stored, or 0."""
        entry = self._by_name.get(name)
        return entry[1] if entry else 0

    def _entry(self, name: str) -> tuple[int, int]:
        entry = self._by_name.get(name)
        if entry is None:
            raise JITError(f"no stub named {name!r}")
        return entry

    def target(self, name: str) -> int:
        """Where the stub jumps now."""
        return int.from_bytes(self.pool.executor.read(self._entry(name)[1], 8), "little")

    def update_pointer(self, name: str, target: int) -> None:
        """Point the stub at ``target`` (one atomic store)."""
        self._retarget(*self._entry(name), target)

    def remove_stub(self, name: str) -> None:
        """Free a stub for reuse; calls through it afterwards are the caller's bug."""
        with self._lock:
            entry = self._by_name.pop(name, None)
            if entry is not None:
                self._free.append(entry)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def close(self) -> None:
        with self._lock:
            for block in self._blocks:
                block.memory.deallocate()  # type: ignore[attr-defined]
            self._blocks.clear()
            self._free.clear()
            self._by_name.clear()


class DirectStubsManager(IndirectStubsManager):
    """Stubs that are patched in place: ``jmp target`` (single indirection).

    A call costs one direct jump instead of an indirect one through memory.
    The 8-byte stub is rewritten in one aligned store through the write view
    (never writable where it executes). Targets must lie within +-2 GiB of
    the stub, which holds for everything in the JIT's memory pool.
    """

    def _stub_code(self, stub: int, slot: int) -> bytes:
        return self.arch.direct_stub_code(stub, stub)        # a jump to itself until set

    def _retarget(self, stub: int, slot: int, target: int) -> None:
        code = self.arch.direct_stub_code(stub, target)
        self.pool.executor.write_pointer(stub, int.from_bytes(code, "little"))

    def target(self, name: str) -> int:
        stub = self._entry(name)[0]
        return self.arch.direct_stub_target(stub, self.pool.executor.read(stub, 8))
