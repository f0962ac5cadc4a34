"""Fixtures: one per real resource (a tmk VM), with teardown that cannot leak QEMU."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import psutil
import pytest
from IPython.core.interactiveshell import InteractiveShell

import petri_nb
from petri_nb.notebook.magics import PetriMagics
from petri_nb.vm.facade import live_vms


def our_qemus() -> list[psutil.Process]:
    """QEMU processes started by this test process (directly or through helpers)."""
    me = psutil.Process(os.getpid())
    found = []
    for child in me.children(recursive=True):
        try:
            if child.name().startswith("qemu-system"):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll a condition (not a sleep-as-synchronisation: it ends as soon as it holds)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def no_qemu_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test no QEMU of ours is left (modules that share one VM check at their end)."""
    yield
    if getattr(request.module, "VM_SHARED_ACROSS_TESTS", False):
        return
    leftovers: list[psutil.Process] = []

    def none_left() -> bool:
        nonlocal leftovers
        leftovers = our_qemus()
        return not leftovers

    try:
        wait_until(none_left, timeout=5, what="QEMU processes to exit")
    except AssertionError:
        for p in leftovers:
            p.kill()
        pytest.fail(f"test left QEMU processes behind: {[p.pid for p in leftovers]}")


@pytest.fixture
def vm() -> Iterator[petri_nb.Vm]:
    """A running tmk VM (TCG), torn down after the test."""
    machine = petri_nb.launch("tmk")
    try:
        yield machine
    finally:
        machine.teardown()


@pytest.fixture(params=["qboot", "bios"])
def fw_vm(request: pytest.FixtureRequest) -> Iterator[petri_nb.Vm]:
    """A running tmk VM under each firmware that boots it: qboot (the default) and SeaBIOS."""
    machine = petri_nb.launch("tmk", firmware=request.param)
    try:
        yield machine
    finally:
        machine.teardown()


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    """An in-process IPython shell with the extension loaded; its VMs are torn down afterwards."""
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "petri_nb")
    ip.register_magics(PetriMagics)  # a fresh current-VM state for every test
    try:
        yield ip
    finally:
        for aio in live_vms():
            petri_nb.Vm(aio).teardown()


# Fixtures of the browser tests; imported last, as they use wait_until from here.
from lab_browser import lab, page, page_log  # noqa: E402, F401
