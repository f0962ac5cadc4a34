"""Calls are raced against halts and against QEMU disappearing."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest

import petri_nb
from petri_nb import HaltReason, VmGone, VmHalted
from tests.conftest import wait_until


def test_console_expect_pending_when_tmk_panics_raises_vm_halted(vm: petri_nb.Vm):
    vm.console.write("panic\n")
    with pytest.raises(VmHalted) as info:
        vm.console.expect("this text never comes", timeout=20)
    assert info.value.halt.reason is HaltReason.PANIC
    assert "PANIC" in str(info.value)
    # The halt stays pending for wait_for_halt, as in petri.
    assert vm.wait_for_halt(timeout=5).reason is HaltReason.PANIC


def test_wait_for_halt_or_raises_vm_halted_when_the_guest_panics_meanwhile():
    async def scenario() -> None:
        vm = await petri_nb.launch_async("tmk")
        try:
            pending = asyncio.ensure_future(vm.wait_for_halt_or(asyncio.sleep(60)))
            await vm.console.write("panic\n")
            with pytest.raises(VmHalted) as info:
                await asyncio.wait_for(pending, 20)
            assert info.value.halt.reason is HaltReason.PANIC
        finally:
            await vm.teardown()

    asyncio.run(scenario())


def test_wait_for_halt_or_returns_the_calls_result_when_no_halt(vm: petri_nb.Vm):
    vm.console.write("count\n")
    match = vm.wait_for_halt_or(lambda: vm.console.expect(r"count=(\d+)", timeout=10))
    assert match.group(1) == "1"


def test_kill_9_of_qemu_during_wait_for_halt_gives_vm_gone_within_a_second(vm: petri_nb.Vm):
    pid = vm.aio.runtime.proc.pid
    killed_at: list[float] = []

    def kill() -> None:
        killed_at.append(time.monotonic())
        os.kill(pid, signal.SIGKILL)

    timer = threading.Timer(0.3, kill)
    timer.start()
    with pytest.raises(VmGone) as info:
        vm.wait_for_halt(timeout=30)
    elapsed = time.monotonic() - killed_at[0]
    assert elapsed < 1.0, f"VmGone took {elapsed:.2f} s"
    assert "SIGKILL" in str(info.value)
    assert vm.state == "gone"
    with pytest.raises(VmGone):
        vm.pause()


def test_calls_after_teardown_fail_clearly_and_teardown_is_idempotent():
    with petri_nb.launch("tmk") as vm:
        pass
    vm.teardown()
    with pytest.raises(petri_nb.PetriError, match="torn down"):
        vm.reset()


def test_a_control_call_that_outlives_its_timeout_is_a_petri_timeout(vm: petri_nb.Vm):
    # wait_for_halt runs the control-call race (VM loss and timeout, no halt watcher).
    t0 = time.monotonic()
    with pytest.raises(petri_nb.PetriTimeout, match="waiting for the VM to halt"):
        vm.wait_for_halt(timeout=0.2)
    assert time.monotonic() - t0 < 2
    assert vm.status() == "running"  # the VM and its calls are unharmed


async def _in_flight(vm: petri_nb.Vm) -> None:
    """Until the call just scheduled from this loop waits on the runtime loop (an event, not a sleep)."""
    await asyncio.to_thread(wait_until, lambda: vm.aio.calls_in_flight > 0, 5, "the call to start")


def test_cancelling_an_async_call_from_a_user_loop_cancels_it_on_the_runtime_loop(vm: petri_nb.Vm):
    async def scenario() -> None:
        pending = asyncio.ensure_future(vm.aio.wait_for_halt(timeout=30))
        await _in_flight(vm)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending

    asyncio.run(scenario())
    wait_until(lambda: "CancelledError" in " ".join(vm.timeline().query("kind == 'wait_for_halt()'")["detail"]),
               timeout=5, what="the cancelled call on the timeline")
    assert vm.status() == "running"


def test_a_control_call_when_qemu_is_killed_gives_vm_gone(vm: petri_nb.Vm):
    async def scenario() -> None:
        pending = asyncio.ensure_future(vm.aio.wait_for_halt(timeout=30))
        await _in_flight(vm)
        os.kill(vm.pid, signal.SIGKILL)
        with pytest.raises(VmGone):
            await asyncio.wait_for(pending, 5)

    asyncio.run(scenario())
