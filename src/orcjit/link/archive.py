"""Static archives (``ar``): find the member that defines a symbol.

Reads the common (GNU/System V) format: the ``!<arch>\\n`` magic, 60-byte
member headers, the ``/`` symbol index and the ``//`` long-name table. The
symbol index maps names to members, so a member is only parsed when one of
its symbols is actually needed -- members are linked on demand, as a
static linker does. Archives without an index are indexed by reading each
member's symbol table once.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidObjectError
from . import elf

MAGIC = b"!<arch>\n"
_HEADER = 60


@dataclass(slots=True)
class Member:
    name: str
    offset: int          # of the header
    data: bytes


class Archive:
    """An archive's members and the symbols they define."""

    def __init__(self, data: bytes, name: str = "<archive>"):
        if not data.startswith(MAGIC):
            raise InvalidObjectError(f"{name}: not an ar archive (bad magic)")
        self.name = name
        self.members: list[Member] = []
        self.symbols: dict[str, Member] = {}
        index: list[tuple[str, int]] = []
        long_names = b""
        by_offset: dict[int, Member] = {}
        pos = len(MAGIC)
        while pos + _HEADER <= len(data):
            header = data[pos:pos + _HEADER]
            if header[58:60] != b"`\n":
                raise InvalidObjectError(f"{name}: bad member header at {pos:#x}")
            raw_name = header[:16].decode("ascii", "replace").rstrip()
            try:
                size = int(header[48:58].decode("ascii").strip() or 0)
            except ValueError:
                size = -1
            if size < 0:
                raise InvalidObjectError(f"{name}: bad member size at {pos:#x}")
            start = pos + _HEADER
            if start + size > len(data):
                raise InvalidObjectError(f"{name}: member at {pos:#x} is truncated")
            body = data[start:start + size]
            if raw_name == "/":
                index = _read_index(body, name)
            elif raw_name == "//":
                long_names = body
            elif raw_name != "/SYM64/":
                member = Member(_member_name(raw_name, long_names), pos, body)
                self.members.append(member)
                by_offset[pos] = member
            pos = start + size + (size & 1)
        if index:
            for symbol, offset in index:
                indexed = by_offset.get(offset)
                if indexed is not None:
                    self.symbols.setdefault(symbol, indexed)
        else:
            for member in self.members:
                self._index_member(member)

    def _index_member(self, member: Member) -> None:
        try:
            obj = elf.parse_object(member.data)
        except InvalidObjectError:
            return                        # not an object (e.g. a text file): never linked
        for sym in obj.symbols:
            if sym.bind != elf.STB_LOCAL and sym.shndx != elf.SHN_UNDEF and sym.name:
                self.symbols.setdefault(sym.name, member)

    def member_defining(self, name: str) -> Member | None:
        return self.symbols.get(name)


def _read_index(body: bytes, name: str) -> list[tuple[str, int]]:
    if len(body) < 4:
        raise InvalidObjectError(f"{name}: truncated symbol index")
    count = struct.unpack_from(">I", body, 0)[0]
    if 4 + 4 * count > len(body):
        raise InvalidObjectError(f"{name}: symbol index overruns its member")
    offsets = struct.unpack_from(f">{count}I", body, 4)
    names = body[4 + 4 * count:].split(b"\0")
    return [(names[i].decode("utf-8", "surrogateescape"), offsets[i])
            for i in range(min(count, len(names)))]


def _member_name(raw: str, long_names: bytes) -> str:
    if raw.startswith("/") and raw[1:].isdigit():
        start = int(raw[1:])
        end = long_names.find(b"/\n", start)
        return long_names[start:end if end >= 0 else None].decode("utf-8", "replace")
    return raw.rstrip("/")


class ArchiveMembers:
    """A definition generator: links the archive member that defines a name.

    Install it in an ObjectLinkingLayer's ``definition_generators``; when a
    name nothing defines is needed, the first archive (in the order added)
    with a member defining it has that member added as an object set --
    once while that set lives: a member whose set was removed (or dropped
    by :meth:`drop_failed`) is linked again when next needed.
    """

    def __init__(self, linker: Any):
        self.linker = linker
        self.archives: list[Archive] = []
        self._linked: dict[int, Any] = {}     # id(member) -> the Handle of its set

    def add(self, archive: Archive) -> None:
        self.archives.append(archive)

    def __call__(self, name: str) -> bool:
        for archive in self.archives:
            member = archive.member_defining(name)
            if member is None:
                continue
            handle = self._linked.get(id(member))
            if handle is not None and self.linker.owns(handle):
                continue
            self._linked[id(member)] = self.linker.add_object_set(
                [member.data], names=[f"{archive.name}({member.name})"])
            return True
        return False

    def drop_failed(self) -> None:
        """Remove the members' sets that failed (their constructors, or those
        of a set they bind to), so that a later need links them afresh --
        after a failed add, as if it had never pulled them in."""
        failed = set(self.linker.failed_handles())
        for key, handle in list(self._linked.items()):
            if handle in failed:
                del self._linked[key]
                self.linker.remove_object_set(handle)
