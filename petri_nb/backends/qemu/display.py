"""The side channel a VM's live view uses beside the kernel: VNC and a second QMP monitor.

Both are unix sockets inside the VM's private 0700 run directory, so only this user can
reach them; the Jupyter server extension (``petri_nb.server``) bridges them to the browser
behind Jupyter's auth. Never ``websocket=on``: QEMU 7.2 then also listens on TCP port 5700
on every interface.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Socket names inside the run dir; the server extension looks for exactly these. QEMU serves
#: the first two; the runtime's serial tap (serial_tap.py) serves the third.
VIEW_SOCKETS = {"vnc": "vnc.sock", "control": "control.sock", "serial": "serial.sock"}
#: The view's sockets that QEMU itself serves (and so unlinks when it quits).
QEMU_VIEW_SOCKETS = (VIEW_SOCKETS["vnc"], VIEW_SOCKETS["control"])


def display_args(rundir: Path) -> list[str]:
    """QEMU argv serving the display on a VNC unix socket and a QMP monitor for the view's buttons.

    QMP events reach every monitor, so the kernel's own QMP session still sees (and records)
    everything the view's buttons cause."""
    return [
        "-vnc", f"unix:{rundir / VIEW_SOCKETS['vnc']}",
        "-qmp", f"unix:{rundir / VIEW_SOCKETS['control']},server=on,wait=off",
    ]


#: Facts about the VM the view server needs and cannot ask QEMU (written by the runtime).
FACTS = "view.json"


def write_facts(rundir: Path, *, firmware_reboots_after_reset: bool) -> None:
    (rundir / FACTS).write_text(json.dumps({"firmware_reboots_after_reset": firmware_reboots_after_reset}))


def read_facts(rundir: Path) -> dict[str, Any]:
    """The facts the runtime wrote; none (so the cautious defaults) if it wrote nothing readable."""
    try:
        facts = json.loads((rundir / FACTS).read_text())
    except (OSError, ValueError):
        return {}
    return facts if isinstance(facts, dict) else {}


#: The view server notes each button press here just before acting on it, so the kernel's timeline
#: can say which host events the view caused (a QMP event does not say which monitor asked).
ACTIONS_LOG = "view-actions.jsonl"
_ACTION = re.compile(r"[a-z]{1,20}")


def note_view_action(rundir: Path, action: str) -> None:
    """Append one press (0600, in the 0700 run dir; a symlink there is refused)."""
    fd = os.open(rundir / ACTIONS_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(json.dumps({"action": action, "wall": time.time()}) + "\n")


class ViewActions:
    """The presses noted since the last ``new()`` (complete lines only; anything odd is skipped)."""

    def __init__(self, rundir: Path) -> None:
        self._path = rundir / ACTIONS_LOG
        self._offset = 0

    def new(self) -> list[dict[str, Any]]:
        try:
            with open(self._path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read(65536)
        except OSError:
            return []
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        presses = []
        for line in complete.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and _ACTION.fullmatch(str(entry.get("action"))):
                    presses.append({"action": entry["action"], "wall": float(entry.get("wall", 0.0))})
        return presses


def view_sockets(rundir: Path | None) -> dict[str, Path]:
    """The view's sockets of a VM whose run dir is ``rundir`` (empty before launch)."""
    return {} if rundir is None else {kind: rundir / name for kind, name in VIEW_SOCKETS.items()}


@contextlib.contextmanager
def sockets_kept(rundir: Path | None, names: tuple[str, ...]) -> Iterator[None]:
    """Keep the names of the sockets QEMU serves across a QEMU swap (restore, relaunch).

    The replacement QEMU binds the same paths first; the old one, quitting inside this
    block, unlinks its sockets' paths even though they now name the new QEMU's sockets.
    A hard link made before (unix sockets are found by inode) puts each name back after."""
    kept: dict[Path, Path] = {}
    for name in names if rundir is not None else ():
        path = rundir / name
        spare = path.with_name(path.name + ".keep")
        with contextlib.suppress(OSError):
            os.link(path, spare)
            kept[path] = spare
    try:
        yield
    finally:
        for path, spare in kept.items():
            with contextlib.suppress(OSError):
                os.replace(spare, path)
