"""Test disk images built from Debian packages without root: UEFI, secure-boot UEFI, BIOS, unbootable.

Each builder returns the path of a raw image in the per-user cache
(``$XDG_CACHE_HOME/petri_nb/images``), building it once. The bootable ones run
Debian's kernel with an initramfs that prints ``READY_LINE`` on ttyS0 and starts the
real ``qemu-ga`` on the virtio-serial port ``org.qemu.guest_agent.0`` when present.
Treat the images as read-only: boot them through an overlay or a copy.
"""

from __future__ import annotations

from .bios import bios_disk
from .common import cache_dir
from .empty import empty_disk
from .esp import uefi_disk
from .initramfs import QGA_PORT, READY, READY_LINE
from .secureboot import secure_boot_disk

__all__ = ["QGA_PORT", "READY", "READY_LINE", "bios_disk", "cache_dir", "empty_disk", "secure_boot_disk", "uefi_disk"]
