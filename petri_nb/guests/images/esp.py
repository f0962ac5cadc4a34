"""A UEFI disk: GPT with one FAT32 EFI system partition that OVMF boots via systemd-boot.

systemd-boot (Debian's ``systemd-boot-efi``) sits at the removable-media path
``\\EFI\\BOOT\\BOOTX64.EFI``, so OVMF boots it with an empty variable store and no
boot entry; ``loader.conf`` (timeout 0) starts Debian's kernel with the fixture
initramfs at once. The partition table is written by ``sfdisk`` into a plain file and
the FAT image is built separately with mtools, so nothing needs root or a loop device.
"""

from __future__ import annotations

from pathlib import Path

from .common import MIB, build_atomically, cache_dir, cache_lock, fat_put, is_fresh, make_fat, package_file, run, tool
from .common import sources as builder_sources
from .initramfs import COMMAND_LINE, build_initramfs

SYSTEMD_BOOT = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ESP_MIB = 64
#: Space before the partition (GPT header, alignment) and after it (backup GPT).
GAP_MIB = 1


def gpt_disk(path: Path, partition: Path, type_guid: str = ESP_TYPE, name: str = "EFI System") -> None:
    """Write a GPT disk holding ``partition`` (an image file) as its only partition."""
    size = partition.stat().st_size
    with open(path, "wb") as f:
        f.truncate(size + 2 * GAP_MIB * MIB)
    script = f"label: gpt\nstart={GAP_MIB * MIB // 512}, size={size // 512}, type={type_guid}, name=\"{name}\"\n"
    run([tool("sfdisk", "fdisk"), "--quiet", "--no-reread", "--no-tell-kernel", str(path)], stdin=script)
    with open(partition, "rb") as src, open(path, "r+b") as dst:
        offset = GAP_MIB * MIB
        while chunk := src.read(MIB):
            if chunk.count(0) != len(chunk):  # leave unwritten MiBs as holes: the image stays sparse
                dst.seek(offset)
                dst.write(chunk)
            offset += len(chunk)


def esp_files(loader: Path, kernel: Path, initrd: Path, command_line: str = COMMAND_LINE) -> dict[str, Path | bytes]:
    """ESP contents: the loader at the removable path and one systemd-boot entry."""
    return {
        "EFI/BOOT/BOOTX64.EFI": loader,
        "loader/loader.conf": b"timeout 0\ndefault petri.conf\neditor no\n",
        "loader/entries/petri.conf": (f"title petri_nb fixture\nlinux /vmlinuz\ninitrd /initrd.img\n"
                                      f"options {command_line}\n").encode(),
        "vmlinuz": kernel,
        "initrd.img": initrd,
    }


def uefi_disk(cache: Path | None = None) -> Path:
    """A raw GPT disk OVMF boots (systemd-boot -> Debian kernel -> qemu-ga); built once per user."""
    cache = cache or cache_dir()
    kernel, initrd = build_initramfs(cache)
    with cache_lock(cache, "uefi"):
        loader = package_file("systemd-boot-efi", SYSTEMD_BOOT, cache)
        out = cache / f"uefi-{kernel.name.removeprefix('vmlinuz-')}.img"
        if is_fresh(out, [kernel, initrd, loader, *builder_sources()]):
            return out

        def build(tmp: Path) -> None:
            esp = tmp.with_name(tmp.name + ".esp")
            try:
                make_fat(esp, ESP_MIB, "ESP")
                fat_put(esp, esp_files(loader, kernel, initrd))
                gpt_disk(tmp, esp)
            finally:
                esp.unlink(missing_ok=True)

        return build_atomically(out, build)
