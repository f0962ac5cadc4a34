"""A module-scoped Linux VM for the agent, Linux and hot-plug tests (booting one costs ~10 s under TCG)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from conftest import our_qemus, wait_until

import petri_nb


@contextmanager
def booted_linux(**options: object) -> Iterator[tuple[petri_nb.Vm, petri_nb.vm.agent.Agent, float]]:
    """(vm, agent, boot-to-agent seconds); QEMU is gone afterwards."""
    start = time.monotonic()
    vm = petri_nb.launch("linux", **options)
    try:
        agent = vm.wait_for_agent(timeout=120)
        yield vm, agent, time.monotonic() - start
    finally:
        vm.teardown()
        wait_until(lambda: not our_qemus(), timeout=5, what="QEMU processes to exit")
