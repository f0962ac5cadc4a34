"""The files a user brings, made from what Debian ships: no petri_nb preset is involved.

- ``debian_kernel()``: Debian's own kernel (linux-image-amd64, unpacked from its .deb).
- ``my_initrd()``: the initrd a kernel developer writes: busybox, a ten-line /init, and the
  kernel's pvpanic driver, packed with busybox's own cpio.
- ``grub_rescue_iso()``: Debian's GRUB rescue CD (grub-rescue-pc), a BIOS-bootable ISO.
- ``uefi_disk()``: a GPT disk whose ESP holds Debian's systemd-boot and kernel.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from grub_vm import grub_rescue_iso

from petri_nb.guests.images import uefi_disk
from petri_nb.guests.linux import fetch_busybox, fetch_kernel

__all__ = ["MY_READY", "debian_kernel", "grub_rescue_iso", "my_initrd", "uefi_disk"]

#: What the kernel developer's /init prints once it listens on the console.
MY_READY = "my-initrd: ready"

INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
insmod /pvpanic.ko
insmod /pvpanic-mmio.ko
echo 1 > /proc/sys/kernel/sysrq
echo "{MY_READY} on $(uname -r)"
exec setsid cttyhack sh
"""


def debian_kernel() -> Path:
    return fetch_kernel()[0]


def my_initrd(dest: Path) -> Path:
    """A fresh initrd in ``dest`` (a user builds theirs; nothing is cached)."""
    _, modules = fetch_kernel()
    root = dest / "initrd-root"
    for sub in ("bin", "proc", "sys", "dev"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    busybox = fetch_busybox()
    shutil.copy(busybox, root / "bin" / "busybox")
    (root / "init").write_text(INIT)
    (root / "init").chmod(0o755)
    for module in ("pvpanic.ko", "pvpanic-mmio.ko"):  # the driver of QEMU's -device pvpanic
        shutil.copy(next(modules.rglob(module)), root / module)
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    out = dest / "my-initrd.cpio"
    with open(out, "wb") as f:
        subprocess.run([str(busybox), "cpio", "-o", "-H", "newc"], cwd=root, input="\n".join(names).encode(),
                       stdout=f, stderr=subprocess.DEVNULL, check=True)
    return out


