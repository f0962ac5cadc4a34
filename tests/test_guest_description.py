"""Guest descriptions: checked when made, resolved by name, routed to a backend by the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

import petri_nb
from petri_nb import Disk, Guest, LaunchError, Nic
from petri_nb.backends import create_runtime, register_backend
from petri_nb.backends.qemu.firmware import QBOOT, firmware_args, reboots_itself_after_reset
from petri_nb.guests import describe, known_guests, register_guest
from petri_nb.guests.tmk import KERNEL, TMK


@pytest.mark.parametrize(("fields", "message"), [
    ({}, "needs something to boot"),
    ({"kernel": KERNEL, "firmware": "coreboot"}, "unknown firmware 'coreboot'"),
    ({"kernel": KERNEL, "cpus": 0}, "cpus must be an integer >= 1"),
    ({"kernel": KERNEL, "cpus": True}, "cpus must be an integer"),
    ({"kernel": KERNEL, "memory_mib": 8}, "memory_mib must be an integer >= 16"),
    ({"kernel": KERNEL, "cpus": 4, "sockets": 1, "cores": 2, "threads": 1}, "must equal cpus=4"),
    ({"kernel": KERNEL, "agent": "ssh"}, "unknown agent 'ssh'"),
    ({"kernel": KERNEL, "ready": "agent"}, "needs a guest agent"),
    ({"kernel": KERNEL, "ready_timeout": float("nan")}, "ready_timeout must be a positive, finite"),
    ({"kernel": KERNEL, "append": "a\nb"}, "append must be a one-line string"),
    ({"initrd": "/x", "disks": ["/d"]}, "initrd and append need a kernel"),
    ({"disks": "/one/path", "firmware_vars": "/v"}, "firmware_vars is a UEFI variable store"),
    ({"disks": ["/d"], "firmware": "qboot"}, "firmware='qboot' boots only a direct kernel"),
    ({"cdrom": "/x.iso", "firmware": "qboot"}, "firmware='qboot' boots only a direct kernel"),
    ({"kernel": KERNEL, "firmware": "qboot", "firmware_vars": "/v"}, "firmware_vars is a UEFI variable store"),
    ({"kernel": KERNEL, "firmware": "qboot", "ready": "boot"}, "qboot reports none"),
    ({"kernel": KERNEL, "disks": [42]}, "disk path must be a path"),
    ({"kernel": KERNEL, "nics": ["tap0"]}, "nics entries must be"),
    ({"kernel": KERNEL, "name": "a/b"}, "guest name must be 1-64 letters"),
])
def test_bad_descriptions_say_what_is_wrong(fields: dict, message: str) -> None:
    with pytest.raises(LaunchError, match=message):
        Guest(**fields)


def test_nic_forwards_only_valid_ports() -> None:
    with pytest.raises(LaunchError, match="guest port must be an int"):
        Nic(forward={8080: 0})


def test_paths_and_lists_are_normalised() -> None:
    guest = Guest(kernel=str(KERNEL), disks=["~/a.img", Disk(Path("/b.qcow2"), writable=True)], nics=["user"])
    assert guest.kernel == KERNEL
    assert guest.disks == (Disk(Path.home() / "a.img"), Disk(Path("/b.qcow2"), writable=True))
    assert guest.nics == (Nic(),)
    assert Guest(disks="/one.img").disks == (Disk(Path("/one.img")),)  # one path given where a list goes


def test_describe_resolves_presets_own_guests_and_options() -> None:
    assert describe() is TMK and describe("tmk") is TMK
    assert describe("tmk", memory_mib=64).memory_mib == 64
    assert describe(kernel=KERNEL, ready="tmk: ready").name == "guest"
    assert describe(TMK, cpus=2).cpus == 2
    with pytest.raises(LaunchError, match="unknown guest 'nope'"):
        describe("nope")
    with pytest.raises(LaunchError, match="bad launch option colour"):
        describe("tmk", colour="red")


def test_registered_guests_launch_by_name() -> None:
    register_guest("my-tmk", TMK.replace(name="my-tmk", memory_mib=48))
    register_guest("made-tmk", lambda memory_mib=40: TMK.replace(name="made-tmk", memory_mib=memory_mib))
    assert {"my-tmk", "made-tmk"} <= set(known_guests())
    assert describe("my-tmk").memory_mib == 48
    assert describe("made-tmk", memory_mib=80).memory_mib == 80
    with pytest.raises(LaunchError, match="bad launch option"):
        describe("made-tmk", colour="red")


def test_launch_routes_a_guest_to_the_backend_it_names() -> None:
    made: list[tuple[str, str, str]] = []

    class Refusing(Exception):
        pass

    def factory(guest: Guest, name: str, accel: str):  # noqa: ANN202 - a pure-logic stand-in, never boots
        made.append((guest.backend, name, accel))
        raise Refusing("no such hypervisor here")

    register_backend("test-backend", factory)
    with pytest.raises(Refusing):
        petri_nb.launch(TMK.replace(backend="test-backend"), name="routed")
    assert made == [("test-backend", "routed", "tcg")]
    assert "routed" not in [vm.name for vm in petri_nb.vm.facade.live_vms()]  # the name is free again
    with pytest.raises(LaunchError, match="unknown backend 'openvmm'"):
        create_runtime(TMK.replace(backend="openvmm"), "x", "tcg")


def test_tmk_defaults_to_qboot_and_seabios_stays_selectable(tmp_path: Path) -> None:
    assert TMK.firmware == "qboot"
    assert describe("tmk", firmware="bios").firmware == "bios"
    assert firmware_args("qboot", tmp_path) == ["-bios", str(QBOOT)]
    assert firmware_args("bios", tmp_path) == []


def test_only_seabios_pays_for_a_late_firmware_reboot_after_reset() -> None:
    # Decided by what the firmware is: qboot and OVMF start the kernel at once after a reset.
    assert not reboots_itself_after_reset("qboot")
    assert not reboots_itself_after_reset("uefi")
    assert reboots_itself_after_reset("bios")
    assert reboots_itself_after_reset("uefi-secure")  # not measured: keeps the bounded wait


def test_tmk_boots_with_qboot_and_the_linux_preset_with_seabios() -> None:
    # qboot runs no VGA BIOS (a serial-console Linux would show a black view) and gives a TPM guest
    # no memory map; tmk sets up its own screen. Either preset takes firmware= to choose.
    assert describe("tmk").firmware == "qboot" and describe("tmk", firmware="bios").firmware == "bios"
    assert describe("linux").firmware == "bios" and describe("linux", firmware="qboot").firmware == "qboot"
