"""A guest's disk images: format read with ``qemu-img info``, writes kept in overlays.

A user's image is never written unless they ask (``Disk(writable=True)``): the VM gets
a qcow2 overlay in its private run directory backed by the image, so resets, crashes
and experiments leave the original byte-identical.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ...errors import LaunchError
from ...guests.description import Disk

#: Formats QEMU can boot from that we accept from users (``qemu-img info`` decides which one it is).
FORMATS = ("raw", "qcow2", "vmdk", "vhdx", "vpc", "qed", "vdi")
QEMU_IMG_TIMEOUT = 60.0


@dataclass(frozen=True)
class PreparedDisk:
    """What QEMU opens for one disk: the image itself or our overlay over it."""

    source: Path
    path: Path
    format: str
    read_only: bool = False


def qemu_img() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        raise LaunchError("disk images need qemu-img; install it with: sudo apt-get install qemu-utils")
    return path


def image_format(path: Path) -> str:
    """The image's format as ``qemu-img info`` reads it; a LaunchError naming the file otherwise."""
    check_image(path)
    proc = _run_tool([qemu_img(), "info", "--output=json", "--", str(path)], path)
    try:
        fmt = json.loads(proc.stdout)["format"]
    except (ValueError, KeyError) as e:
        raise LaunchError(f"cannot use disk image {path}: qemu-img info gave no format ({e})") from None
    if fmt not in FORMATS:
        raise LaunchError(f"disk image {path} is in format {fmt!r}, which petri_nb does not boot "
                          f"(supported: {', '.join(FORMATS)})")
    return fmt


def check_image(path: Path) -> None:
    """A LaunchError naming the image if it is missing, not a file or not readable."""
    if not path.exists():
        raise LaunchError(f"disk image {path} does not exist")
    if not path.is_file() and not path.is_block_device():
        raise LaunchError(f"disk image {path} is not a file (a directory?)")
    if not os.access(path, os.R_OK):
        raise LaunchError(f"disk image {path} is not readable by this user")


def _run_tool(argv: list[str], path: Path) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=QEMU_IMG_TIMEOUT)
    except FileNotFoundError:
        raise LaunchError(f"disk images need {argv[0]}; install it with: sudo apt-get install qemu-utils") from None
    if proc.returncode != 0:
        why = " ".join(proc.stderr.split()) or f"{Path(argv[0]).name} exited {proc.returncode}"
        if "lock" in why:
            why += " (another QEMU is using it: stop that VM, or launch with a copy of the image)"
        raise LaunchError(f"cannot use disk image {path}: {why}")
    return proc


def overlay_path(rundir: Path, index: int) -> Path:
    """Where disk ``index``'s overlay lives in a VM's run dir."""
    return rundir / f"disk{index}.qcow2"


def prepare(disk: Disk, index: int, rundir: Path) -> PreparedDisk:
    """Check one disk and, unless it is writable, put a qcow2 overlay over it in ``rundir``."""
    source = disk.path.resolve()
    fmt = image_format(source)
    if disk.writable:
        if not os.access(source, os.W_OK):
            raise LaunchError(f"disk image {source} is not writable by this user (writable=True asks to write it)")
        return PreparedDisk(source, source, fmt)
    overlay = overlay_path(rundir, index)
    proc = subprocess.run([qemu_img(), "create", "-q", "-f", "qcow2", "-F", fmt, "-b", str(source), str(overlay)],
                          capture_output=True, text=True, timeout=QEMU_IMG_TIMEOUT)
    if proc.returncode != 0:
        raise LaunchError(f"cannot make an overlay for disk image {source}: {' '.join(proc.stderr.split())}")
    return PreparedDisk(source, overlay, "qcow2")


def prepare_all(disks: tuple[Disk, ...], rundir: Path) -> list[PreparedDisk]:
    return [prepare(disk, i, rundir) for i, disk in enumerate(disks)]


def explain_lock(prepared: list[PreparedDisk], error: LaunchError) -> LaunchError:
    """QEMU's start-up failure, naming the user's image if QEMU could not lock it.

    QEMU takes its image locks when it attaches the disk, so only its own start-up can tell
    (``qemu-img info`` and ``qemu-io -r`` share the write permission and succeed)."""
    failure = str(error)
    image = next((d.source for d in prepared if str(d.source) in failure), None) if "lock" in failure else None
    if image is None:
        return error
    return LaunchError(f"cannot use disk image {image}: it is locked, another QEMU is using it "
                       "(stop that VM, or launch with a copy of the image)")


def check_readable(what: str, path: Path | None) -> None:
    """Files QEMU reads at start (kernel, initrd, ISO): named in the error if missing or unusable."""
    if path is None:
        return
    if not path.exists():
        raise LaunchError(f"{what} {path} does not exist")
    if not path.is_file():
        raise LaunchError(f"{what} {path} is not a file")
    if not os.access(path, os.R_OK):
        raise LaunchError(f"{what} {path} is not readable by this user")
    if path.stat().st_size == 0:  # QEMU would say "No such file" about it
        raise LaunchError(f"{what} {path} is empty (0 bytes)")
