"""GDB's JIT interface: objects with DWARF are registered as debug objects."""

from __future__ import annotations

import ctypes

from orcjit.link import elf
from orcjit.runtime.debugger import JITDescriptor, debug_objects, format_descriptor

WITH_DEBUG_INFO = """
define i32 @answer() !dbg !9 {
  ret i32 42, !dbg !13
}
!llvm.module.flags = !{!1, !2}
!llvm.dbg.cu = !{!5}
!1 = !{i32 7, !"Dwarf Version", i32 4}
!2 = !{i32 2, !"Debug Info Version", i32 3}
!5 = distinct !DICompileUnit(language: DW_LANG_C99, file: !6, producer: "test", isOptimized: false, runtimeVersion: 0, emissionKind: FullDebug)
!6 = !DIFile(filename: "answer.c", directory: "/src")
!9 = distinct !DISubprogram(name: "answer", scope: !6, file: !6, line: 1, type: !10, scopeLine: 1, spFlags: DISPFlagDefinition, unit: !5)
!10 = !DISubroutineType(types: !11)
!11 = !{!12}
!12 = !DIBasicType(name: "int", size: 32, encoding: DW_ATE_signed)
!13 = !DILocation(line: 1, column: 1, scope: !9)
"""


def entries(descriptor_address: int) -> int:
    count, entry = 0, JITDescriptor.from_address(descriptor_address).first_entry
    while entry:
        count, entry = count + 1, entry.contents.next_entry
    return count


def test_debug_object_registered_with_load_addresses_and_unregistered(jit):
    debugger = jit.linker.platform.debugger
    address = debugger.descriptor_address
    before = entries(address)
    handle = jit.add_ir(WITH_DEBUG_INFO)
    assert entries(address) == before + 1
    obj = elf.parse_object(debug_objects(address))
    text = next(s for s in obj.sections if s.name == ".text")
    raw = debug_objects(address)
    shoff = int.from_bytes(raw[0x28:0x30], "little")
    sh_addr = int.from_bytes(raw[shoff + text.index * 64 + 16:shoff + text.index * 64 + 24], "little")
    assert sh_addr <= jit.address("answer") < sh_addr + text.size
    assert "Action: JIT_REGISTER_FN" in format_descriptor(address)
    jit.remove(handle)
    assert entries(address) == before
    assert JITDescriptor.from_address(address).action_flag == 2      # JIT_UNREGISTER_FN


def test_objects_without_debug_info_are_not_registered(jit):
    before = entries(jit.linker.platform.debugger.descriptor_address)
    jit.add_ir("define i32 @f() {\n  ret i32 1\n}\n")
    assert entries(jit.linker.platform.debugger.descriptor_address) == before


def test_jitted_code_can_read_the_descriptor(jit):
    jit.add_ir("@__jit_debug_descriptor = external global i8\n"
               "define ptr @descriptor() {\n  ret ptr @__jit_debug_descriptor\n}\n")
    assert jit.lookup("descriptor", "void*()")() == \
        jit.linker.platform.debugger.descriptor_address
    assert ctypes.c_uint32.from_address(jit.address("descriptor") and
                                        jit.linker.platform.debugger.descriptor_address).value == 1
