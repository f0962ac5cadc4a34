"""The live view's buttons on QEMU: each allowed action over the VM's second QMP monitor.

Called by the view server (another process) with the run dir's control socket. A reset is
the same host reset the runtime does (host_reset.py), with the firmware's reboot settled by
quiet time, since the server reads no console. Power off is forced here: QEMU quits and the
kernel sees the VM gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from qemu.qmp import QMPClient, QMPError

from ..view import read_facts
from .host_reset import host_reset

QMP_TIMEOUT = 5.0
#: The bound on one action (a reset waits for the firmware's own reboot).
ACTION_TIMEOUT = 15.0

#: Button name -> the one QMP command it stands for (reset and poweroff add steps, see _act).
COMMANDS = {
    "reset": "system_reset",
    "pause": "stop",
    "resume": "cont",
    "powerdown": "system_powerdown",
    "poweroff": "quit",
}


async def run_action(rundir: Path, sock: Path, action: str) -> None:
    """Connect to the VM's control monitor, do ``action``, disconnect."""
    if action not in COMMANDS:
        raise ValueError(f"unknown action {action!r}")
    qmp = QMPClient("petri_nb-view")
    await asyncio.wait_for(qmp.connect(str(sock)), QMP_TIMEOUT)
    try:
        await asyncio.wait_for(_act(qmp, action, rundir), ACTION_TIMEOUT)
    finally:
        with contextlib.suppress(Exception):
            await qmp.disconnect()


async def _act(qmp: QMPClient, action: str, rundir: Path) -> None:
    if action == "reset":  # qboot and OVMF do not reboot themselves after a reset: no wait for it
        async def status() -> str:
            return str((await qmp.execute("query-status"))["status"])
        await host_reset(qmp.execute, qmp.listen, status, None,
                         read_facts(rundir).get("firmware_reboots_after_reset", True))
    elif action == "poweroff":
        with contextlib.suppress(QMPError, EOFError, OSError):
            await qmp.execute("quit")
    else:
        await qmp.execute(COMMANDS[action])
