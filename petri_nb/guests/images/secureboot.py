"""A secure-boot UEFI disk: Debian's Microsoft-signed shim, its signed GRUB and its signed kernel.

The chain OVMF (``OVMF_CODE_4M.secboot.fd`` + ``OVMF_VARS_4M.ms.fd``, Microsoft keys
enrolled) verifies shim (signed by Microsoft's UEFI CA), shim verifies GRUB (Debian's
key, built into shim), GRUB verifies the kernel through shim; the initramfs is not
verified, so the fixture's own initramfs still runs qemu-ga. Debian's kernel package
(``linux-image-*-amd64``) is the signed one, so ``fetch_kernel`` serves as is.

Shim runs as ``\\EFI\\BOOT\\BOOTX64.EFI`` and loads ``grubx64.efi`` from the same
directory (no ``fbx64.efi``, so it does not go looking for boot entries to create).
Debian's signed GRUB is monolithic: it reads ``grub.cfg`` from its prefix
(``/EFI/debian``); a copy next to it in ``\\EFI\\BOOT`` covers other prefixes.

Measured: GRUB cannot allocate the kernel buffer with 256 MiB of guest RAM ("error:
cannot allocate kernel buffer"); boot this disk with 512 MiB or more.
"""

from __future__ import annotations

from pathlib import Path

from .common import build_atomically, cache_dir, cache_lock, fat_put, is_fresh, make_fat, package_file
from .common import sources as builder_sources
from .esp import ESP_MIB, gpt_disk
from .initramfs import COMMAND_LINE, build_initramfs

SHIM = ("shim-signed", "/usr/lib/shim/shimx64.efi.signed")
GRUB = ("grub-efi-amd64-signed", "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")


def grub_cfg(command_line: str = COMMAND_LINE) -> bytes:
    return f"set timeout=0\nlinux /vmlinuz {command_line}\ninitrd /initrd.img\nboot\n".encode()


def secure_boot_disk(cache: Path | None = None) -> Path:
    """A raw GPT disk OVMF boots with secure boot on (shim -> GRUB -> kernel); built once per user."""
    cache = cache or cache_dir()
    kernel, initrd = build_initramfs(cache)
    with cache_lock(cache, "secureboot"):
        shim, grub = package_file(*SHIM, cache), package_file(*GRUB, cache)
        out = cache / f"uefi-secureboot-{kernel.name.removeprefix('vmlinuz-')}.img"
        if is_fresh(out, [kernel, initrd, shim, grub, *builder_sources()]):
            return out

        def build(tmp: Path) -> None:
            esp = tmp.with_name(tmp.name + ".esp")
            try:
                make_fat(esp, ESP_MIB, "ESP")
                fat_put(esp, {"EFI/BOOT/BOOTX64.EFI": shim, "EFI/BOOT/grubx64.efi": grub,
                              "EFI/BOOT/grub.cfg": grub_cfg(), "EFI/debian/grub.cfg": grub_cfg(),
                              "vmlinuz": kernel, "initrd.img": initrd})
                gpt_disk(tmp, esp)
            finally:
                esp.unlink(missing_ok=True)

        return build_atomically(out, build)
