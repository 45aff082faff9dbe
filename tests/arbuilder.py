"""A minimal System V ``ar`` archive of given members, for tests."""

from __future__ import annotations


def ar(members: dict[str, bytes]) -> bytes:
    """An archive without a symbol index (orcjit indexes members itself)."""
    out = bytearray(b"!<arch>\n")
    for name, data in members.items():
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{644:<8}{len(data):<10}`\n"
        out += header.encode() + data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)
