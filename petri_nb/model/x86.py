"""x86 facts read from registers and guest memory: the CPU mode, the program counter, the
instruction there, and the descriptor tables (GDT, IDT) decoded.

A triple fault is the CPU failing to deliver an exception three times over, so its cause is
nearly always in these tables (an empty or unmapped IDT, a gate to a missing segment) or in
the instruction at the program counter. The decoders are pure (bytes in, rows out).
"""

from __future__ import annotations

import struct
from typing import Any

#: Entries decoded per table: the 32 exception vectors, and a GDT's usual size.
MAX_ENTRIES = 32
#: Exceptions that escalate: a fault while delivering one of these is a double, then a triple fault.
DOUBLE_FAULT = 8
GATE_TYPES = {0x5: "task gate", 0x6: "16-bit interrupt gate", 0x7: "16-bit trap gate", 0xE: "interrupt gate",
              0xF: "trap gate"}
SYSTEM_TYPES = {0x1: "16-bit TSS", 0x2: "LDT", 0x3: "16-bit TSS (busy)", 0x9: "TSS", 0xB: "TSS (busy)",
                0xC: "call gate"}


def cpu_mode(regs: dict[str, int]) -> int:
    """16, 32 or 64: the code size the CPU executes in (CR0.PE, EFER.LMA, CS.L, CS.D)."""
    if not regs.get("CR0", 0) & 1:
        return 16
    cs_flags = regs.get("CS.flags", 0)
    if regs.get("EFER", 0) >> 10 & 1 and cs_flags >> 21 & 1:
        return 64
    return 32 if cs_flags >> 22 & 1 else 16


def long_mode(regs: dict[str, int]) -> bool:
    return bool(regs.get("EFER", 0) >> 10 & 1)


def program_counter(regs: dict[str, int]) -> int:
    ip = regs["RIP"] if "RIP" in regs else regs["EIP"]
    return (regs.get("CS.base", 0) + ip) & ((1 << 64) - 1)


def decode_instruction(code: bytes, address: int, mode: int) -> str:
    """The first instruction in ``code`` as ``mnemonic operands`` (capstone), or why there is none."""
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_X86, {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32,
                                            64: capstone.CS_MODE_64}[mode])
    for insn in md.disasm(code, address):
        return f"{insn.mnemonic} {insn.op_str}".strip()
    return f"(not an instruction: {code[:15].hex(' ')})"


def gdt_entries(data: bytes, long: bool) -> list[dict[str, Any]]:
    """Segment descriptors: selector, kind, base, limit (bytes - 1), DPL, present."""
    rows, offset = [], 0
    while offset + 8 <= len(data) and len(rows) < MAX_ENTRIES:
        lo, hi = struct.unpack_from("<II", data, offset)
        access, flags = hi >> 8 & 0xFF, hi >> 20 & 0xF
        limit = (lo & 0xFFFF) | (hi & 0xF0000)
        limit = limit << 12 | 0xFFF if flags & 0x8 else limit
        base = lo >> 16 | (hi & 0xFF) << 16 | (hi & 0xFF000000)
        system, kind_bits = not access & 0x10, access & 0xF
        wide = system and long and offset > 0  # 16-byte system descriptor in long mode
        if wide and offset + 16 <= len(data):
            base |= struct.unpack_from("<I", data, offset + 8)[0] << 32
        if offset == 0:
            kind = "null"
        elif system:
            kind = SYSTEM_TYPES.get(kind_bits, f"system type {kind_bits:#x}")
        elif kind_bits & 0x8:
            kind = "code " + ("64-bit" if flags & 0x2 else "32-bit" if flags & 0x4 else "16-bit")
        else:
            kind = "data " + ("writable" if kind_bits & 0x2 else "read-only")
        rows.append({"selector": offset, "kind": kind, "base": base, "limit": limit, "dpl": access >> 5 & 3,
                     "present": bool(access & 0x80)})
        offset += 16 if wide else 8
    return rows


def idt_entries(data: bytes, mode: int, long: bool) -> list[dict[str, Any]]:
    """Interrupt gates by vector: kind, selector, offset, DPL, present (real mode: the 4-byte IVT)."""
    rows = []
    if mode == 16 and not long:
        for vector in range(min(len(data) // 4, MAX_ENTRIES)):
            offset, segment = struct.unpack_from("<HH", data, vector * 4)
            rows.append({"vector": vector, "kind": "real-mode vector", "selector": segment, "offset": offset,
                         "dpl": 0, "present": True})
        return rows
    size = 16 if long else 8
    for vector in range(min(len(data) // size, MAX_ENTRIES)):
        lo, hi = struct.unpack_from("<II", data, vector * size)
        target = (lo & 0xFFFF) | (hi & 0xFFFF0000)
        if long:
            target |= struct.unpack_from("<I", data, vector * size + 8)[0] << 32
        access = hi >> 8 & 0xFF
        rows.append({"vector": vector, "kind": GATE_TYPES.get(access & 0xF, f"type {access & 0xF:#x}"),
                     "selector": lo >> 16, "offset": target, "dpl": access >> 5 & 3, "present": bool(access & 0x80)})
    return rows


def table_notes(regs: dict[str, int], gdt: list[dict[str, Any]], idt: list[dict[str, Any]]) -> list[str]:
    """What in the tables explains a triple fault, in words."""
    notes = []
    idt_limit, gate = regs.get("IDT.limit", 0), 16 if long_mode(regs) else 8
    if regs.get("CR0", 0) & 1 and idt_limit < (DOUBLE_FAULT + 1) * gate - 1:
        notes.append(f"IDT limit {idt_limit:#x} does not cover the double-fault vector 8: an exception cannot "
                     "be delivered, so the first one escalates to a triple fault")
    missing = [g["vector"] for g in idt if not g["present"]]
    if missing:
        notes.append(f"IDT vectors not present: {', '.join(map(str, missing[:12]))}"
                     + (" ..." if len(missing) > 12 else ""))
    cs = regs.get("CS", 0) & ~7
    if regs.get("CR0", 0) & 1 and cs and cs > regs.get("GDT.limit", 0):
        notes.append(f"CS selector {cs:#x} is beyond the GDT limit {regs.get('GDT.limit', 0):#x}")
    selectors = {d["selector"]: d for d in gdt}
    for g in idt:
        target = selectors.get(g["selector"] & ~7)
        if g["present"] and target is not None and not target["kind"].startswith("code"):
            notes.append(f"IDT vector {g['vector']} points at selector {g['selector']:#x}, a {target['kind']} segment")
            break
    return notes
