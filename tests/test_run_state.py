"""The run state is decided in one place, from facts; these are its rules."""

from __future__ import annotations

import pytest

from petri_nb.model.run_state import Fact, RunState, next_state

S = RunState


@pytest.mark.parametrize(("state", "fact", "expected"), [
    (S.STARTING, Fact.RESUMED, S.STARTING),  # QEMU's RESUME during start-up: still starting
    (S.STARTING, Fact.STARTED, S.RUNNING),
    (S.RUNNING, Fact.STOPPED, S.PAUSED),
    (S.PAUSED, Fact.RESUMED, S.RUNNING),
    (S.RUNNING, Fact.HALTED, S.HALTED),
    (S.HALTED, Fact.STOPPED, S.HALTED),  # the STOP that follows a halt changes nothing
    (S.HALTED, Fact.RESUMED, S.HALTED),
    (S.HALTED, Fact.RESTARTED, S.RUNNING),  # reset() of a halted VM
    (S.HALTED, Fact.RESTORED_PAUSED, S.PAUSED),
    (S.RUNNING, Fact.RESTORED_HALTED, S.HALTED),
    (S.RUNNING, Fact.GONE, S.GONE),
    (S.GONE, Fact.RESTARTED, S.GONE),  # nothing revives a lost VM...
    (S.GONE, Fact.TORN_DOWN, S.TORN_DOWN),  # ...but it can be torn down
    (S.TORN_DOWN, Fact.GONE, S.TORN_DOWN),  # QEMU exiting under teardown is no loss
    (S.TORN_DOWN, Fact.STARTED, S.TORN_DOWN),
])
def test_next_state(state: RunState, fact: Fact, expected: RunState) -> None:
    assert next_state(state, fact) is expected


def test_run_state_compares_equal_to_its_old_string() -> None:
    assert S.RUNNING == "running" and S.TORN_DOWN == "torn down" and str(S.HALTED) == "halted"


def test_state_changes_reach_observers_once_each_in_order(vm) -> None:  # noqa: ANN001
    seen: list[tuple[str, str]] = []
    unsubscribe = vm.observe_state(lambda old, new: seen.append((old.value, new.value)))
    vm.pause()
    vm.resume()
    vm.console.write("poweroff\n")
    vm.wait_for_halt(timeout=30)
    vm.reset()
    unsubscribe()
    vm.pause()
    assert seen == [("running", "paused"), ("paused", "running"), ("running", "halted"), ("halted", "running")]
