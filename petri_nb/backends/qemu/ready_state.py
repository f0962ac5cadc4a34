"""A QEMU guest's ready state for the boot cache: what identifies it, what is saved, how it starts.

The identity is everything that shapes the machine at its ready moment: the guest
description, each file QEMU reads (path, size, mtime, inode and device: a changed file is
a miss, never a stale hit), the firmware files, the QEMU binary and its version, and the
accel. Saved: the migration stream, and, taken while the VM is paused for it, the disk
overlays and the UEFI variable store (QEMU's migration carries device and RAM state,
not block contents). A hit copies those files into the new run dir, starts QEMU with
``-incoming defer`` and loads the stream; the user's images stay the overlays' backing
files, never written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ...errors import NotSupported, PetriError
from ...guests.description import Guest
from ...records.boot_cache import verify_large
from . import migration
from .command import find_binary
from .disks import PreparedDisk, check_image, check_readable, overlay_path
from .firmware import OVMF, OVMF_DIR, QBOOT, VARS_FILE
from .instance import QemuInstance

STATE_FILE = "state.bin"
#: Guest fields that do not shape the machine: changing them keeps a hit.
NOT_SHAPING = frozenset({"name", "liveness_probe", "symbols", "halt_commands", "ready_timeout"})
#: SeaBIOS and the VGA BIOS as QEMU finds them (Debian: symlinks into the seabios package).
BIOS_FILES = (Path("/usr/share/qemu/bios-256k.bin"), Path("/usr/share/qemu/vgabios-stdvga.bin"))


def refusal(guest: Guest) -> str | None:
    """Why this guest cannot start from a cached state, or None."""
    if guest.record:
        return "a recorded run starts from instruction 0 (record=True)"
    if guest.tpm:
        return "the TPM's state lives in swtpm, outside QEMU's saved state (tpm=True)"
    if any(d.writable for d in guest.disks):
        return "a writable disk changes under the cached state (Disk(writable=True)); boot it through an overlay"
    return None


def file_identity(path: Path | str) -> dict[str, Any]:
    """What tells one version of a file from another without reading it."""
    real = Path(path).resolve()
    st = real.stat()
    return {"path": str(real), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino,
            "device": st.st_dev}


@functools.lru_cache(maxsize=8)
def _version(binary: str, mtime_ns: int, inode: int) -> str:
    proc = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    return proc.stdout.splitlines()[0] if proc.stdout else f"exit {proc.returncode}"


def identity(guest: Guest, accel: str) -> dict[str, Any]:
    """The cache key's material for ``guest`` under ``accel`` (NotSupported if it cannot be cached)."""
    if (why := refusal(guest)) is not None:
        raise NotSupported(f"boot_cache: {why}")
    # The files are read for the key before any launch step checks them: the same errors as a boot.
    for what, path in (("kernel image", guest.kernel), ("initrd", guest.initrd), ("CD-ROM image", guest.cdrom),
                       ("firmware_vars", guest.firmware_vars)):
        check_readable(what, path)
    for disk in guest.disks:
        check_image(disk.path.resolve())
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(guest):
        if f.name in NOT_SHAPING:
            continue
        value = getattr(guest, f.name)
        if isinstance(value, Path):
            value = file_identity(value)
        elif f.name == "disks":
            value = [{"image": file_identity(d.path), "writable": d.writable} for d in value]
        elif f.name == "nics":
            value = [dict(n.forward) for n in value]
        fields[f.name] = value
    binary = file_identity(find_binary(guest.binary))
    return {
        "backend": "qemu",
        "guest": fields,
        "accel": accel,
        "qemu": {**binary, "version": _version(binary["path"], binary["mtime_ns"], binary["inode"])},
        "firmware_files": [file_identity(p) for p in _firmware_files(guest.firmware) if p.exists()],
        "extra_files": [file_identity(p) for p in _files_named_in(guest.extra_args)],
    }


def _firmware_files(firmware: str) -> list[Path]:
    if firmware == "qboot":
        return [QBOOT, BIOS_FILES[1]]
    if firmware in OVMF:
        return [OVMF_DIR / OVMF[firmware].code, OVMF_DIR / OVMF[firmware].vars, BIOS_FILES[1]]
    return list(BIOS_FILES)


def _files_named_in(args: tuple[str, ...]) -> list[Path]:
    """Existing files that extra QEMU arguments name (``file=/x.img,...``): their changes miss too."""
    found = []
    for arg in args:
        for part in arg.replace(",", "=").split("="):
            if part.startswith("/") and os.path.isfile(part):
                found.append(Path(part))
    return found


def saved_files(disks: list[PreparedDisk], rundir: Path) -> dict[str, Path]:
    """The run dir's files a ready state needs besides the stream: overlays, the variable store."""
    files = {d.path.name: d.path for d in disks if d.path.parent == rundir}
    if (rundir / VARS_FILE).exists():
        files[VARS_FILE] = rundir / VARS_FILE
    return files


async def save(folder: Path, execute: Any, send_fd: Any, status: Callable[[], Awaitable[str]],
               pause: Callable[[], Awaitable[None]], resume: Callable[[], Awaitable[None]],
               files: dict[str, Path]) -> None:
    """Write the stream and copies of ``files`` into ``folder``, all from one paused moment."""
    was_running = await status() == "running"
    if was_running:
        await pause()
    try:  # the files are copied while the VM is still paused, so they match the stream
        await migration.save_to_file(execute, send_fd, folder / STATE_FILE)
        await asyncio.to_thread(_copy_files, folder, files)
    finally:
        if was_running:
            await migration.resume_once_finalized(resume, status)


def _copy_files(folder: Path, files: dict[str, Path]) -> None:
    for name, path in files.items():
        shutil.copyfile(path, folder / name)


def restore_files(folder: Path, rundir: Path, guest: Guest) -> tuple[list[PreparedDisk], Path | None]:
    """The entry's overlays, copied where this VM's command line opens them (in place of new ones:
    the key pins the images they lie over), and the variable store to start from (the entry's)."""
    prepared = [PreparedDisk(d.path.resolve(), overlay_path(rundir, i), "qcow2") for i, d in enumerate(guest.disks)]
    for disk in prepared:
        shutil.copyfile(folder / disk.path.name, disk.path)
    saved_vars = folder / VARS_FILE
    return prepared, saved_vars if saved_vars.exists() else guest.firmware_vars


async def load(inst: QemuInstance, folder: Path) -> str:
    """Feed the entry's stream to ``inst`` (started with ``-incoming defer``); its run state after."""
    checking = asyncio.ensure_future(asyncio.to_thread(verify_large, folder))  # beside the load: free time
    try:
        status = await migration.load_file(inst, folder / STATE_FILE)
    finally:
        try:
            await checking
        except (OSError, ValueError, KeyError) as e:
            raise PetriError(f"damaged: {e}") from e
    return status


def check_loaded(status: str) -> None:
    if status != "paused":
        raise NotSupported(f"the cached state loaded as {status!r}, not a paused guest")
