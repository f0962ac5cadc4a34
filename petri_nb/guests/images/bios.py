"""A BIOS disk: a FAT file system with SYSLINUX in its boot sector, which SeaBIOS boots.

The whole disk is one FAT32 file system (a "superfloppy", no partition table): its
boot sector is sector 0, which SeaBIOS loads and runs. Debian's ``syslinux`` installer
writes the boot sector and ``ldlinux.sys`` through mtools, so no mount and no root.
"""

from __future__ import annotations

from pathlib import Path

from .common import build_atomically, cache_dir, cache_lock, fat_put, is_fresh, make_fat, mtools_env, run, tool
from .common import sources as builder_sources
from .initramfs import COMMAND_LINE, build_initramfs

DISK_MIB = 64


def syslinux_cfg(command_line: str = COMMAND_LINE) -> bytes:
    return (f"DEFAULT petri\nPROMPT 0\nTIMEOUT 0\nLABEL petri\n  KERNEL /vmlinuz\n"
            f"  INITRD /initrd.img\n  APPEND {command_line}\n").encode()


def bios_disk(cache: Path | None = None) -> Path:
    """A raw disk SeaBIOS boots (SYSLINUX -> Debian kernel -> qemu-ga); built once per user."""
    cache = cache or cache_dir()
    kernel, initrd = build_initramfs(cache)
    with cache_lock(cache, "bios"):
        out = cache / f"bios-{kernel.name.removeprefix('vmlinuz-')}.img"
        if is_fresh(out, [kernel, initrd, *builder_sources()]):
            return out

        def build(tmp: Path) -> None:
            make_fat(tmp, DISK_MIB, "PETRIBIOS")
            fat_put(tmp, {"vmlinuz": kernel, "initrd.img": initrd, "syslinux.cfg": syslinux_cfg()})
            run([tool("syslinux", "syslinux"), "--install", str(tmp)], mtools_env())

        return build_atomically(out, build)
