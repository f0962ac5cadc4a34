"""What a VM's run directory offers its live view, whatever the backend: the contract between a
backend (which serves the sockets and writes the facts) and the view server (which only reads).

The view server runs in the Jupyter server's process, not the kernel's; it knows a VM only by
its private 0700 run directory, so everything it needs is a file or a socket in there.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

#: Socket names inside the run dir; the server extension looks for exactly these. QEMU serves
#: the first two; the runtime's serial tap (serial_tap.py) serves the third.
VIEW_SOCKETS = {"vnc": "vnc.sock", "control": "control.sock", "serial": "serial.sock"}


#: Facts about the VM the view server needs and cannot ask QEMU (written by the runtime).
FACTS = "view.json"


def write_facts(rundir: Path, backend: str, **facts: Any) -> None:
    """Name the backend (whose buttons the view server uses) and what its buttons need to know."""
    (rundir / FACTS).write_text(json.dumps({"backend": backend, **facts}))


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
