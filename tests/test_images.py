"""Fixture disk images: what the builders put where, the per-user cache, and booting them for real."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_until
from plain_qemu import PlainQemu

from petri_nb.guests import images
from petri_nb.guests.images import READY, bios_disk, empty_disk, secure_boot_disk, uefi_disk
from petri_nb.guests.images.common import MIB
from petri_nb.guests.images.initramfs import build_initramfs, library_closure
from petri_nb.vm.qga import QgaClient

MTOOLS = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def fat_file(image: str, path: str) -> bytes:
    """A file from a FAT image (``image`` may carry an mtools ``@@offset``)."""
    return subprocess.run(["mtype", "-i", image, f"::/{path}"], env=MTOOLS, check=True,
                          capture_output=True).stdout


def fat_listing(image: str) -> str:
    return subprocess.run(["mdir", "-a", "-b", "-i", image, "::/"], env=MTOOLS, check=True,
                          capture_output=True, text=True).stdout


def test_builders_reuse_the_cached_image() -> None:
    for build in (uefi_disk, bios_disk, empty_disk):
        first = build()
        stamp = first.stat().st_mtime_ns
        start = time.monotonic()
        assert build() == first
        assert time.monotonic() - start < 2.0
        assert first.stat().st_mtime_ns == stamp  # not rebuilt
        assert first.parent == images.cache_dir()


def test_the_cache_follows_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert empty_disk() == tmp_path / "petri_nb" / "images" / "empty.img"


def test_uefi_disk_is_gpt_with_an_esp_holding_systemd_boot_and_the_kernel() -> None:
    disk = uefi_disk()
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, check=True,
                                      text=True, env={**os.environ, "PATH": os.environ["PATH"] + ":/usr/sbin"}).stdout)
    (part,) = table["partitiontable"]["partitions"]
    assert table["partitiontable"]["label"] == "gpt"
    assert part["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    esp = f"{disk}@@{part['start'] * 512}"
    assert fat_file(esp, "EFI/BOOT/BOOTX64.EFI")[:2] == b"MZ"
    assert b"timeout 0" in fat_file(esp, "loader/loader.conf")
    entry = fat_file(esp, "loader/entries/petri.conf").decode()
    assert "linux /vmlinuz" in entry and "console=ttyS0" in entry
    assert fat_file(esp, "vmlinuz")[0x202:0x206] == b"HdrS"  # a bzImage


def test_secure_boot_disk_holds_signed_shim_grub_and_a_grub_cfg() -> None:
    esp = f"{secure_boot_disk()}@@{1 * MIB}"
    shim, grub = fat_file(esp, "EFI/BOOT/BOOTX64.EFI"), fat_file(esp, "EFI/BOOT/grubx64.efi")
    assert shim[:2] == grub[:2] == b"MZ"
    assert b"Microsoft" in shim  # its Authenticode signature chain
    assert b"linux /vmlinuz" in fat_file(esp, "EFI/debian/grub.cfg")


def test_bios_disk_is_a_fat_superfloppy_with_syslinux_in_its_boot_sector() -> None:
    disk = bios_disk()
    sector = disk.read_bytes()[:512]
    assert sector[510:] == b"\x55\xaa"
    assert b"SYSLINUX" in sector
    listing = fat_listing(str(disk))
    for name in ("ldlinux.sys", "syslinux.cfg", "vmlinuz", "initrd.img"):
        assert name in listing
    assert b"INITRD /initrd.img" in fat_file(str(disk), "syslinux.cfg")


def test_empty_disk_is_all_zeros() -> None:
    data = empty_disk().read_bytes()
    assert len(data) == 16 * MIB and data.count(0) == len(data)


def test_initramfs_carries_qemu_ga_and_every_library_it_needs() -> None:
    _, initrd = build_initramfs(images.cache_dir())
    blob = initrd.read_bytes()
    libs = library_closure(Path("/usr/sbin/qemu-ga") if Path("/usr/sbin/qemu-ga").exists()
                           else images.cache_dir() / "debs/qemu-guest-agent/usr/sbin/qemu-ga")
    assert "/lib64/ld-linux-x86-64.so.2" in libs
    assert {"libglib-2.0.so.0", "libc.so.6", "libpcre2-8.so.0"} <= {Path(p).name for p in libs}
    for guest_path in [*libs, "/usr/sbin/qemu-ga", "/sbin/shutdown", "/lib/modules/virtio_console.ko"]:
        assert guest_path.lstrip("/").encode() + b"\0" in blob, guest_path


@pytest.mark.slow
def test_uefi_disk_boots_to_ready_under_ovmf() -> None:
    qemu = PlainQemu(uefi_disk(), "uefi")
    try:
        seconds = qemu.wait_for("serial", READY, 120)
        print(f"uefi_disk: ready after {seconds:.1f} s")
        assert re.search(READY, qemu.serial())  # the disk's own readiness line, on its serial console
    finally:
        qemu.kill()


def test_bios_disk_boots_to_ready_under_seabios() -> None:
    qemu = PlainQemu(bios_disk(), "bios")
    try:
        seconds = qemu.wait_for("serial", READY, 120)
        print(f"bios_disk: ready after {seconds:.1f} s")
        assert re.search(READY, qemu.serial())  # the disk's own readiness line, on its serial console
    finally:
        qemu.kill()


@pytest.mark.slow
def test_secure_boot_disk_boots_with_secure_boot_on() -> None:
    qemu = PlainQemu(secure_boot_disk(), "uefi-secure", qga=True, memory_mib=512)
    try:
        seconds = qemu.wait_for("serial", READY, 180)
        print(f"secure_boot_disk: ready after {seconds:.1f} s")

        async def dmesg() -> bytes:
            client = await QgaClient.open_unix(str(qemu.qga_socket), timeout=30)
            try:
                return (await client.run("dmesg")).check().stdout
            finally:
                await client.close()

        assert b"Secure boot enabled" in asyncio.run(dmesg())
    finally:
        qemu.kill()


@pytest.fixture
def swtpm() -> Iterator[Path]:
    """A TPM 2.0 emulator on a unix socket in a private directory; killed afterwards."""
    if shutil.which("swtpm") is None:
        pytest.skip("swtpm is not installed (tools/setup.sh installs it)")
    state = Path(tempfile.mkdtemp(prefix="petri-swtpm-"))
    sock = state / "swtpm.sock"
    proc = subprocess.Popen(["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}", "--terminate",
                             "--ctrl", f"type=unixio,path={sock}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(sock.exists, timeout=10, what="swtpm's socket")
        yield sock
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(state, ignore_errors=True)


def test_a_guest_with_a_tpm_sees_dev_tpm0(swtpm: Path) -> None:
    qemu = PlainQemu(bios_disk(), "bios", qga=True, extra=(
        "-chardev", f"socket,id=chrtpm,path={swtpm}", "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
        "-device", "tpm-tis,tpmdev=tpm0"))
    try:
        qemu.wait_for("serial", READY, 120)

        async def look() -> bytes:
            client = await QgaClient.open_unix(str(qemu.qga_socket), timeout=30)
            try:
                return (await client.run("ls /dev/tpm0 /dev/tpmrm0 && cat /sys/class/tpm/tpm0/tpm_version_major")
                        ).check().stdout
            finally:
                await client.close()

        assert asyncio.run(look()).split() == [b"/dev/tpm0", b"/dev/tpmrm0", b"2"]
    finally:
        qemu.kill()


@pytest.mark.slow
def test_a_cold_cache_builds_every_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # also a cold Linux-guest cache: the kernel is fetched
    for build in (uefi_disk, bios_disk, empty_disk, secure_boot_disk):
        start = time.monotonic()
        path = build()
        print(f"{build.__name__}: cold build {time.monotonic() - start:.1f} s, {path.stat().st_size // MIB} MiB")
        assert path.is_relative_to(tmp_path)
