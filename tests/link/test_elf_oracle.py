"""orcjit's ELF reader against LLVM 14's llvm-readobj / llvm-readelf as an oracle.

Each test compiles one real object (a clang-14 fixture or a generated IR
module, under one combination of codegen optimisation level, code model and
relocation model), parses it with :func:`orcjit.link.elf.parse_object` and
compares every table with what Debian's ``llvm-readobj-14`` reports:

* section headers and symbols: ``llvm-readobj --elf-output-style=JSON -S -s``
  (LLVM 14 emits proper JSON for these two);
* relocations: ``llvm-readobj -r --expand-relocs``, LLVM-style text (LLVM 14's
  JSON output is broken for ``-r`` and ``-g``: it embeds raw text);
* COMDAT groups: ``llvm-readelf -g``, GNU-style text.

The objects are written to ``tmp_path`` for the tools. Everything is skipped
when the LLVM 14 binaries are not installed.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

import orcjit
from orcjit.link import elf

from . import _objects as objs

LLVM14 = Path("/usr/lib/llvm-14/bin")
READOBJ = LLVM14 / "llvm-readobj"
READELF = LLVM14 / "llvm-readelf"

pytestmark = pytest.mark.skipif(not (READOBJ.exists() and READELF.exists()),
                                reason="needs LLVM 14's llvm-readobj and llvm-readelf")

#: (opt_level, code_model, reloc_model) combinations every object is built with
CONFIGS = [
    (0, "small", "pic"),
    (2, "small", "pic"),
    (2, "large", "pic"),
    (2, "small", "static"),
    (0, "large", "static"),
]


def _config_id(opt_level: int, code_model: str, reloc_model: str) -> str:
    return f"O{opt_level}-{code_model}-{reloc_model}"


def _object_cases():
    for name in objs.FIXTURE_NAMES:
        for config in CONFIGS:
            yield pytest.param(("fixture", name, config), id=f"{name}-{_config_id(*config)}")
    for name in objs.GENERATED:
        for config in CONFIGS:
            yield pytest.param(("generated", name, config), id=f"{name}-{_config_id(*config)}")


def _build(case) -> bytes:
    source, name, config = case
    if source == "fixture":
        return objs.fixture_object(name, *config)
    return objs.generated_object(name, *config)


# -- the oracle ---------------------------------------------------------------------------


def _run(tool: Path, *args: str) -> str:
    result = subprocess.run([str(tool), *args], capture_output=True, check=True)
    return result.stdout.decode("utf-8", "surrogateescape")


def _readobj_json(path: Path, *flags: str) -> dict:
    (document,) = json.loads(_run(READOBJ, "--elf-output-style=JSON", *flags, str(path)))
    (body,) = document.values()
    return body


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


_RELA_SECTION = re.compile(r"^\s*Section \((\d+)\) (\S*) \{$")
_FIELD = re.compile(r"^\s*(Offset|Type|Symbol|Addend): (.*)$")
_PAREN_NUMBER = re.compile(r"\((\d+)\)$")


def oracle_relocations(path: Path) -> dict[int, list[tuple[int, int, int, int]]]:
    """RELA entries per *relocation* section index: (offset, type, symbol, addend)."""
    out: dict[int, list[tuple[int, int, int, int]]] = {}
    section = None
    entry: dict[str, int] = {}
    for line in _run(READOBJ, "-r", "--expand-relocs", str(path)).splitlines():
        if m := _RELA_SECTION.match(line):
            section = int(m.group(1))
            out[section] = []
        elif m := _FIELD.match(line):
            key, value = m.group(1), m.group(2).strip()
            if key in ("Offset", "Addend"):
                entry[key] = int(value, 16)
            else:
                number = _PAREN_NUMBER.search(value)
                assert number, f"no index in {line!r}"
                entry[key] = int(number.group(1))
        elif line.strip() == "}" and entry:
            assert section is not None, line
            assert entry.keys() == {"Offset", "Type", "Symbol", "Addend"}, line
            out[section].append((entry["Offset"], entry["Type"], entry["Symbol"],
                                 _signed64(entry["Addend"])))
            entry = {}
    return out


_GROUP = re.compile(
    r"^(COMDAT )?group section \[\s*(\d+)\] `(.*)' \[(.*)\] contains (\d+) sections:$")
_MEMBER = re.compile(r"^\s*\[\s*(\d+)\]\s+(.*)$")


def oracle_groups(path: Path) -> list[tuple[int, str, bool, list[int]]]:
    """(group section index, signature, is COMDAT, member section indices)."""
    groups = []
    expected = 0
    for line in _run(READELF, "-g", str(path)).splitlines():
        if m := _GROUP.match(line):
            groups.append((int(m.group(2)), m.group(4), bool(m.group(1)), []))
            expected = int(m.group(5))
        elif (m := _MEMBER.match(line)) and groups and m.group(1) != "Index":
            groups[-1][3].append(int(m.group(1)))
    if groups:
        assert len(groups[-1][3]) == expected
    return groups


def _first_mismatches(what: str, ours: list, theirs: list, limit: int = 8) -> None:
    assert len(ours) == len(theirs), f"{what}: orcjit has {len(ours)}, llvm-readobj {len(theirs)}"
    bad = [(i, a, b) for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    assert not bad, f"{what}: {len(bad)} differ; first (index, orcjit, llvm-readobj): {bad[:limit]}"


def compare_with_oracle(data: bytes, path: Path) -> elf.ObjectFile:
    path.write_bytes(data)
    obj = elf.parse_object(data)
    tables = _readobj_json(path, "-h", "-S", "-s")

    assert obj.machine == tables["ElfHeader"]["Machine"]["RawValue"] == elf.EM_X86_64

    theirs = []
    for entry in tables["Sections"]:
        s = entry["Section"]
        theirs.append((s["Index"], s["Name"]["Value"], s["Type"]["RawValue"],
                       s["Flags"]["RawFlags"], s["Offset"], s["Size"], s["Link"], s["Info"],
                       s["AddressAlignment"] or 1,    # orcjit normalises 0 to 1
                       s["EntrySize"]))
    ours = [(s.index, s.name, s.type, s.flags, s.offset, s.size, s.link, s.info, s.addralign,
             s.entsize) for s in obj.sections]
    _first_mismatches("sections", ours, theirs)
    for s in obj.sections:
        if s.type != elf.SHT_NOBITS:
            assert obj.section_data(s) == data[s.offset:s.offset + s.size]

    theirs = []
    for index, entry in enumerate(tables.get("Symbols", [])):
        s = entry["Symbol"]
        # readobj shows a section symbol's section name; its st_name is 0
        name = s["Name"]["Value"] if s["Name"]["RawValue"] else ""
        other = s["Other"]             # a plain number, or {"RawFlags": ...} when non-zero
        other = other if isinstance(other, int) else other["RawFlags"]
        theirs.append((index, name, s["Value"], s["Size"], s["Binding"]["RawValue"],
                       s["Type"]["RawValue"], other & 3, s["Section"]["RawValue"]))
    ours = [(s.index, s.name, s.value, s.size, s.bind, s.type, s.visibility, s.shndx)
            for s in obj.symbols]
    _first_mismatches("symbols", ours, theirs)

    expected: dict[int, list] = {}
    for rela_index, entries in oracle_relocations(path).items():
        target = obj.sections[rela_index].info
        expected.setdefault(target, []).extend(entries)
    assert sorted(obj.relocations) == sorted(expected), "sections with relocations differ"
    for target, entries in expected.items():
        _first_mismatches(f"relocations of section {target} ({obj.sections[target].name})",
                          obj.relocations[target], entries)

    ours_groups = [(g.section, g.signature, g.is_comdat, g.members) for g in obj.groups]
    assert ours_groups == oracle_groups(path)
    return obj


# -- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(_object_cases()))
def test_parse_matches_llvm_readobj(case, tmp_path):
    data = _build(case)
    obj = compare_with_oracle(data, tmp_path / f"{case[1]}.o")
    # the comparison must have had something to compare
    assert obj.symbols and obj.relocations


def test_oracle_sees_every_feature(tmp_path):
    """The generated objects do contain what they are meant to exercise."""
    obj = compare_with_oracle(objs.generated_object("gen_rich"), tmp_path / "rich.o")
    types = {s.type for s in obj.symbols}
    assert {elf.STT_GNU_IFUNC, elf.STT_TLS, elf.STT_SECTION, elf.STT_FILE} <= types
    assert any(s.shndx == elf.SHN_COMMON for s in obj.symbols)
    assert any(s.visibility == elf.STV_HIDDEN for s in obj.symbols)
    assert any(s.visibility == elf.STV_PROTECTED for s in obj.symbols)
    assert any(s.bind == elf.STB_WEAK and s.shndx == elf.SHN_UNDEF for s in obj.symbols)
    assert {g.signature for g in obj.groups} == {"inline_fn", "linkonce_data"}
    assert any(s.type == elf.SHT_NOBITS and s.flags & elf.SHF_TLS for s in obj.sections)
    names = {s.name for s in obj.sections}
    assert {".ctors", ".ctors.65434", ".dtors", "my_custom_section", ".tdata", ".tbss"} <= names

    large = compare_with_oracle(objs.generated_object("gen_rich", 2, "large", "pic"),
                                tmp_path / "rich-large.o")
    kinds = {rtype for entries in large.relocations.values() for _o, rtype, _s, _a in entries}
    assert {1, 25, 27, 29} & kinds, kinds     # 64-bit GOT-relative forms of the large model


EXTENDED_COUNT = 65300   # plus ~9 other sections: more than SHN_LORESERVE (0xff00 = 65280)


@pytest.fixture(scope="module")
def extended_object() -> bytes:
    data = objs.compile_ir(objs.gen_many_sections(EXTENDED_COUNT), 0)
    raw = objs.EHDR.unpack_from(data, 0)
    assert raw[12] == 0, "expected e_shnum = 0 (count in section 0's sh_size)"
    return data


@pytest.mark.slow
def test_extended_section_numbering_matches_llvm_readobj(extended_object, tmp_path):
    obj = compare_with_oracle(extended_object, tmp_path / "extended.o")
    assert len(obj.sections) > elf.SHN_LORESERVE
    assert any(s.type == elf.SHT_SYMTAB_SHNDX for s in obj.sections)
    last = next(s for s in obj.symbols if s.name == f"g{EXTENDED_COUNT - 1}")
    assert last.shndx >= elf.SHN_LORESERVE
    assert obj.sections[last.shndx].name == f".data.g{EXTENDED_COUNT - 1}"


def test_extended_section_numbering_parses(extended_object):
    """The cheap half of the slow oracle test: indices past SHN_LORESERVE resolve."""
    obj = elf.parse_object(extended_object)
    assert len(obj.sections) > EXTENDED_COUNT
    for i in (0, 1000, 65000, EXTENDED_COUNT - 1):
        sym = next(s for s in obj.symbols if s.name == f"g{i}")
        assert obj.sections[sym.shndx].name == f".data.g{i}"


def test_extended_section_numbering_links(extended_object):
    with orcjit.JIT() as jit:
        jit.add_object(extended_object)
        addresses = {i: jit.address(f"g{i}") for i in (0, 1000, 65000, EXTENDED_COUNT - 1)}
        assert all(addresses.values()), addresses     # checked before anything is called
        assert jit.lookup("get_first", "int()")() == 0
        assert jit.lookup("get_last", "int()")() == EXTENDED_COUNT - 1
