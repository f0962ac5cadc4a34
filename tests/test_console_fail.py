"""console.expect(..., fail=[...]) raises as soon as a failure pattern appears (real QEMU)."""

from __future__ import annotations

import re
import threading
import time

import pytest
from conftest import wait_until
from linux_vm import booted_linux

import petri_nb
from petri_nb import ConsoleFailure, PetriError


def test_a_failure_pattern_raises_at_once_instead_of_waiting_out_the_timeout(vm: petri_nb.Vm) -> None:
    start = time.monotonic()
    vm.console.write("echo firmware error 42\n")
    with pytest.raises(ConsoleFailure, match="firmware error") as info:
        vm.console.expect("never printed", timeout=30, fail=[r"firmware error \d+", "Kernel panic"])
    assert time.monotonic() - start < 10  # far from the 30 s timeout: it did not wait it out
    assert info.value.match[0] == "firmware error 42"
    vm.console.write("echo after\n")
    assert vm.console.expect("after", timeout=10, fail=["firmware error"])  # the failure was consumed


def test_the_awaited_text_wins_when_it_comes_before_a_failure(vm: petri_nb.Vm) -> None:
    vm.console.write("echo good\n")
    vm.console.write("echo bad\n")
    assert vm.console.expect("good", timeout=10, fail=["bad"])[0] == "good"
    with pytest.raises(ConsoleFailure):
        vm.console.expect("good", timeout=10, fail="bad")  # one pattern may be given as a string


def test_without_fail_patterns_a_timeout_is_still_a_timeout(vm: petri_nb.Vm) -> None:
    with pytest.raises(petri_nb.PetriTimeout):
        vm.console.expect("never printed", timeout=0.3, fail=[])


@pytest.mark.slow
def test_a_linux_panic_fails_expect_within_a_second_and_is_diagnosed() -> None:
    with booted_linux() as (vm, agent, _):
        def crash() -> None:
            try:
                agent.run("echo c > /proc/sysrq-trigger", timeout=30)
            except PetriError:
                pass  # the guest dies under the agent call

        threading.Thread(target=crash, daemon=True).start()
        with pytest.raises(ConsoleFailure, match="Kernel panic"):
            vm.console.expect("never printed", timeout=60, fail=[r"Kernel panic - not syncing"])
        raised = vm.uptime

        def panic_lines() -> object:  # expect() may match before the line's newline made it a row
            frame = vm.timeline()
            return frame[(frame["source"] == "console") & frame["detail"].str.contains("Kernel panic - not syncing")]
        wait_until(lambda: len(panic_lines()), timeout=10, what="the panic line on the timeline")
        assert raised - panic_lines()["t"].iloc[0] < 1.0
        halt = vm.wait_for_halt(timeout=60)
        oops = halt.diagnosis.oops
        assert oops is not None and oops.message == "Kernel panic - not syncing: sysrq triggered crash"
        assert any(f.startswith("sysrq_handle_crash") for f in oops.call_trace)


def test_a_catastrophic_pattern_is_refused_fast_and_the_loop_stays_free(vm: petri_nb.Vm):
    # '(a|aa)+b' backtracks exponentially on a run of a's that ends in something else: the stdlib
    # engine would hold the runtime loop for minutes on this line, and every VM with it. (Not '$':
    # a line that has arrived only up to its a's would match there.)
    vm.console.write("echo " + "a" * 40 + "!\n")
    vm.console.expect("a{40}!")
    vm.console.write("echo " + "a" * 40 + "!\n")
    start = time.monotonic()
    with pytest.raises(petri_nb.PetriError, match=r"took over 0.5 s .*catastrophic backtracking"):
        vm.console.expect(r"(a|aa)+b", timeout=10)
    assert time.monotonic() - start < 3
    vm.console.write("echo still-here\n")
    assert vm.console.expect("still-here", timeout=5).group(0) == "still-here"
    # A match is still the stdlib's, and patterns regex also knows keep their meaning.
    vm.console.write("echo k=42\n")
    match = vm.console.expect(re.compile(r"K=(\d+)", re.IGNORECASE))
    assert isinstance(match, re.Match) and match.group(1) == "42"
