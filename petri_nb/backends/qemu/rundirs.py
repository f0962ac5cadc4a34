"""Each VM's private run directory (0700): sockets, logs, overlays, the firmware's variables.

A run directory records who owns it (pid and process start time). The Python process
normally removes it at teardown; one that was SIGKILLed cannot, so the first launch of
a later process removes the run directories whose owner is gone (console logs can hold
secrets and overlays can be large).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

from ...errors import LaunchError

PREFIX = "petri_nb-"
OWNER = "owner"
#: How much of the VM name goes into the directory name (sockets stay far below AF_UNIX's 108 bytes).
NAME_CHARS = 24
#: AF_UNIX's limit on a socket path (sun_path is 108 bytes with the NUL), and the longest socket
#: name a run dir holds ("console.sock", "control.sock"; room for a longer one).
SUN_PATH_MAX = 107
LONGEST_SOCKET = 14
#: mkdtemp's random part, and the "-" and "/" around it.
_RANDOM_PART = 8 + 2

_reaped = threading.Event()


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), if it runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def make(name: str) -> Path:
    """A new private run directory for the VM called ``name``, marked as ours."""
    if not _reaped.is_set():
        _reaped.set()
        reap_orphans()
    base = tempfile.gettempdir()
    prefix = f"{PREFIX}{name[:NAME_CHARS]}-"
    if "," in base:  # QEMU's socket, chardev and log options would split the run dir's paths there
        raise LaunchError(f"the temp directory {base!r} (TMPDIR) contains a comma, which QEMU's options cannot "
                          "carry in the run directory's socket paths; set TMPDIR to a directory without one")
    longest = len(os.fsencode(base)) + 1 + len(os.fsencode(prefix)) + _RANDOM_PART + LONGEST_SOCKET
    if longest > SUN_PATH_MAX:  # binding the first socket would fail with a bare OSError
        raise LaunchError(f"the temp directory {base[:60]!r}... (TMPDIR, {len(os.fsencode(base))} bytes) is too "
                          f"long for the VM's sockets (AF_UNIX paths are at most {SUN_PATH_MAX} bytes); "
                          "set TMPDIR to a shorter directory, such as /tmp")
    try:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))  # mode 0700
        (path / OWNER).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
    except OSError as e:
        raise LaunchError(f"cannot make a run directory in the temp directory {base!r} (TMPDIR): "
                          f"{e.strerror or e}") from None
    return path


def unmark(path: Path) -> None:
    """Make ``path`` the user's to keep: the next process's reaping leaves it (a moved recording)."""
    with contextlib.suppress(FileNotFoundError):
        (path / OWNER).unlink()


def reap_orphans(base: Path | None = None) -> list[Path]:
    """Remove this user's run directories (and temporary recordings, ``petri_nb-rec-*``) whose owning
    process is gone; returns what was removed."""
    base = base or Path(tempfile.gettempdir())
    removed = []
    for path in base.glob(f"{PREFIX}*"):
        try:
            if path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.getuid():
                continue
            pid, started = (path / OWNER).read_text().split()
        except (OSError, ValueError):
            continue  # not one of ours (or not yet marked): leave it
        if _start_time(int(pid)) != started:  # the pid is free or was reused by another process
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
