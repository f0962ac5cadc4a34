"""Each tmk command gives its typed halt, against real QEMU."""

from __future__ import annotations

import threading

import pytest

import petri_nb
from petri_nb import HaltReason
from tests.conftest import wait_until


@pytest.mark.parametrize(
    ("command", "reason", "detail"),
    [
        ("poweroff", HaltReason.POWER_OFF, "guest-shutdown"),
        ("reset", HaltReason.RESET, "guest-reset"),
        ("triplefault", HaltReason.TRIPLE_FAULT, "triple fault"),
        ("panic", HaltReason.PANIC, "guest-panicked"),
        ("hibernate", HaltReason.HIBERNATE, "S4"),
    ],
)
def test_each_tmk_command_gives_its_halt_reason(fw_vm: petri_nb.Vm, command: str, reason: HaltReason,
                                                detail: str):
    vm = fw_vm
    vm.console.write(command + "\n")
    halt = vm.wait_for_halt(timeout=20)
    assert halt.reason is reason
    assert detail in halt.detail
    assert vm.state == "halted"
    assert vm.last_halt == halt
    rows = vm.timeline().query("source == 'halt'")
    assert list(rows["reason"]) == [reason.name]


def test_halted_vm_keeps_its_process_and_restarts_on_reset(fw_vm: petri_nb.Vm):
    vm = fw_vm
    vm.console.write("poweroff\n")
    assert vm.wait_for_halt(timeout=20).reason is HaltReason.POWER_OFF
    assert vm.status() == "shutdown"
    vm.reset()
    vm.console.expect("tmk: ready", timeout=20)
    vm.console.write("count\n")
    assert vm.console.expect(r"count=(\d+)").group(1) == "1"
    assert vm.state == "running"


def test_the_acpi_power_button_powers_tmk_off(fw_vm: petri_nb.Vm):
    fw_vm.send_shutdown("poweroff")
    assert fw_vm.wait_for_halt(timeout=20).reason is HaltReason.POWER_OFF
    assert "tmk: power button" in fw_vm.console.text


def test_guest_reset_with_allow_reset_is_recorded_and_waiting_continues(vm: petri_nb.Vm):
    result: dict[str, object] = {}

    def waiter() -> None:
        try:
            result["halt"] = vm.wait_for_halt(allow_reset=True, timeout=60)
        except Exception as e:  # surfaced by the assertions below
            result["error"] = e

    thread = threading.Thread(target=waiter)
    thread.start()
    vm.console.write("reset\n")
    wait_until(lambda: [h.reason for h in vm.halts] == [HaltReason.RESET] and vm.state == "running",
               timeout=20, what="the guest reset to be handled")
    vm.console.expect("tmk: ready", timeout=20)
    vm.console.write("poweroff\n")
    thread.join(timeout=30)
    assert "error" not in result, result.get("error")
    assert result["halt"].reason is HaltReason.POWER_OFF
    assert [h.reason for h in vm.halts] == [HaltReason.RESET, HaltReason.POWER_OFF]
    calls = vm.timeline().query("source == 'runtime'")["kind"].tolist()
    assert "reset()" in calls


def test_wait_for_halt_without_allow_reset_returns_the_reset(vm: petri_nb.Vm):
    vm.console.write("reset\n")
    assert vm.wait_for_halt(allow_reset=False, timeout=20).reason is HaltReason.RESET
