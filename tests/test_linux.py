"""The Linux guest against real QEMU: boot to a shell, command line, guest-cooperative shutdown, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from linux_vm import booted_linux

import petri_nb
from petri_nb.guests import linux
from petri_nb.vm.agent import Agent

MARK = "petri_nb.test_mark=42"


#: This module's Linux VM lives across tests; linux_vm.booted_linux checks for leftovers at the end.
VM_SHARED_ACROSS_TESTS = True


@pytest.fixture(scope="module")
def booted() -> Iterator[tuple[petri_nb.Vm, Agent]]:
    with booted_linux(command_line=f"{linux.DEFAULT_COMMAND_LINE} {MARK}") as (vm, agent, boot_s):
        print(f"linux boot-to-agent under TCG: {boot_s:.1f} s")
        yield vm, agent


@pytest.mark.slow
def test_boots_to_a_shell_on_the_serial_console_with_our_command_line(booted: tuple[petri_nb.Vm, Agent]) -> None:
    vm, agent = booted
    vm.console.write("cat /proc/cmdline\n")
    vm.console.expect(MARK.replace(".", r"\."), timeout=30)
    assert MARK in agent.read_file("/proc/cmdline").decode()
    assert agent.run("uname -s").stdout == b"Linux\n"


@pytest.mark.slow
def test_verify_save_restore_keeps_the_agent_and_guest_files(booted: tuple[petri_nb.Vm, Agent]) -> None:
    vm, agent = booted
    agent.write_file("/root/before", b"written before save")
    result = vm.verify_save_restore()
    assert result["rounds"] == 2
    agent = vm.wait_for_agent(timeout=60)  # the agent port reconnects to the restored QEMU
    assert agent.read_file("/root/before") == b"written before save"
    assert agent.run("echo after restore").stdout == b"after restore\n"


@pytest.mark.slow
def test_reboot_through_the_agent_halts_with_reset_and_the_guest_comes_back(booted: tuple[petri_nb.Vm, Agent]) -> None:
    vm, agent = booted
    vm.send_shutdown("reboot")
    assert vm.wait_for_halt(timeout=60).reason is petri_nb.HaltReason.RESET
    vm.reset()
    again = vm.wait_for_agent(timeout=120)
    assert again.run("echo back").stdout == b"back\n"
    assert MARK in again.read_file("/proc/cmdline").decode()  # -append is fixed for the QEMU process


@pytest.mark.slow
def test_updated_command_line_applies_at_the_next_reset(booted: tuple[petri_nb.Vm, Agent]) -> None:
    vm, agent = booted
    vm.update_command_line(f"{linux.DEFAULT_COMMAND_LINE} petri_nb.second=1")
    assert "petri_nb.second" not in vm.wait_for_agent().read_file("/proc/cmdline").decode()
    vm.reset()
    agent = vm.wait_for_agent(timeout=120)
    assert "petri_nb.second=1" in agent.read_file("/proc/cmdline").decode()
    assert "command line" in set(vm.timeline().kind)
    with pytest.raises(petri_nb.PetriError, match="one-line"):
        vm.update_command_line("a\nb")


@pytest.mark.slow
def test_agent_call_under_which_the_guest_powers_off_raises_vm_halted(booted: tuple[petri_nb.Vm, Agent]) -> None:
    vm, _ = booted
    agent = vm.wait_for_agent()
    with pytest.raises(petri_nb.VmHalted, match="POWER_OFF"):
        agent.run("sleep 0.5; poweroff -f", timeout=60)
    assert vm.wait_for_halt(timeout=10).reason is petri_nb.HaltReason.POWER_OFF  # still pending for the caller
    vm.reset()
    assert vm.wait_for_agent(timeout=120).run("echo up").stdout == b"up\n"


@pytest.mark.slow
def test_poweroff_by_acpi_power_button_halts_with_power_off(booted: tuple[petri_nb.Vm, Agent]) -> None:
    vm, agent = booted
    vm.wait_for_agent()  # the agent also watches the power button: it must be up
    vm.send_shutdown("poweroff")
    halt = vm.wait_for_halt(timeout=60)
    assert halt.reason is petri_nb.HaltReason.POWER_OFF
    kinds = list(vm.timeline().kind)
    last_shutdown = len(kinds) - 1 - kinds[::-1].index("SHUTDOWN")
    assert kinds.index("POWERDOWN") < last_shutdown  # the button press, then the guest's own S5


def test_missing_debian_package_names_the_apt_command(tmp_path: Path) -> None:
    with pytest.raises(petri_nb.LaunchError, match=r"apt-get install --download-only petri-nb-no-such-package"):
        linux._download("petri-nb-no-such-package", tmp_path)


@pytest.mark.parametrize("options, match", [
    ({"command_line": "console=ttyS0\ninit=/bin/evil"}, "one-line"),
    ({"root_ports": 99}, "root_ports"),
    ({"no_such_option": 1}, "bad launch option"),
])
def test_bad_linux_launch_options_are_launch_errors(options: dict, match: str) -> None:
    with pytest.raises(petri_nb.LaunchError, match=match):
        petri_nb.launch("linux", **options)


def test_send_shutdown_rejects_unknown_kinds_and_reboot_needs_an_agent(vm: petri_nb.Vm) -> None:
    with pytest.raises(petri_nb.PetriError, match="'poweroff' or 'reboot'"):
        vm.send_shutdown("halt")
    with pytest.raises(petri_nb.AgentError, match="no guest agent"):
        vm.send_shutdown("reboot")
    vm.console.write("echo alive\n")
    vm.console.expect("alive", timeout=10)


def test_initramfs_is_a_valid_newc_archive() -> None:
    cpio = linux.Cpio()
    cpio.directory("bin")
    cpio.file("bin/x", b"abc", 0o755)
    cpio.char_device("dev/console", 5, 1)
    data = cpio.finish()
    assert data.startswith(b"070701") and len(data) % 4 == 0
    assert b"bin/x\0" in data and b"abc" in data and data.rstrip(b"\0").endswith(b"TRAILER!!!")
