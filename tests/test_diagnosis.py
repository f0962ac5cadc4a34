"""A diagnosis at every halt (real QEMU with tmk), its round trip through Parquet, and the oops parser."""

from __future__ import annotations

import shutil
from pathlib import Path

import petri_nb
from petri_nb import HaltReason
from petri_nb.model.diagnosis import from_timeline
from petri_nb.model.oops import parse_oops

#: What Debian 12's kernel prints for ``echo c > /proc/sysrq-trigger`` (shape of 6.1's output).
SYSRQ_PANIC = """\
[   14.204519] sysrq: Trigger a crash
[   14.205035] Kernel panic - not syncing: sysrq triggered crash
[   14.205630] CPU: 0 PID: 154 Comm: sh Not tainted 6.1.0-27-amd64 #1  Debian 6.1.115-1
[   14.206320] Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[   14.207100] Call Trace:
[   14.207350]  <TASK>
[   14.207559]  dump_stack_lvl+0x44/0x5c
[   14.207900]  panic+0x118/0x2ed
[   14.208200]  sysrq_handle_crash+0x16/0x20
[   14.208550]  __handle_sysrq.cold+0x43/0x11b
[   14.208900]  write_sysrq_trigger+0x24/0x40
[   14.209250]  proc_reg_write+0x56/0xa0
[   14.209600]  vfs_write+0xc7/0x3d0
[   14.210900]  ksys_write+0x6b/0xf0
[   14.211250]  do_syscall_64+0x58/0xc0
[   14.211600]  entry_SYSCALL_64_after_hwframe+0x64/0xce
[   14.212000] RIP: 0033:0x7f5a8a3b5f33
[   14.212300]  </TASK>
[   14.212500] Kernel Offset: 0x2a00000 from 0xffffffff81000000
[   14.213000] ---[ end Kernel panic - not syncing: sysrq triggered crash ]---
"""

PAGE_FAULT_OOPS = """\
[   30.100000] mymod: poking
[   30.100100] BUG: kernel NULL pointer dereference, address: 0000000000000000
[   30.100200] #PF: supervisor write access in kernel mode
[   30.100300] Oops: 0002 [#1] PREEMPT SMP NOPTI
[   30.100400] CPU: 0 PID: 200 Comm: insmod Tainted: G           O       6.1.0-27-amd64 #1
[   30.100500] RIP: 0010:poke_init+0x11/0x1000 [mymod]
[   30.100600] Code: Unable to access opcode bytes at 0xffffffffc0a0bfe7.
[   30.100700] Call Trace:
[   30.100800]  <TASK>
[   30.100900]  ? __die_body.cold+0x1a/0x1f
[   30.101000]  do_one_initcall+0x41/0x200
[   30.101100]  do_init_module+0x4c/0x1f0
[   30.101200]  </TASK>
[   30.101300] Kernel panic - not syncing: Fatal exception
"""


def test_a_sysrq_panic_is_parsed_with_message_and_call_trace() -> None:
    oops = parse_oops("boot noise\n" + SYSRQ_PANIC)
    assert oops is not None and oops.kind == "panic"
    assert oops.message == "Kernel panic - not syncing: sysrq triggered crash"
    assert oops.call_trace[:3] == ("dump_stack_lvl+0x44/0x5c", "panic+0x118/0x2ed", "sysrq_handle_crash+0x16/0x20")
    assert len(oops.call_trace) == 10
    assert oops.context == ("boot noise", "sysrq: Trigger a crash")


def test_an_oops_is_parsed_with_rip_and_the_panic_that_followed() -> None:
    oops = parse_oops(PAGE_FAULT_OOPS)
    assert oops is not None and oops.kind == "bug"
    assert oops.message.startswith("BUG: kernel NULL pointer dereference")
    assert oops.rip == "poke_init+0x11/0x1000"
    assert oops.call_trace == ("__die_body.cold+0x1a/0x1f", "do_one_initcall+0x41/0x200", "do_init_module+0x4c/0x1f0")
    assert oops.panic == "Kernel panic - not syncing: Fatal exception"
    assert parse_oops("tmk: ready\ntmk: triplefault\n") is None


def test_a_triple_fault_halt_carries_registers_screen_and_console(vm: petri_nb.Vm) -> None:
    vm.console.write("triplefault\n")
    halt = vm.wait_for_halt(timeout=30)
    assert halt.reason is HaltReason.TRIPLE_FAULT
    d = halt.diagnosis
    assert d is not None and not d.errors
    assert d.registers[0]["IDT.limit"] == 0 and d.registers[0]["EIP"] == vm.register("EIP")
    assert d.screen is not None and d.screen.size == vm.screenshot().size
    assert d.screen.tobytes() == vm.screenshot().tobytes()
    assert "tmk: triplefault" in d.console_tail and d.oops is None
    # The cause, decoded: tmk loads an empty IDT, then executes int3.
    assert d.instruction == f"{vm.register('EIP'):#x}: int3"
    assert any("IDT limit 0x0 does not cover the double-fault vector 8" in n for n in d.tables["notes"])
    assert [g["kind"] for g in d.tables["gdt"][:3]] == ["null", "code 32-bit", "data writable"] and not d.tables["idt"]
    assert d.cost_s < 0.5
    assert from_timeline(vm.timeline()) == [d]
    page = d._repr_html_()
    assert "data:image/png;base64," in page and "IDT.limit=0x0" in page and "tmk: triplefault" in page
    assert "int3" in page and "<summary>GDT</summary>" in page


def test_every_vcpu_is_in_the_diagnosis() -> None:
    with petri_nb.launch("tmk", cpus=2) as vm:
        vm.console.write("poweroff\n")
        assert sorted(vm.wait_for_halt(timeout=30).diagnosis.registers) == [0, 1]


def test_the_diagnosis_survives_parquet_and_read_timelines_elsewhere(tmp_path: Path) -> None:
    with petri_nb.launch("tmk") as vm:
        run_dir = vm.save_timeline(tmp_path / "here", interval=30)
        vm.console.write("triplefault\n")
        diagnosis = vm.wait_for_halt(timeout=30).diagnosis
    moved = tmp_path / "another-machine" / run_dir.name
    shutil.copytree(run_dir, moved)
    shutil.rmtree(tmp_path / "here")
    assert from_timeline(petri_nb.read_timelines(moved)) == [diagnosis]
