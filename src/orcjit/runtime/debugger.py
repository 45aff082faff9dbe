"""Debugger support: GDB's JIT interface.

Each linked object that carries DWARF (``.debug_info``) is registered as a
*debug object*: a copy of the relocatable object whose section headers say
where each section was loaded (``sh_addr``), so a debugger can relocate its
debug info to the JIT'd code. Registration follows GDB's JIT interface: an
entry is linked into ``__jit_debug_descriptor`` and
``__jit_debug_register_code`` is called (GDB puts a breakpoint there).

If the process defines those two symbols (an embedding program linked with
them), its descriptor is used and GDB sees JIT'd code. Otherwise orcjit
keeps its own descriptor -- JIT'd code can still read it by name, as lli's
``-generate=__dump_jit_debug_descriptor`` test helpers do.
"""

from __future__ import annotations

import ctypes
import struct
import threading
from dataclasses import dataclass

JIT_NOACTION, JIT_REGISTER_FN, JIT_UNREGISTER_FN = 0, 1, 2
ACTION_NAMES = {JIT_NOACTION: "JIT_NOACTION", JIT_REGISTER_FN: "JIT_REGISTER_FN",
                JIT_UNREGISTER_FN: "JIT_UNREGISTER_FN"}


class JITCodeEntry(ctypes.Structure):
    pass


JITCodeEntry._fields_ = [
    ("next_entry", ctypes.POINTER(JITCodeEntry)),
    ("prev_entry", ctypes.POINTER(JITCodeEntry)),
    ("symfile_addr", ctypes.c_void_p),
    ("symfile_size", ctypes.c_uint64),
]


class JITDescriptor(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_uint32),
        ("action_flag", ctypes.c_uint32),
        ("relevant_entry", ctypes.POINTER(JITCodeEntry)),
        ("first_entry", ctypes.POINTER(JITCodeEntry)),
    ]


_libc = ctypes.CDLL(None)
_REGISTER_CODE = ctypes.CFUNCTYPE(None)


@dataclass(eq=False)
class Registration:
    entry: JITCodeEntry
    image: ctypes.Array   # keeps the debug object's bytes alive


def debug_object(data: bytes, load_addresses: dict[int, int]) -> bytes:
    """A copy of an ELF64 relocatable object whose sections have load addresses."""
    image = bytearray(data)
    shoff = struct.unpack_from("<Q", image, 0x28)[0]
    for index, address in load_addresses.items():
        struct.pack_into("<Q", image, shoff + index * 64 + 16, address)   # sh_addr
    return bytes(image)


class GDBJITRegistrar:
    """Registers debug objects with GDB's JIT interface."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        process_descriptor = _symbol("__jit_debug_descriptor")
        process_register = _symbol("__jit_debug_register_code")
        if process_descriptor and process_register:
            self.descriptor = JITDescriptor.from_address(process_descriptor)
            self._register_code = _REGISTER_CODE(process_register)
            self.shared_with_process = True
        else:
            self.descriptor = JITDescriptor(1, JIT_NOACTION, None, None)
            self._register_code = _REGISTER_CODE(lambda: None)
            self.shared_with_process = False
        self.registrations: list[Registration] = []

    @property
    def descriptor_address(self) -> int:
        return ctypes.addressof(self.descriptor)

    @property
    def register_code_address(self) -> int:
        return ctypes.cast(self._register_code, ctypes.c_void_p).value or 0

    def register(self, image_bytes: bytes) -> Registration:
        image = ctypes.create_string_buffer(image_bytes, len(image_bytes))
        entry = JITCodeEntry(None, None, ctypes.addressof(image), len(image_bytes))
        registration = Registration(entry, image)
        with self._lock:
            first = self.descriptor.first_entry
            entry.next_entry = first
            if first:
                first.contents.prev_entry = ctypes.pointer(entry)
            self.descriptor.first_entry = ctypes.pointer(entry)
            self._notify(entry, JIT_REGISTER_FN)
            self.registrations.append(registration)
        return registration

    def unregister(self, registration: Registration) -> None:
        entry = registration.entry
        with self._lock:
            if registration not in self.registrations:
                return
            self.registrations.remove(registration)
            prev, next_ = entry.prev_entry, entry.next_entry
            if prev:
                prev.contents.next_entry = next_
            else:
                self.descriptor.first_entry = next_
            if next_:
                next_.contents.prev_entry = prev
            self._notify(entry, JIT_UNREGISTER_FN)

    def _notify(self, entry: JITCodeEntry, action: int) -> None:
        self.descriptor.relevant_entry = ctypes.pointer(entry)
        self.descriptor.action_flag = action
        self._register_code()


def _symbol(name: str) -> int:
    try:
        return ctypes.cast(getattr(_libc, name), ctypes.c_void_p).value or 0
    except AttributeError:
        return 0


def format_descriptor(address: int) -> str:
    """lli's ``__dump_jit_debug_descriptor`` text for the descriptor at ``address``."""
    descriptor = JITDescriptor.from_address(address)
    lines = [f"Reading __jit_debug_descriptor at 0x{address:016X}", "",
             f"Version: {descriptor.version}",
             f"Action: {ACTION_NAMES.get(descriptor.action_flag, '<invalid action_flag>')}", "",
             f"{'Entry':>11}  {'Symbol File':>24}  {'Size':>15}  {'Previous Entry':>14}"]
    entry_ptr = descriptor.first_entry
    index = 0
    while entry_ptr:
        entry = entry_ptr.contents
        prev = ctypes.cast(entry.prev_entry, ctypes.c_void_p).value or 0
        lines.append(f"[{index:2}]  0x{ctypes.addressof(entry):016X}  "
                     f"0x{entry.symfile_addr or 0:016X}  {entry.symfile_size:8}  0x{prev:016X}")
        entry_ptr = entry.next_entry
        index += 1
    return "\n".join(lines) + "\n"


def debug_objects(address: int) -> bytes:
    """The bytes of every debug object registered in the descriptor at ``address``."""
    out = bytearray()
    entry_ptr = JITDescriptor.from_address(address).first_entry
    while entry_ptr:
        entry = entry_ptr.contents
        out += ctypes.string_at(entry.symfile_addr, entry.symfile_size)
        entry_ptr = entry.next_entry
    return bytes(out)
