"""Descriptor tables decoded from bytes laid out as the CPU reads them (pure, no VM)."""

from __future__ import annotations

import struct

from petri_nb.model import x86


def segment(base: int, limit: int, access: int, flags: int) -> bytes:
    lo = (limit & 0xFFFF) | (base & 0xFFFF) << 16
    hi = (base >> 16 & 0xFF) | access << 8 | (limit >> 16 & 0xF) << 16 | flags << 20 | (base >> 24 & 0xFF) << 24
    return struct.pack("<II", lo, hi)


def gate64(target: int, selector: int, access: int) -> bytes:
    return struct.pack("<HHHHII", target & 0xFFFF, selector, access << 8, target >> 16 & 0xFFFF, target >> 32, 0)


def test_a_long_mode_gdt_with_a_16_byte_tss() -> None:
    tss_base = 0xFFFF_8000_1234_5000
    data = (bytes(8) + segment(0, 0xFFFFF, 0x9A, 0xA) + segment(0, 0xFFFFF, 0x92, 0xC)
            + segment(tss_base & 0xFFFFFFFF, 0x67, 0x89, 0) + struct.pack("<II", tss_base >> 32, 0))
    rows = x86.gdt_entries(data, long=True)
    assert [(r["selector"], r["kind"]) for r in rows] == [(0, "null"), (8, "code 64-bit"), (16, "data writable"),
                                                          (24, "TSS")]
    assert rows[1]["limit"] == 0xFFFFFFFF and rows[3]["base"] == tss_base and rows[3]["limit"] == 0x67


def test_a_long_mode_idt_and_what_it_explains() -> None:
    data = gate64(0xFFFF_FFFF_8100_0000, 0x08, 0x8E) + gate64(0, 0x10, 0x0E) + gate64(0x1000, 0x10, 0x8F)
    idt = x86.idt_entries(data, mode=64, long=True)
    assert idt[0] == {"vector": 0, "kind": "interrupt gate", "selector": 8, "offset": 0xFFFF_FFFF_8100_0000,
                      "dpl": 0, "present": True}
    assert not idt[1]["present"] and idt[2]["kind"] == "trap gate"
    gdt = x86.gdt_entries(bytes(8) + segment(0, 0xFFFFF, 0x9A, 0xA) + segment(0, 0xFFFFF, 0x92, 0xC), long=True)
    regs = {"CR0": 1, "EFER": 1 << 10, "IDT.limit": len(data) - 1, "GDT.limit": 23, "CS": 0x08}
    notes = x86.table_notes(regs, gdt, idt)
    assert any("does not cover the double-fault vector 8" in n for n in notes)
    assert "IDT vectors not present: 1" in notes
    assert any("vector 2 points at selector 0x10, a data writable segment" in n for n in notes)


def test_real_mode_reads_the_ivt_and_decodes_in_16_bits() -> None:
    assert x86.idt_entries(struct.pack("<HHHH", 0x1234, 0xF000, 0x5678, 0xC000), mode=16, long=False)[1] == {
        "vector": 1, "kind": "real-mode vector", "selector": 0xC000, "offset": 0x5678, "dpl": 0, "present": True}
    assert x86.decode_instruction(b"\xcd\x10", 0x7C00, 16) == "int 0x10"
    assert x86.decode_instruction(b"\xff\xff", 0, 32).startswith("(not an instruction")
    assert x86.cpu_mode({"CR0": 0}) == 16 and x86.program_counter({"EIP": 0x10, "CS.base": 0xF0000}) == 0xF0010
