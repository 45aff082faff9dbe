"""x86-64: ELF relocation types, and the stubs the linker writes.

Every ``R_X86_64_*`` type we accept maps onto one target-independent edge
kind (formulas in :mod:`orcjit.link.edges`); types we recognise but do not
support (TLS, IFUNC copies, ...) raise with their name.
"""

from __future__ import annotations

from ..link.edges import EdgeKind as K

MACHINE = 62  # EM_X86_64
NAME = "x86_64"

#: ELF relocation type -> (name, edge kind)
RELOCATIONS: dict[int, tuple[str, K]] = {
    1: ("R_X86_64_64", K.POINTER64),
    2: ("R_X86_64_PC32", K.DELTA32),
    4: ("R_X86_64_PLT32", K.BRANCH32),
    9: ("R_X86_64_GOTPCREL", K.GOT_DELTA32),
    10: ("R_X86_64_32", K.POINTER32),
    11: ("R_X86_64_32S", K.POINTER32_SIGNED),
    12: ("R_X86_64_16", K.POINTER16),
    13: ("R_X86_64_PC16", K.DELTA16),
    14: ("R_X86_64_8", K.POINTER8),
    15: ("R_X86_64_PC8", K.DELTA8),
    24: ("R_X86_64_PC64", K.DELTA64),
    25: ("R_X86_64_GOTOFF64", K.DELTA64_FROM_GOT),
    26: ("R_X86_64_GOTPC32", K.DELTA32),   # target is _GLOBAL_OFFSET_TABLE_
    27: ("R_X86_64_GOT64", K.GOT_ENTRY_FROM_GOT64),
    28: ("R_X86_64_GOTPCREL64", K.GOT_DELTA64),
    29: ("R_X86_64_GOTPC64", K.DELTA64),   # target is _GLOBAL_OFFSET_TABLE_
    30: ("R_X86_64_GOTPLT64", K.GOT_ENTRY_FROM_GOT64),
    31: ("R_X86_64_PLTOFF64", K.PLT_FROM_GOT64),
    32: ("R_X86_64_SIZE32", K.SIZE32),
    33: ("R_X86_64_SIZE64", K.SIZE64),
    41: ("R_X86_64_GOTPCRELX", K.GOT_DELTA32),
    42: ("R_X86_64_REX_GOTPCRELX", K.GOT_DELTA32),
}

#: known but unsupported types, named in the error
UNSUPPORTED: dict[int, str] = {
    3: "R_X86_64_GOT32", 5: "R_X86_64_COPY",
    6: "R_X86_64_GLOB_DAT", 7: "R_X86_64_JUMP_SLOT", 8: "R_X86_64_RELATIVE",
    16: "R_X86_64_DTPMOD64 (TLS)", 17: "R_X86_64_DTPOFF64 (TLS)",
    18: "R_X86_64_TPOFF64 (TLS)", 19: "R_X86_64_TLSGD (TLS)", 20: "R_X86_64_TLSLD (TLS)",
    21: "R_X86_64_DTPOFF32 (TLS)", 22: "R_X86_64_GOTTPOFF (TLS)",
    23: "R_X86_64_TPOFF32 (TLS)", 34: "R_X86_64_GOTPC32_TLSDESC (TLS)",
    35: "R_X86_64_TLSDESC_CALL (TLS)", 36: "R_X86_64_TLSDESC (TLS)",
    37: "R_X86_64_IRELATIVE", 38: "R_X86_64_RELATIVE64",
}

R_X86_64_NONE = 0

GOT_ENTRY_SIZE = 8

#: ``jmp *slot(%rip)`` padded with ``int3``; the GOT slot holds the target
PLT_STUB = b"\xff\x25\x00\x00\x00\x00\xcc\xcc"
PLT_STUB_SIZE = len(PLT_STUB)
PLT_STUB_ALIGN = 8
#: the stub's displacement field: a DELTA32 edge to the slot at this offset
PLT_STUB_EDGE_OFFSET = 2
PLT_STUB_EDGE_ADDEND = -4
