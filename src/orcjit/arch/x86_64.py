"""x86-64: ELF relocation types, and the stubs the linker writes.

Every ``R_X86_64_*`` type we accept maps onto one target-independent edge
kind (formulas in :mod:`orcjit.link.edges`); types we recognise but do not
support (TLS, IFUNC copies, ...) raise with their name.
"""

from __future__ import annotations

from ..errors import LinkError
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
    41: ("R_X86_64_GOTPCRELX", K.GOT_LOAD_DELTA32),
    42: ("R_X86_64_REX_GOTPCRELX", K.GOT_LOAD_DELTA32),
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

_MOV_LOAD, _LEA = 0x8B, 0x8D


def relax_got_load(code: bytearray, offset: int) -> bool:
    """Rewrite ``mov sym@GOTPCREL(%rip), %reg`` (REX prefixed or not), whose
    displacement is at ``offset``, into ``lea sym(%rip), %reg``: the same
    register gets the same address, computed instead of loaded. False (and
    nothing written) for any other instruction -- GOTPCRELX also marks
    ``call``, ``jmp`` and arithmetic that read the slot; they keep it.
    """
    if offset < 2 or code[offset - 2] != _MOV_LOAD or code[offset - 1] & 0xC7 != 0x05:
        return False                 # (ModRM 00 reg 101: RIP-relative disp32)
    code[offset - 2] = _LEA
    return True

GOT_ENTRY_SIZE = 8

#: ``jmp *slot(%rip)`` padded with ``int3``; the GOT slot holds the target
PLT_STUB = b"\xff\x25\x00\x00\x00\x00\xcc\xcc"
PLT_STUB_SIZE = len(PLT_STUB)
PLT_STUB_ALIGN = 8
#: the stub's displacement field: a DELTA32 edge to the slot at this offset
PLT_STUB_EDGE_OFFSET = 2
PLT_STUB_EDGE_ADDEND = -4


# -- lazy compilation: stubs, trampolines, the resolver ------------------------

#: ``jmp *slot(%rip)``: an indirect stub; its pointer slot says where it goes
STUB_SIZE = 8
#: ``call *resolver_slot(%rip)``: a trampoline; the pushed return address names it
TRAMPOLINE_SIZE = 8
#: the trampoline's return address is its own address plus this
TRAMPOLINE_RETURN_OFFSET = 6
#: stack the resolver needs, for the callback's own use of it
XSAVE_AREA = 4096


def _rip_jump(opcode: bytes, address: int, slot: int) -> bytes:
    disp = slot - (address + 6)
    if not -(1 << 31) <= disp < (1 << 31):
        raise LinkError("stub and slot are more than 2 GiB apart")
    return opcode + disp.to_bytes(4, "little", signed=True) + b"\xcc\xcc"


def stub_code(address: int, slot: int) -> bytes:
    """``jmp *slot(%rip)`` at ``address``, padded with ``int3``."""
    return _rip_jump(b"\xff\x25", address, slot)


def trampoline_code(address: int, resolver_slot: int) -> bytes:
    """``call *resolver_slot(%rip)`` at ``address``, padded with ``int3``."""
    return _rip_jump(b"\xff\x15", address, resolver_slot)


_SAVE_GPRS = (b"\x50\x51\x52\x56\x57"            # push rax, rcx, rdx, rsi, rdi
              b"\x41\x50\x41\x51\x41\x52\x41\x53")  # push r8, r9, r10, r11
_RESTORE_GPRS = (b"\x41\x5b\x41\x5a\x41\x59\x41\x58"  # pop r11, r10, r9, r8
                 b"\x5f\x5e\x5a\x59\x58")             # pop rdi, rsi, rdx, rcx, rax
# x87, SSE, AVX, AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM): at most 2,688 bytes.
# Not "everything": AMX tile data alone is 8 KB and is never an argument.
_VECTOR_COMPONENTS = b"\xb8\xe7\x00\x00\x00\x31\xd2"   # mov eax, 0xe7; xor edx, edx
# XRSTOR wants the 64-byte XSAVE header (at +512) clean; XSAVE fills only part of it
_CLEAR_XSAVE_HEADER = b"\x31\xc0" + b"".join(                # xor eax, eax
    b"\x48\x89\x84\x24" + (512 + 8 * i).to_bytes(4, "little") for i in range(8))


def resolver_code(callback: int, xsave: bool = True) -> bytes:
    """The one routine every trampoline calls.

    It saves every register a call may pass arguments in -- rdi, rsi, rdx,
    rcx, r8, r9, rax (the varargs vector count), r10 (static chain), r11
    and, with ``xsave``, the vector state (x87, xmm, ymm, zmm, opmasks;
    ``fxsave`` keeps x87 and xmm0-15 otherwise) -- calls ``callback(trampoline_return_address)``
    (a C function returning the body's address), writes that address over
    its own return address, restores everything and returns: into the body,
    with the stack exactly as the original caller left it.
    """
    code = bytearray()
    code += b"\x55"                      # push rbp
    code += b"\x48\x89\xe5"              # mov rbp, rsp
    code += _SAVE_GPRS
    code += b"\x48\x83\xe4\xc0"          # and rsp, -64
    code += b"\x48\x81\xec" + XSAVE_AREA.to_bytes(4, "little")   # sub rsp, XSAVE_AREA
    if xsave:
        code += _CLEAR_XSAVE_HEADER          # mov [rsp + 512 + 8i], rax
        code += _VECTOR_COMPONENTS
        code += b"\x48\x0f\xae\x24\x24"  # xsave64 [rsp]
    else:
        code += b"\x48\x0f\xae\x04\x24"  # fxsave64 [rsp]
    code += b"\x48\x8b\x7d\x08"          # mov rdi, [rbp + 8]   (trampoline return address)
    code += b"\x48\xb8" + callback.to_bytes(8, "little")   # movabs rax, callback
    code += b"\xff\xd0"                  # call rax
    code += b"\x48\x89\x45\x08"          # mov [rbp + 8], rax   (return into the body)
    if xsave:
        code += _VECTOR_COMPONENTS
        code += b"\x48\x0f\xae\x2c\x24"  # xrstor64 [rsp]
    else:
        code += b"\x48\x0f\xae\x0c\x24"  # fxrstor64 [rsp]
    code += b"\x48\x8d\x65\xb8"          # lea rsp, [rbp - 72]  (below the 9 saved registers)
    code += _RESTORE_GPRS
    code += b"\x5d"                      # pop rbp
    code += b"\xc3"                      # ret
    return bytes(code)


def host_supports_xsave() -> bool:
    """Whether the OS enabled XSAVE for user code (Linux reports ``xsave`` then)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "xsave" in line.split()
    except OSError:
        pass
    return False


def direct_stub_code(address: int, target: int) -> bytes:
    """``jmp target`` (rel32) at ``address``, padded to 8 bytes: a stub patched in place."""
    disp = target - (address + 5)
    if not -(1 << 31) <= disp < (1 << 31):
        raise LinkError("stub target is more than 2 GiB away")
    return b"\xe9" + disp.to_bytes(4, "little", signed=True) + b"\xcc\xcc\xcc"


def direct_stub_target(address: int, code: bytes) -> int:
    """Where a direct stub's ``jmp`` goes."""
    return address + 5 + int.from_bytes(code[1:5], "little", signed=True)


# -- the native worker (orcjit.runtime.native_worker) --------------------------
#
# A job block shared by the worker thread and one submitting thread at a time:
#   +0 state (u32, also the futex word)   +4 worker asleep (u32)
#   +8 function   +16..+40 four integer arguments   +48 result
#   +56 / +64 how many times the worker / the submitter yields its CPU
#   (``sched_yield``) waiting before it sleeps on the futex
#
# Waiting yields rather than spinning on ``pause``: on an idle CPU a yield
# returns at once (a spin that reacts within a syscall), on a busy one it
# lets the other threads run instead of stealing their time.
WORKER_IDLE, WORKER_JOB, WORKER_DONE, WORKER_STOP = 0, 1, 2, 3
WORKER_BLOCK_SIZE = 128
WORKER_SPIN_SLOT, SUBMITTER_SPIN_SLOT = 7, 8     # u64 indices of the yield counts
FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE, SYS_FUTEX, SYS_SCHED_YIELD = 128, 129, 202, 24
#: where ``submit`` and ``yield_loop`` start in the page the three are written to
WORKER_SUBMIT_OFFSET, WORKER_YIELD_LOOP_OFFSET = 192, 320

#: ``serve(block)``: run jobs until told to stop. Between jobs it yields a
#: while, then sleeps on the futex after flagging that it sleeps (xchg: a
#: full barrier, so a submitter either sees the flag or the worker the job).
WORKER_SERVE_CODE = (
    b"\x53"                              # push rbx
    b"\x41\x54"                          # push r12
    b"\x41\x55"                          # push r13            (keeps the stack 16-aligned)
    b"\x48\x89\xfb"                      # mov rbx, rdi        (the block)
    # wait:
    b"\x45\x31\xe4"                      # xor r12d, r12d      (yield count)
    # spin:
    b"\x8b\x03"                          # mov eax, [rbx]      (state)
    b"\x83\xf8\x01"                      # cmp eax, JOB
    b"\x74\x46"                          # je run
    b"\x83\xf8\x03"                      # cmp eax, STOP
    b"\x74\x77"                          # je exit
    b"\xb8\x18\x00\x00\x00"              # mov eax, SYS_sched_yield
    b"\x0f\x05"                          # syscall
    b"\x49\xff\xc4"                      # inc r12
    b"\x4c\x3b\x63\x38"                  # cmp r12, [rbx + 56]
    b"\x72\xe4"                          # jb spin
    b"\xb9\x01\x00\x00\x00"              # mov ecx, 1
    b"\x87\x4b\x04"                      # xchg [rbx + 4], ecx (asleep = 1)
    b"\x8b\x03"                          # mov eax, [rbx]      (state, again)
    b"\x83\xf8\x01"                      # cmp eax, JOB
    b"\x74\x19"                          # je awake
    b"\x83\xf8\x03"                      # cmp eax, STOP
    b"\x74\x14"                          # je awake
    b"\x89\xc2"                          # mov edx, eax        (sleep while state is this)
    b"\x48\x89\xdf"                      # mov rdi, rbx
    b"\xbe\x80\x00\x00\x00"              # mov esi, FUTEX_WAIT_PRIVATE
    b"\x45\x31\xd2"                      # xor r10d, r10d      (no timeout)
    b"\xb8\xca\x00\x00\x00"              # mov eax, SYS_futex
    b"\x0f\x05"                          # syscall
    # awake:
    b"\xc7\x43\x04\x00\x00\x00\x00"      # mov dword [rbx + 4], 0
    b"\xeb\xb0"                          # jmp wait
    # run:
    b"\x48\x8b\x7b\x10"                  # mov rdi, [rbx + 16]
    b"\x48\x8b\x73\x18"                  # mov rsi, [rbx + 24]
    b"\x48\x8b\x53\x20"                  # mov rdx, [rbx + 32]
    b"\x48\x8b\x4b\x28"                  # mov rcx, [rbx + 40]
    b"\xff\x53\x08"                      # call [rbx + 8]
    b"\x48\x89\x43\x30"                  # mov [rbx + 48], rax
    b"\xc7\x03\x02\x00\x00\x00"          # mov dword [rbx], DONE (a release store on x86)
    b"\x48\x89\xdf"                      # mov rdi, rbx
    b"\xbe\x81\x00\x00\x00"              # mov esi, FUTEX_WAKE_PRIVATE (the submitter may sleep)
    b"\xba\x01\x00\x00\x00"              # mov edx, 1
    b"\xb8\xca\x00\x00\x00"              # mov eax, SYS_futex
    b"\x0f\x05"                          # syscall
    b"\xe9\x7a\xff\xff\xff"              # jmp wait
    # exit:
    b"\x41\x5d"                          # pop r13
    b"\x41\x5c"                          # pop r12
    b"\x5b"                              # pop rbx
    b"\xc3"                              # ret
)

#: ``submit(block, function, a0, a1, a2, a3) -> result``: hand a job over,
#: wake the worker if it sleeps, yield (then sleep) until it is done.
WORKER_SUBMIT_CODE = (
    b"\x48\x89\x77\x08"                  # mov [rdi + 8], rsi
    b"\x48\x89\x57\x10"                  # mov [rdi + 16], rdx
    b"\x48\x89\x4f\x18"                  # mov [rdi + 24], rcx
    b"\x4c\x89\x47\x20"                  # mov [rdi + 32], r8
    b"\x4c\x89\x4f\x28"                  # mov [rdi + 40], r9
    b"\xb8\x01\x00\x00\x00"              # mov eax, JOB
    b"\x87\x07"                          # xchg [rdi], eax     (state = JOB; a full barrier)
    b"\x83\x7f\x04\x00"                  # cmp dword [rdi + 4], 0
    b"\x74\x11"                          # je wait             (the worker is awake)
    b"\xbe\x81\x00\x00\x00"              # mov esi, FUTEX_WAKE_PRIVATE
    b"\xba\x01\x00\x00\x00"              # mov edx, 1
    b"\xb8\xca\x00\x00\x00"              # mov eax, SYS_futex
    b"\x0f\x05"                          # syscall             (rdi: still the block)
    # wait:
    b"\x45\x31\xc0"                      # xor r8d, r8d        (yield count)
    # spin:
    b"\x8b\x07"                          # mov eax, [rdi]
    b"\x83\xf8\x02"                      # cmp eax, DONE
    b"\x74\x28"                          # je done
    b"\xb8\x18\x00\x00\x00"              # mov eax, SYS_sched_yield
    b"\x0f\x05"                          # syscall
    b"\x49\xff\xc0"                      # inc r8
    b"\x4c\x3b\x47\x40"                  # cmp r8, [rdi + 64]
    b"\x72\xe9"                          # jb spin
    b"\x8b\x17"                          # mov edx, [rdi]      (sleep while state is this)
    b"\x83\xfa\x02"                      # cmp edx, DONE
    b"\x74\x11"                          # je done
    b"\xbe\x80\x00\x00\x00"              # mov esi, FUTEX_WAIT_PRIVATE
    b"\x45\x31\xd2"                      # xor r10d, r10d
    b"\xb8\xca\x00\x00\x00"              # mov eax, SYS_futex
    b"\x0f\x05"                          # syscall
    b"\xeb\xce"                          # jmp wait
    # done:
    b"\x48\x8b\x47\x30"                  # mov rax, [rdi + 48]
    b"\xc7\x07\x00\x00\x00\x00"          # mov dword [rdi], IDLE
    b"\xc3"                              # ret
)

#: ``yield_loop(n)``: ``n`` yields, to learn what one costs here and so turn
#: the wait times into counts
WORKER_YIELD_LOOP_CODE = (
    b"\x49\x89\xf8"                      # mov r8, rdi
    b"\xb8\x18\x00\x00\x00"              # loop: mov eax, SYS_sched_yield
    b"\x0f\x05"                          # syscall
    b"\x49\xff\xc8"                      # dec r8
    b"\x75\xf4"                          # jnz loop
    b"\xc3"                              # ret
)
