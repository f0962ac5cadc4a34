"""A reset soak over several VMs ends with no growth in fds, threads, children or RSS.

CI size by default (200 resets); ``PETRI_NB_FULL_SOAK=1`` runs the full 1000.
Bounds: fds and child processes back to exactly where they were, at most 2 more
threads (the default executor may grow), Python RSS +32 MiB. QEMU's RSS grows with
TCG's translated code on every reset, so it is bounded absolutely instead: guest RAM
+ the TCG code buffer petri_nb configures + 64 MiB for QEMU itself.
"""

from __future__ import annotations

import asyncio
import os

import psutil
import pytest

import petri_nb
from petri_nb.backends.qemu.command import TCG_TB_SIZE_MIB
from petri_nb.guests.tmk import READY

VMS = 3
RESETS = 1000 if os.environ.get("PETRI_NB_FULL_SOAK") == "1" else 200
MIB = 2**20


def _snapshot() -> dict[str, int]:
    me = psutil.Process()
    return {"fds": me.num_fds(), "threads": me.num_threads(), "children": len(me.children(recursive=True)),
            "rss": me.memory_info().rss}


async def _soak(vms: list[petri_nb.AsyncVm], resets: int) -> None:
    async def one(vm: petri_nb.AsyncVm, n: int) -> None:
        for _ in range(n):
            await vm.reset()
            await vm.console.expect(READY, timeout=60)

    share = [resets // len(vms) + (i < resets % len(vms)) for i in range(len(vms))]
    await asyncio.gather(*(one(vm, n) for vm, n in zip(vms, share, strict=True)))


def test_reset_soak_over_several_vms_leaks_no_fds_threads_children_or_memory():
    async def scenario() -> tuple[dict[str, int], dict[str, int], list[int], list[int]]:
        vms = [await petri_nb.launch_async("tmk") for _ in range(VMS)]
        try:
            await _soak(vms, 3 * VMS)  # warm-up: lazily created threads, caches
            before = _snapshot()
            qemu_before = [psutil.Process(vm.runtime.proc.pid).memory_info().rss for vm in vms]
            await _soak(vms, RESETS)
            after = _snapshot()
            qemu_after = [psutil.Process(vm.runtime.proc.pid).memory_info().rss for vm in vms]
            assert all(vm.halts == [] for vm in vms)
            return before, after, qemu_before, qemu_after
        finally:
            await asyncio.gather(*(vm.teardown() for vm in vms))

    before, after, qemu_before, qemu_after = asyncio.run(scenario())
    assert after["fds"] <= before["fds"], (before, after)
    assert after["children"] == before["children"], (before, after)
    assert after["threads"] <= before["threads"] + 2, (before, after)
    assert after["rss"] - before["rss"] < 32 * MIB, (before, after)
    bound = (32 + TCG_TB_SIZE_MIB + 64) * MIB  # tmk runs with 32 MiB of guest RAM
    assert all(rss < bound for rss in qemu_before + qemu_after), (qemu_before, qemu_after, bound)
    # And after teardown everything the VMs held is released.
    final = _snapshot()
    assert final["children"] == 0 or final["children"] < before["children"]
    assert final["fds"] < before["fds"]


def test_a_torn_down_vm_is_freed_at_once_with_no_task_left_behind():
    """Teardown ends the VM's own tasks (its watchdogs sleep seconds between looks), so the
    VM and everything it holds are freed as soon as the user lets go of it."""
    import gc
    import weakref

    from petri_nb.runtime.loop import runtime_loop

    async def tasks_left() -> list[str]:
        return [t.get_coro().__qualname__ for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    before = asyncio.run_coroutine_threadsafe(tasks_left(), runtime_loop()).result(5)
    vm = petri_nb.launch("tmk")
    vm.console.expect(READY, timeout=60)
    vm.teardown()
    assert asyncio.run_coroutine_threadsafe(tasks_left(), runtime_loop()).result(5) == before
    gone = weakref.ref(vm.aio)
    del vm
    gc.collect()
    assert gone() is None


@pytest.mark.slow
def test_a_vm_whose_agent_was_used_is_freed_once_torn_down_and_dropped() -> None:
    """The agent lives as long as its VM: nothing global keeps a finished VM (its timeline, its
    console's text) alive after the user lets go of it, however many they launch in a sitting."""
    import gc
    import weakref

    from linux_vm import booted_linux  # here, not in test_agent.py: that module's own Linux VM outlives this test

    with booted_linux() as (vm, agent, _):
        assert agent.run("true").exit_code == 0
        gone = weakref.ref(vm.aio)
    del vm, agent
    gc.collect()
    assert gone() is None, [type(r).__name__ for r in gc.get_referrers(gone())]
