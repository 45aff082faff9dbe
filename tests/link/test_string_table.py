"""ELF string tables: names at any offset, suffix sharing, non-ASCII bytes."""

from __future__ import annotations

import pytest

from orcjit.errors import InvalidObjectError
from orcjit.link.elf import _StringTable

TABLE = b"\0.rela.text\0f\xc3\xa9\0\xff\0"


def table() -> _StringTable:
    return _StringTable(b"junk" + TABLE, 4, len(TABLE), "symbol")


def test_names_start_at_their_offsets():
    t = table()
    assert t[0] == "" and t[1] == ".rela.text"


def test_a_suffix_shared_name_is_found_inside_a_longer_one():
    assert table()[6] == ".text"


def test_non_ascii_names_are_utf8_and_offsets_count_bytes():
    t = table()
    assert t[12] == "fé"
    assert t[13] == "é"               # inside a multi-byte name: still a byte offset
    assert t[16] == "\udcff"          # not UTF-8: the byte is kept


@pytest.mark.parametrize("offset", [-1, len(TABLE), len(TABLE) + 10])
def test_offsets_outside_the_table_are_refused(offset):
    with pytest.raises(InvalidObjectError, match="outside its string table"):
        table()[offset]


def test_a_name_without_its_terminator_is_refused():
    data = b"\0abc"
    with pytest.raises(InvalidObjectError, match="not NUL-terminated"):
        _StringTable(data, 0, len(data), "section")[1]
