"""The guest agent against a real Linux guest: exit codes, binary-safe output, files, bad input."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from linux_vm import booted_linux

import petri_nb
from petri_nb.vm.agent import Agent

#: This module's Linux VM lives across tests; linux_vm.booted_linux checks for leftovers at the end.
VM_SHARED_ACROSS_TESTS = True


@pytest.fixture(scope="module")
def linux() -> Iterator[tuple[petri_nb.Vm, Agent]]:
    with booted_linux() as (vm, agent, boot_s):
        print(f"linux boot-to-agent under TCG: {boot_s:.1f} s")
        yield vm, agent


@pytest.fixture
def agent(linux: tuple[petri_nb.Vm, Agent]) -> Agent:
    return linux[1]


def test_run_returns_exit_code_stdout_and_stderr_separately(agent: Agent) -> None:
    result = agent.run("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert agent.run("true").ok


def test_killed_command_reports_128_plus_signal(agent: Agent) -> None:
    assert agent.run("kill -9 $$").exit_code == 128 + 9


def test_output_with_nul_bytes_the_frame_marker_and_one_mib_passes_unchanged(agent: Agent) -> None:
    # The frame marker and a fake header, NULs, then 1 MiB of 0xff, then the marker again.
    result = agent.run(r"printf 'PA\000X\000\000\000\001\000\000\000\004'; "
                       r"head -c 1048576 /dev/zero | tr '\000' '\377'; printf 'PA'")
    assert result.exit_code == 0
    expected = b"PA\0X\0\0\0\x01\0\0\0\x04" + b"\xff" * (1 << 20) + b"PA"
    assert result.stdout == expected


def test_write_then_read_file_round_trips_any_bytes(agent: Agent) -> None:
    data = bytes(range(256)) * 4096 + b"PA"
    agent.write_file("/tmp/blob", data)
    assert agent.read_file("/tmp/blob") == data
    assert agent.run("wc -c < /tmp/blob").stdout.strip() == str(len(data)).encode()


def test_reading_a_missing_file_is_an_agent_error(agent: Agent) -> None:
    with pytest.raises(petri_nb.AgentError, match="/no/such/file"):
        agent.read_file("/no/such/file")
    assert agent.run("echo still").stdout == b"still\n"


def test_command_past_its_timeout_is_killed_and_the_agent_stays_usable(agent: Agent) -> None:
    start = time.monotonic()
    with pytest.raises(petri_nb.PetriTimeout, match="sleep 30"):
        agent.run("sleep 30", timeout=1)
    assert time.monotonic() - start < 10
    assert agent.run("echo next").stdout == b"next\n"
    assert b"sleep 30" not in agent.run("ps").stdout


def test_bad_agent_input_is_rejected_with_agent_error(agent: Agent) -> None:
    with pytest.raises(petri_nb.PetriError, match="command must be text without NUL"):
        agent.run("echo \0")
    with pytest.raises(petri_nb.AgentError, match="path"):
        agent.read_file("")
    with pytest.raises(petri_nb.PetriError, match=r"data must be bytes \| str, not 42"):
        agent.write_file("/tmp/x", 42)  # type: ignore[arg-type]
    assert agent.run("echo ok").ok


def test_agent_calls_are_on_the_timeline(linux: tuple[petri_nb.Vm, Agent]) -> None:
    vm, agent = linux
    agent.run("echo timeline")
    frame = vm.timeline()
    rows = frame[(frame.source == "agent") & (frame.kind == "run")]
    assert rows.detail.str.contains("echo timeline").any()
    assert (frame.kind == "agent.run()").any()


def test_a_vm_without_an_agent_says_so_quickly(vm: petri_nb.Vm) -> None:
    start = time.monotonic()
    with pytest.raises(petri_nb.AgentError, match="no guest agent"):
        vm.wait_for_agent(timeout=30)
    assert time.monotonic() - start < 2
    vm.console.write("echo alive\n")
    vm.console.expect("alive", timeout=10)


def test_an_output_flood_is_stopped_at_max_output_and_host_memory_stays_bounded(agent: Agent) -> None:
    import psutil

    rss_before = psutil.Process().memory_info().rss
    with pytest.raises(petri_nb.AgentError, match=r"more than 8388608 bytes \(max_output\); it was stopped"):
        agent.run("cat /dev/zero", timeout=60, max_output=8 << 20)
    grown = psutil.Process().memory_info().rss - rss_before
    assert grown < 200 << 20, f"host RSS grew by {grown >> 20} MiB for an 8 MiB limit"
    assert agent.run("echo still here").stdout == b"still here\n"

