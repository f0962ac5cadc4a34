"""RunState: what a VM is doing now, decided in one place from the facts backends report.

Backends and runtime calls report *facts* (QEMU said STOP, a halt was mapped, a
reset finished); ``next_state`` turns the current state and one fact into the
next state. ``AsyncVm`` holds the only copy and tells subscribers (the live view)
when it changes, so nothing polls it.
"""

from __future__ import annotations

import enum


class RunState(str, enum.Enum):  # noqa: UP042 (not switched to StrEnum in a lint-only change)
    """The VM's run state; a ``str`` so ``vm.state == "running"`` keeps working."""

    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    HALTED = "halted"
    GONE = "gone"  # the backend process disappeared
    TORN_DOWN = "torn down"

    def __str__(self) -> str:
        return self.value


class Fact(enum.Enum):
    """Something that happened to the VM; the only inputs of ``next_state``."""

    STARTED = "started"  # the backend runs guest code
    STOPPED = "stopped"  # the CPUs stopped (QEMU STOP, our pause) without a halt
    RESUMED = "resumed"  # the CPUs run again (QEMU RESUME, our resume/continue)
    HALTED = "halted"  # a halt was reported (power off, reset, triple fault, panic...)
    RESTARTED = "restarted"  # a host reset or a restore made a halted or paused VM run again
    RESTORED_PAUSED = "restored paused"
    RESTORED_HALTED = "restored halted"
    GONE = "gone"
    TORN_DOWN = "torn down"


_TERMINAL = (RunState.GONE, RunState.TORN_DOWN)


def next_state(state: RunState, fact: Fact) -> RunState:
    """The state after ``fact``. Terminal states stay (only teardown follows loss);
    a halted VM ignores stop/resume noise until a restart or restore."""
    if fact is Fact.TORN_DOWN:
        return RunState.TORN_DOWN
    if state in _TERMINAL:
        return state
    if fact is Fact.GONE:
        return RunState.GONE
    if fact is Fact.HALTED:
        return RunState.HALTED
    if fact in (Fact.STARTED, Fact.RESTARTED):
        return RunState.RUNNING
    if fact is Fact.RESTORED_PAUSED:
        return RunState.PAUSED
    if fact is Fact.RESTORED_HALTED:
        return RunState.HALTED
    if state in (RunState.HALTED, RunState.STARTING):
        return state  # STOP/RESUME around a halt or during start-up change nothing
    return RunState.PAUSED if fact is Fact.STOPPED else RunState.RUNNING
