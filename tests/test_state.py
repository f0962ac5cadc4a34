"""Save/restore, checkpoints and rewind against real QEMU with tmk."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time

import psutil
import pytest
from conftest import wait_until

import petri_nb
from petri_nb import HaltReason, PetriError
from petri_nb.backends.qemu import migration

COUNT = re.compile(r"count=(\d+)\r?\n")


def count(vm: petri_nb.Vm) -> int:
    vm.console.write("count\n")
    return int(vm.console.expect(COUNT, timeout=10)[1])


def test_verify_save_restore_passes_and_counter_continues(vm: petri_nb.Vm) -> None:
    assert count(vm) == 1
    result = vm.verify_save_restore()
    assert result["rounds"] == 2
    assert all(n > 0 for n in result["bytes"])
    assert count(vm) == 4  # the probe took 2 and 3: the guest went on, not back
    kinds = set(vm.timeline()["kind"])
    assert {"save_state()", "restore_state()", "save/restore verified"} <= kinds


def test_restore_replaces_qemu_keeps_name_and_leaves_no_orphan(vm: petri_nb.Vm) -> None:
    old_pid = vm.aio.runtime.proc.pid
    count(vm)
    data = vm.save_state()
    assert data.startswith(b"QEVM")
    count(vm)
    start = time.monotonic()
    vm.restore_state(data)
    took = time.monotonic() - start
    new_pid = vm.aio.runtime.proc.pid
    assert new_pid != old_pid
    wait_until(lambda: not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == "zombie",
               what="the old QEMU to exit")
    assert vm.state == "running" and vm.status() == "running"
    assert count(vm) == 2  # back to the saved counter (1), then one more
    assert took < 10
    print(f"save_state {len(data)} bytes; restore {took * 1000:.0f} ms")


@pytest.mark.parametrize("garbage", [b"", b"definitely not a VM", b"QEVM" + b"\x00\x01garbage" * 100])
def test_restore_of_garbage_is_a_clear_error_and_vm_still_usable(vm: petri_nb.Vm, garbage: bytes) -> None:
    pid = vm.aio.runtime.proc.pid
    with pytest.raises(PetriError, match="restore"):
        vm.restore_state(garbage)
    assert vm.aio.runtime.proc.pid == pid
    assert vm.status() == "running"
    assert count(vm) == 1


def test_restore_of_wrong_type_is_a_clear_error(vm: petri_nb.Vm) -> None:
    with pytest.raises(PetriError, match="bytes"):
        vm.restore_state("QEVM")  # type: ignore[arg-type]


def test_rewind_after_panic_runs_again_from_the_checkpoint(vm: petri_nb.Vm) -> None:
    assert count(vm) == 1
    cp = vm.checkpoint("before-panic")
    assert cp.size > 0
    assert count(vm) == 2
    vm.console.write("panic\n")
    assert vm.wait_for_halt(timeout=10).reason is HaltReason.PANIC
    start = time.monotonic()
    vm.rewind("before-panic")
    took = time.monotonic() - start
    assert vm.state == "running"
    assert count(vm) == 2  # the counter is the checkpoint's (1), plus this call
    frame = vm.timeline()
    assert (frame["kind"] == "checkpoint").sum() == 1 and (frame["kind"] == "rewind").sum() == 1
    print(f"checkpoint {cp.size} bytes in {cp.save_s * 1000:.0f} ms; rewind {took * 1000:.0f} ms")


def test_rewind_bad_names_are_clear_errors(vm: petri_nb.Vm) -> None:
    with pytest.raises(PetriError, match="no checkpoint taken"):
        vm.rewind()
    vm.checkpoint()
    with pytest.raises(PetriError, match="no checkpoint named 'nope'"):
        vm.rewind("nope")
    with pytest.raises(PetriError, match="non-empty string"):
        vm.checkpoint("")
    assert [c.name for c in vm.checkpoints()] == ["cp-1"]


def test_auto_checkpoint_takes_and_prunes_checkpoints(vm: petri_nb.Vm) -> None:
    vm.auto_checkpoint(every=0.1, keep=2)
    try:
        wait_until(lambda: any(c.name == "auto-3" for c in vm.checkpoints()), timeout=20, what="3 auto checkpoints")
        for bad in ({"every": 0}, {"keep": 0}):  # refused before the running one is touched
            with pytest.raises(petri_nb.BadArgument):
                vm.auto_checkpoint(**bad)
        wait_until(lambda: any(c.name == "auto-5" for c in vm.checkpoints()), timeout=20,
                   what="auto checkpoints going on after bad input")
    finally:
        vm.auto_checkpoint(None)
    names = [c.name for c in vm.checkpoints()]
    assert len(names) <= 2 and "auto-1" not in names
    with pytest.raises(PetriError):
        vm.auto_checkpoint(every=0)
    assert count(vm) == 1


def test_restored_qemu_still_dies_with_its_parent() -> None:
    script = (
        "import sys, petri_nb\n"
        "vm = petri_nb.launch('tmk')\n"
        "vm.restore_state(vm.save_state())\n"
        "print(vm.aio.runtime.proc.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())  # type: ignore[union-attr]
        assert psutil.Process(pid).name().startswith("qemu-system")
    finally:
        parent.kill()  # SIGKILL: no Python cleanup runs, only the parent-death signal
        parent.wait()

    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    try:
        wait_until(gone, timeout=10, what="the restored QEMU to die with its parent")
    finally:
        if not gone():
            psutil.Process(pid).kill()


def test_a_save_resumes_the_vm_even_when_qemu_has_not_finalized_the_migration_yet() -> None:
    """QEMU 7.2 reports the migration ``completed`` a moment before it moves the VM from
    finish-migrate to postmigrate, and refuses ``cont`` in between ("Migration is not finalized
    yet": once in a CI run, a boot cache store that gave up). The window is too short to hit on
    demand, so QEMU's answers are played here in that order to the save itself."""
    answers = iter(["running", "finish-migrate", "finish-migrate", "postmigrate"])
    seen: list[str] = []  # QEMU's run states, as query-status gave them
    calls: list[str] = []

    async def execute(command: str, args: object = None) -> object:
        calls.append(command)
        return {"status": "completed"} if command == "query-migrate" else {}

    async def status() -> str:
        calls.append("query-status")
        seen.append(next(answers))
        return seen[-1]

    async def pause() -> None:
        calls.append("stop")

    async def resume() -> None:
        calls.append("cont")
        if seen[-1] != "postmigrate":
            raise petri_nb.QemuRefused("cont", Exception("Migration is not finalized yet"))

    data = asyncio.run(migration.save(execute, lambda fd: None, status, pause, resume))
    assert data == b""  # the scripted QEMU wrote nothing into the pipe
    assert calls[-5:] == ["cont", "query-status", "query-status", "query-status", "cont"]
    assert seen[-1] == "postmigrate"  # it resumed once QEMU had moved on, and asked no more
