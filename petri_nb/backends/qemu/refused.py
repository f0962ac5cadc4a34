"""The error for a QMP command QEMU answered with an error (as opposed to a lost link)."""

from __future__ import annotations

from qemu.qmp import ExecuteError

from ...errors import PetriError


class QemuRefused(PetriError):
    """QEMU answered a QMP command with an error; ``error`` is qemu.qmp's ExecuteError."""

    def __init__(self, cmd: str, error: ExecuteError) -> None:
        self.cmd = cmd
        self.error = error
        super().__init__(f"QEMU refused {cmd}: {error}")
