"""Users' disk images through petri_nb.launch against real QEMU and real firmware: a BIOS disk and a
UEFI disk boot to the real qemu-guest-agent, boot events come in order, an empty disk says so, secure
boot refuses an unsigned loader and boots Microsoft-signed shim, and the magic takes the same options."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from conftest import our_qemus, wait_until

import petri_nb
from petri_nb import HaltReason, LaunchError
from petri_nb.guests.images import bios_disk, empty_disk, secure_boot_disk, uefi_disk

VM_SHARED_ACROSS_TESTS = True  # one qemu-ga guest for the module; checked for leftovers at its end


def kinds(vm: petri_nb.Vm) -> list[str]:
    return vm.timeline().query("source == 'boot'")["kind"].tolist()


@pytest.fixture(scope="module")
def qga_vm() -> Iterator[petri_nb.Vm]:
    """The BIOS fixture disk, described as a user would, ready when its qemu-ga answers."""
    vm = petri_nb.launch(disks=[bios_disk()], memory_mib=256, agent="qga", ready="agent", name="own-qga")
    try:
        yield vm
    finally:
        vm.teardown()
        wait_until(lambda: not our_qemus(), timeout=5, what="QEMU processes to exit")


@pytest.mark.slow
def test_a_bios_disk_boots_to_the_guest_agent_with_boot_events_in_order(qga_vm: petri_nb.Vm) -> None:
    assert kinds(qga_vm)[-2:] == ["attempt", "success"]
    assert qga_vm.agent.ping() < 5


@pytest.mark.slow
def test_qemu_guest_agent_runs_commands_binary_safe_with_exit_codes(qga_vm: petri_nb.Vm) -> None:
    agent = qga_vm.agent
    result = agent.run('printf "a\\0b"; echo oops >&2; exit 3')
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"a\0b", b"oops\n")
    big = agent.run("head -c 1048576 /dev/zero | tr '\\0' x")
    assert big.stdout == b"x" * (1 << 20)
    with pytest.raises(petri_nb.AgentError, match="max_output"):
        agent.run("head -c 4096 /dev/zero", max_output=1024)
    data = bytes(range(256)) * 4096
    agent.write_file("/tmp/round-trip", data)
    assert agent.read_file("/tmp/round-trip") == data
    rows = qga_vm.timeline().query("source == 'agent'")
    assert {"run", "write_file", "read_file"} <= set(rows["kind"])


@pytest.mark.slow
def test_guest_initiated_shutdown_through_the_agent_is_power_off(qga_vm: petri_nb.Vm) -> None:
    qga_vm.agent.shutdown()
    assert qga_vm.wait_for_halt(timeout=60).reason is HaltReason.POWER_OFF


@pytest.mark.slow
def test_a_uefi_disk_boots_from_a_description_and_the_image_is_untouched() -> None:
    disk = uefi_disk()
    before = hashlib.sha256(disk.read_bytes()).hexdigest()
    guest = petri_nb.Guest(name="esp", disks=[disk], firmware="uefi", memory_mib=256, agent="qga", ready="boot")
    with petri_nb.launch(guest) as vm:
        assert kinds(vm)[-1] == "success"  # ready="boot": launch returned on the loader's start
        vm.wait_for_agent(timeout=180).run("echo scribble > /dev/vda").check()
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_an_empty_disk_gives_the_no_boot_device_event_not_a_hang(firmware: str) -> None:
    with petri_nb.launch(disks=[empty_disk()], firmware=firmware, ready=None, name=f"empty-{firmware}") as vm:
        seen = []
        while not seen or seen[-1].kind != "no_boot_device":
            seen.append(vm.wait_for_boot_event(timeout=60))
        assert seen[0].kind in ("attempt", "failed") and seen[-1].firmware == {"bios": "seabios",
                                                                                 "uefi": "ovmf"}[firmware]


def test_a_guest_that_never_gets_ready_fails_with_its_boot_events() -> None:
    before = {p.pid for p in our_qemus()}  # the module's shared VM may be running
    with pytest.raises(LaunchError, match=r"not ready after 3 s \(waiting for a successful boot\); "
                                          r"boot events: .*no_boot_device"):
        petri_nb.launch(disks=[empty_disk()], ready="boot", ready_timeout=3, name="never-ready")
    assert {p.pid for p in our_qemus()} <= before


@pytest.mark.slow
def test_secure_boot_refuses_an_unsigned_loader_and_boots_microsoft_signed_shim() -> None:
    with petri_nb.launch(disks=[uefi_disk()], firmware="uefi-secure", memory_mib=256, ready=None,
                         name="sb-unsigned") as vm:
        while (event := vm.wait_for_boot_event(timeout=120)).kind != "failed":
            assert event.kind != "success", event
        assert "Access Denied" in event.detail
    with petri_nb.launch(disks=[secure_boot_disk()], firmware="uefi-secure", memory_mib=512, agent="qga",
                         ready="agent", ready_timeout=240, name="sb-signed") as vm:
        assert "success" in kinds(vm)
        assert "Secure boot enabled" in vm.agent.run("dmesg | grep -i 'secure boot'").stdout.decode()


def test_the_magic_launches_a_users_disk_with_the_fixed_options(shell) -> None:  # noqa: ANN001
    vm = shell.run_line_magic("petri", f"launch --disk {empty_disk()} --firmware bios --memory 64 --cpus 1 "
                                       "--ready none --name magic-own")
    try:
        assert vm.guest.disks[0].path == empty_disk() and vm.guest.ready is None
        assert vm.wait_for_boot_event(timeout=60).kind in ("attempt", "failed", "no_boot_device")
    finally:
        shell.run_line_magic("petri", "teardown")
