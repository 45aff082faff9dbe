"""Which segment (protection) each kind of section is linked into."""

from __future__ import annotations

import pytest
from elfbuilder import ElfBuilder

from orcjit.arch import x86_64
from orcjit.link.elf import SHT_X86_64_UNWIND, parse_object
from orcjit.link.graph import Segment, build_graph


def _segments(*sections: tuple[str, str, int]) -> dict[str, Segment]:
    """Build an object with ``(name, flags, type)`` sections; each block's segment."""
    elf = ElfBuilder()
    for name, flags, section_type in sections:
        elf.section(name, b"\0" * 16, flags=flags, type=section_type)
    graph = build_graph(parse_object(elf.build()), x86_64)
    return {block.name: block.segment for block in graph.blocks}


@pytest.mark.parametrize("section_type", [SHT_X86_64_UNWIND, 1])   # LLVM's type, GCC's PROGBITS
def test_unwind_tables_go_with_the_code(section_type):
    """One allocation for a lazily compiled function's code and its .eh_frame."""
    segments = _segments((".text", "ax", 1), (".eh_frame", "a", section_type))
    assert segments == {".text": Segment.CODE, ".eh_frame": Segment.CODE}


def test_a_writable_eh_frame_stays_writable_data():
    """Never executable and writable at once: a writable .eh_frame is data."""
    assert _segments((".eh_frame", "wa", 1)) == {".eh_frame": Segment.DATA}


def test_other_read_only_sections_stay_read_only():
    segments = _segments((".rodata", "a", 1), (".data.rel.ro", "wa", 1), (".data", "wa", 1))
    assert segments == {".rodata": Segment.RODATA, ".data.rel.ro": Segment.RODATA,
                        ".data": Segment.DATA}
