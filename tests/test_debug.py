"""Registers, memory, disassembly and breakpoints against real QEMU with tmk."""

from __future__ import annotations

import re

import capstone
import pytest

import petri_nb
from petri_nb import HaltReason, PetriError
from petri_nb.backends.qemu.cpu import parse_info_registers
from petri_nb.model.x86 import cpu_mode
from petri_nb.vm.debug import BreakpointHit, hexdump

COUNT = re.compile(r"count=(\d+)\r?\n")


def count(vm: petri_nb.Vm) -> int:
    vm.console.write("count\n")
    return int(vm.console.expect(COUNT, timeout=10)[1])


def int3_address(vm: petri_nb.Vm) -> int:
    """The int3 in tmk's cmd_triplefault, found by disassembling the shipped kernel's code."""
    start = vm.symbols()["cmd_triplefault"]
    code = vm.read_memory(start, 64)
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
    return next(i.address for i in md.disasm(code, start) if i.mnemonic == "int3")


def test_after_triple_fault_registers_show_null_idt_and_rip_at_int3(vm: petri_nb.Vm) -> None:
    expected = int3_address(vm)
    vm.console.write("triplefault\n")
    assert vm.wait_for_halt(timeout=10).reason is HaltReason.TRIPLE_FAULT
    regs = vm.registers()
    values = dict(zip(regs["register"], regs["value"], strict=True))
    assert values["IDT.limit"] == 0 and values["IDT.base"] == 0
    assert values["EIP"] == expected
    assert "PE" in regs.set_index("register").loc["CR0", "decoded"]
    dis = vm.disassemble(count=3)
    assert dis.attrs["mode"] == 32
    first = dis.iloc[0]
    assert first["address"] == expected and first["mnemonic"] == "int3" and first["current"]


def test_registers_of_a_running_vm_pause_it_only_briefly(vm: petri_nb.Vm) -> None:
    regs = vm.registers(cpu=0)
    assert set(regs.columns) == {"cpu", "register", "value", "hex", "decoded"}
    assert {"EIP", "EFL", "CR0", "CS", "CS.base", "IDT.limit", "EFER"} <= set(regs["register"])
    efl = regs.set_index("register").loc["EFL"]
    assert ("IF" in efl["decoded"].split()) == bool(efl["value"] & 0x200)  # tmk runs with IF on and off
    assert vm.status() == "running"
    vm.pause()
    assert vm.register("eip") == vm.register("EIP")
    assert vm.status() == "paused"
    vm.resume()
    assert count(vm) == 1


def test_read_memory_of_vga_after_draw_matches_the_pattern(vm: petri_nb.Vm) -> None:
    n = 5
    vm.console.write(f"draw {n}\n")
    vm.console.expect(f"drawn {n}", timeout=10)
    screen = vm.read_memory(0xB8000, 80 * 25 * 2)
    for row in range(25):
        line = screen[row * 160:(row + 1) * 160]
        assert line == bytes([0xDB, (n + row) & 15]) * 80, f"row {row}"
    assert screen == vm.read_memory(0xB8000, 80 * 25 * 2, physical=True)
    assert screen.hexdump().startswith("00000000000b8000  db 05 db 05")


def test_breakpoint_on_the_command_handler_is_hit_when_a_command_is_sent(vm: petri_nb.Vm) -> None:
    addr = vm.break_at("run_command")
    vm.console.write("count\n")
    with pytest.raises(BreakpointHit) as hit:
        vm.wait_for_halt_or(lambda: vm.console.expect(COUNT, timeout=10), timeout=10)
    assert hit.value.stop.addr == addr
    assert vm.register("EIP") == addr
    assert vm.status() == "debug"
    frame = vm.timeline()
    assert (frame["kind"] == "breakpoint").sum() == 1
    next_pc = vm.step()
    assert next_pc != addr and vm.register("EIP") == next_pc
    vm.remove_breakpoint(addr)
    vm.continue_()
    assert int(vm.console.expect(COUNT, timeout=10)[1]) == 1
    assert count(vm) == 2  # no breakpoint any more


def test_write_memory_changes_the_guest_counter(vm: petri_nb.Vm) -> None:
    counter = vm.symbols()["counter"]
    vm.write_memory(counter, (41).to_bytes(4, "little"))
    assert vm.read_memory(counter, 4) == (41).to_bytes(4, "little")
    assert count(vm) == 42
    assert len(vm.registers()) > 20  # a read with gdb attached: paused via QMP, resumed via gdb
    assert vm.status() == "running"
    assert count(vm) == 43


def test_bad_inputs_are_clear_errors(vm: petri_nb.Vm) -> None:
    with pytest.raises(PetriError, match="cannot read 16 bytes at virtual address 0x40000000"):
        vm.read_memory(0x4000_0000, 16)  # tmk has 32 MiB and no paging: nothing there
    with pytest.raises(PetriError, match="unknown register 'XYZ'"):
        vm.register("XYZ")
    with pytest.raises(PetriError, match="no vCPU 3"):
        vm.registers(cpu=3)
    with pytest.raises(PetriError, match="address must be"):
        vm.read_memory(-1, 4)
    with pytest.raises(PetriError, match="size must be"):
        vm.read_memory(0, 0)
    with pytest.raises(PetriError, match="unknown symbol 'nope'"):
        vm.break_at("nope")
    with pytest.raises(PetriError, match="no breakpoint at"):
        vm.remove_breakpoint(0x100000)
    with pytest.raises(PetriError, match="count must be"):
        vm.disassemble(count=0)
    assert count(vm) == 1  # still usable


def test_breakpoint_on_a_vm_without_the_stub_is_a_clear_error() -> None:
    with petri_nb.launch("tmk", gdb=False) as vm:
        with pytest.raises(PetriError, match="no gdbstub"):
            vm.break_at("run_command")
        with pytest.raises(PetriError, match="no gdbstub"):
            vm.write_memory(0x100000, b"x")
        assert count(vm) == 1
        assert len(vm.registers()) > 20  # reads need no stub


@pytest.mark.parametrize("how", ["rewind", "restore_state"])
def test_breakpoints_hold_across_rewind_and_restore(vm: petri_nb.Vm, how: str) -> None:
    addr = vm.break_at("run_command")
    saved = vm.checkpoint("start") if how == "rewind" else vm.save_state()  # paused and resumed through gdb
    assert vm.status() == "running"
    vm.rewind("start") if how == "rewind" else vm.restore_state(saved)
    assert vm.breakpoint_stop is None
    vm.console.write("count\n")
    with pytest.raises(BreakpointHit) as hit:  # set again in the QEMU that took over (its own gdb socket)
        vm.wait_for_halt_or(lambda: vm.console.expect(COUNT, timeout=10), timeout=10)
    assert hit.value.stop.addr == addr
    vm.remove_breakpoint(addr)
    vm.continue_()
    assert int(vm.console.expect(COUNT, timeout=10)[1]) == 1


def test_parse_info_registers_64_bit_layout() -> None:
    text = (
        "RAX=0000000000000001 RBX=0000000000000002 RCX=0 RDX=0\n"
        "RIP=ffffffff81000000 RFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0\n"
        "CS =0010 0000000000000000 ffffffff 00af9b00 DPL=0 CS64 [-RA]\n"
        "IDT=     fffffe0000000000 00000fff\n"
        "CR0=80050033 CR2=0000000000000000 CR3=0000000001e0a000 CR4=000006f0\n"
        "EFER=0000000000000d01\n"
        "XMM00=00000000000000010000000000000002 XMM01=0 0\n"
    )
    regs = {r.name: r.value for r in parse_info_registers(text)}
    assert regs["RIP"] == 0xFFFFFFFF81000000 and regs["IDT.limit"] == 0xFFF
    assert cpu_mode(regs) == 64
    assert cpu_mode({**regs, "CR0": 0}) == 16


def test_hexdump_escapes_unprintable_guest_bytes() -> None:
    dump = hexdump(b"<b>\x00\x1b[31m", addr=0x10)
    assert dump.startswith("0000000000000010  3c 62 3e 00 1b")
    assert "|<b>..[31m|" in dump


def test_two_vcpus_and_a_panicked_vm_keep_readable_registers() -> None:
    with petri_nb.launch("tmk", cpus=2) as vm:
        assert sorted(set(vm.registers()["cpu"])) == [0, 1]
        assert len(vm.registers(cpu=1)) > 20
        vm.console.write("panic\n")
        assert vm.wait_for_halt(timeout=10).reason is HaltReason.PANIC
        assert vm.register("EIP") == vm.symbols()["stop"]  # parked after the pvpanic write
        with pytest.raises(PetriError, match="halted"):
            vm.continue_()


def test_step_refuses_a_running_guest_and_a_vcpu_in_hlt(vm: petri_nb.Vm) -> None:
    with pytest.raises(PetriError, match="needs a stopped guest"):
        vm.step()
    vm.pause()
    if vm.register("HLT"):  # tmk idles in hlt between inputs
        with pytest.raises(PetriError, match="halted in hlt"):
            vm.step()
    vm.resume()
    assert count(vm) == 1
