"""Launching a user's own guest description against real QEMU: disks stay untouched unless asked,
TPM, user networking, UEFI, and bad descriptions that leave nothing behind."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from conftest import our_qemus

import petri_nb
from petri_nb import Disk, LaunchError
from petri_nb.guests.linux import build_initramfs
from petri_nb.guests.tmk import KERNEL, READY


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_dirs(name: str) -> list[str]:
    return [p for p in os.listdir(tempfile.gettempdir()) if p.startswith(f"petri_nb-{name}-")]


def our_swtpms() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.name() == "swtpm"]


@pytest.fixture
def scratch_image(tmp_path: Path) -> Path:
    """A 16 MiB raw image with a known pattern: the user's disk."""
    path = tmp_path / "user.img"
    path.write_bytes(bytes(range(256)) * (16 << 12))
    return path


def test_a_users_kernel_boots_from_a_description_with_disk_and_cdrom(tmp_path: Path, scratch_image: Path):
    cdrom = tmp_path / "tools.iso"
    cdrom.write_bytes(b"\0" * (1 << 20))
    before = sha256(scratch_image)
    with petri_nb.launch(kernel=KERNEL, disks=[scratch_image], cdrom=cdrom, ready=READY, memory_mib=64,
                         cpus=2, sockets=1, cores=2, threads=1, name="own-tmk") as vm:
        assert vm.guest.name == "guest" and vm.state == "running"
        block = vm.inspect("block").to_frame()
        files = " ".join(block["value"].astype(str))
        assert "disk0.qcow2" in files and str(cdrom) in files  # the VM sees our overlay, not the image
        vm.reset()
        vm.console.expect("tmk: ready", timeout=30)
    assert sha256(scratch_image) == before
    assert not run_dirs("own-tmk")


@pytest.mark.parametrize(("make", "message"), [
    (lambda tmp: {"kernel": tmp / "missing.elf"}, r"kernel image .*missing\.elf does not exist"),
    (lambda tmp: {"kernel": KERNEL, "disks": [tmp]}, r"disk image .* is not a file \(a directory\?\)"),
    (lambda tmp: {"kernel": KERNEL, "disks": [tmp / "nope.img"]}, r"disk image .*nope\.img does not exist"),
    (lambda tmp: {"kernel": KERNEL, "cdrom": tmp / "no.iso"}, r"CD-ROM image .*no\.iso does not exist"),
    (lambda tmp: {"kernel": KERNEL, "firmware": "uefi", "firmware_vars": tmp / "no.fd"}, r"no\.fd, which does not"),
    (lambda tmp: {"kernel": KERNEL, "tpm": True, "disks": [tmp / "nope.img"]}, r"nope\.img does not exist"),
])
def test_bad_descriptions_fail_at_launch_naming_the_file_and_leave_nothing_behind(tmp_path: Path, make, message):
    with pytest.raises(LaunchError, match=message):
        petri_nb.launch(name="bad-own", **make(tmp_path))
    assert not our_qemus() and not our_swtpms() and not run_dirs("bad-own")


def test_a_corrupt_image_is_refused_with_qemu_imgs_reason(tmp_path: Path):
    corrupt = tmp_path / "corrupt.qcow2"
    corrupt.write_bytes(b"QFI\xfb" + b"\xff" * 508)  # a qcow2 magic with a nonsense header
    with pytest.raises(LaunchError, match=r"cannot use disk image .*corrupt\.qcow2"):
        petri_nb.launch(kernel=KERNEL, disks=[corrupt], name="bad-own")
    assert not our_qemus() and not run_dirs("bad-own")


def test_an_image_another_vm_writes_is_refused_as_locked(scratch_image: Path):
    with petri_nb.launch(kernel=KERNEL, disks=[Disk(scratch_image, writable=True)], ready=READY, name="holder"):
        with pytest.raises(LaunchError, match=r"user\.img: it is locked, another QEMU is using it"):
            petri_nb.launch(kernel=KERNEL, disks=[scratch_image], name="bad-own")
    assert not run_dirs("bad-own")


@pytest.mark.slow
def test_linux_writes_go_to_the_overlay_unless_writable_and_tpm_and_nic_are_there(scratch_image: Path):
    before = sha256(scratch_image)
    with petri_nb.launch("linux", disks=[scratch_image], tpm=True, nics=["user"], name="own-linux") as vm:
        agent = vm.wait_for_agent(timeout=120)
        wrote = agent.run("dd if=/dev/zero of=/dev/vda bs=4096 count=64 conv=fsync 2>&1 && echo wrote")
        assert b"wrote" in wrote.stdout, wrote
        assert agent.run("test -c /dev/tpm0 && echo tpm").stdout == b"tpm\n"
        assert agent.run("cat /sys/class/net/eth0/address").exit_code == 0
        assert len(our_swtpms()) == 1
        vm.reset()
        vm.wait_for_agent(timeout=120)
        assert agent.run("head -c 4096 /dev/vda | od -An -tx1 | head -1").stdout.split()[:2] == [b"00", b"00"]
    assert sha256(scratch_image) == before, "a disk without writable=True was modified"
    assert not our_swtpms() and not run_dirs("own-linux")

    with petri_nb.launch("linux", disks=[Disk(scratch_image, writable=True)], name="own-linux") as vm:
        vm.wait_for_agent(timeout=120).run("dd if=/dev/zero of=/dev/vda bs=4096 count=64 conv=fsync").check()
    assert sha256(scratch_image) != before


@pytest.mark.slow
def test_uefi_direct_boot_keeps_a_per_vm_variable_store(tmp_path: Path):
    kernel, initrd = build_initramfs()
    with petri_nb.launch(kernel=kernel, initrd=initrd, append="console=ttyS0 quiet", firmware="uefi",
                         memory_mib=256, ready="petri-linux: ready", name="own-uefi") as vm:
        store = vm.firmware_vars()
        assert len(store) == (Path("/usr/share/OVMF/OVMF_VARS_4M.fd")).stat().st_size
        assert vm.aio.runtime.argv.count("-drive") == 2  # code read-only + our copy of the variables
    saved = tmp_path / "vars.fd"
    saved.write_bytes(store)
    guest = petri_nb.Guest(kernel=kernel, initrd=initrd, append="console=ttyS0 quiet", firmware="uefi",
                           firmware_vars=saved, memory_mib=256, ready="petri-linux: ready")
    with petri_nb.launch(guest, name="own-uefi"):
        pass
    assert saved.read_bytes() == store  # the saved artifact is copied, never written
    with pytest.raises(petri_nb.NotSupported, match="no UEFI variable store"):
        with petri_nb.launch("tmk", name="own-bios") as vm:
            vm.firmware_vars()


@pytest.mark.slow
def test_a_uefi_reset_does_not_wait_for_a_firmware_reboot_and_the_guest_comes_back():
    # OVMF does not reboot itself after a host reset (unlike SeaBIOS): reset() used to wait
    # out the whole 5 s bound for it every time.
    kernel, initrd = build_initramfs()
    with petri_nb.launch(kernel=kernel, initrd=initrd, append="console=ttyS0 quiet", firmware="uefi",
                         memory_mib=256, ready="petri-linux: ready", name="own-uefi-reset") as vm:
        t0 = time.monotonic()
        vm.reset(wait_ready=False)  # the bare reset: no firmware reboot to wait for
        assert time.monotonic() - t0 < 2.0
        vm.console.expect("petri-linux: ready", timeout=120)
        assert vm.halts == []
