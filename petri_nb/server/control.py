"""The view's buttons beside the kernel: a fixed allow-list of actions over the VM's second QMP monitor.

The browser sends ``{"id": N, "action": NAME}`` and gets ``{"id": N, "ok": bool, "error": str}``.
Only the actions in ``ACTIONS`` exist; no QMP command name or argument comes from the browser.
QMP events reach every monitor, so the kernel's own session records what these cause.
A reset needs the same dance as ``QemuRuntime.reset``: the VM runs with
``-action reboot=shutdown`` (a guest reset is a halt), so the action is switched to
``reset`` around ``system_reset`` and the firmware's own reboot that follows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient, QMPError

from ..backends.qemu.display import note_view_action, read_facts
from .bridge import SideChannelHandler
from .rundirs import ViewSocket

#: How long a reset waits for the firmware's own reboot (SeaBIOS reboots once more after any reset).
FIRMWARE_REBOOT = 3.0
#: Quiet time after that reboot before guest resets are halts again.
SETTLE = 0.5
QMP_TIMEOUT = 5.0

#: Button name -> the one QMP command it stands for (reset and poweroff add steps, see _act).
ACTIONS = {
    "reset": "system_reset",
    "pause": "stop",
    "resume": "cont",
    "powerdown": "system_powerdown",
    "poweroff": "quit",
}

#: One action at a time per VM (QEMU's monitor socket takes one client); gone with the last user.
_locks: weakref.WeakValueDictionary[Path, asyncio.Lock] = weakref.WeakValueDictionary()


async def _next_reset(events: Any, timeout: float) -> dict[str, Any] | None:
    """The data of the next RESET event within ``timeout``, or None."""
    async def first() -> dict[str, Any]:
        async for ev in events:
            if ev["event"] == "RESET":
                return ev.get("data", {})
        raise EOFError("QMP closed")
    try:
        return await asyncio.wait_for(first(), timeout)
    except TimeoutError:
        return None


async def _reset(qmp: QMPClient, firmware_reboots: bool) -> None:
    with qmp.listener() as events:  # subscribe before the reset, so no event is missed
        await qmp.execute("set-action", {"reboot": "reset"})
        try:
            await qmp.execute("system_reset")
            await _next_reset(events, QMP_TIMEOUT)  # the host reset itself
            if (await qmp.execute("query-status"))["status"] != "running":
                await qmp.execute("cont")  # a halted VM is paused: run it
            # SeaBIOS reboots once more (0xCF9, then perhaps a triple fault, maybe late): those
            # resets belong to this one. Guest resets are halts again only once they have stopped.
            if firmware_reboots and await _next_reset(events, FIRMWARE_REBOOT) is not None:
                while await _next_reset(events, SETTLE) is not None:
                    pass
        finally:
            await qmp.execute("set-action", {"reboot": "shutdown"})


async def _act(qmp: QMPClient, action: str, view: ViewSocket) -> None:
    if action == "reset":  # qboot and OVMF do not reboot themselves after a reset: no wait for it
        await _reset(qmp, read_facts(view.dir).get("firmware_reboots_after_reset", True))
    elif action == "poweroff":  # forced: QEMU quits, the kernel sees the VM gone
        with contextlib.suppress(QMPError, EOFError, OSError):
            await qmp.execute("quit")
    else:
        await qmp.execute(ACTIONS[action])


async def run_action(view: ViewSocket, action: str) -> None:
    """Connect to the VM's control monitor, do ``action``, disconnect (one client at a time per VM)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    lock = _locks.get(view.rundir)
    if lock is None:
        lock = _locks[view.rundir] = asyncio.Lock()
    async with lock:
        note_view_action(view.dir, action)  # before acting: the kernel's timeline names the button
        qmp = QMPClient("petri_nb-view")
        await asyncio.wait_for(qmp.connect(view.path), QMP_TIMEOUT)
        try:
            await asyncio.wait_for(_act(qmp, action, view), QMP_TIMEOUT + FIRMWARE_REBOOT)
        finally:
            with contextlib.suppress(Exception):
                await qmp.disconnect()


class ControlHandler(SideChannelHandler):
    """JSON actions in, JSON results out; one action at a time per VM."""

    socket_kind = "control"

    async def on_message(self, message: str | bytes) -> None:  # type: ignore[override]
        try:
            msg = json.loads(message)
            req_id, action = msg.get("id"), msg.get("action")
        except (ValueError, AttributeError):
            return
        if not isinstance(action, str) or action not in ACTIONS:
            await self._reply(req_id, "unknown action")
            return
        try:
            await run_action(self.view, action)
        except Exception as e:  # one reply per request, whatever broke (the VM may be gone)
            why = "the VM is gone" if not self.view.exists() else f"failed: {type(e).__name__}: {e}"
            await self._reply(req_id, f"{action}: {why}")
            return
        await self._reply(req_id, "")

    async def _reply(self, req_id: Any, error: str) -> None:
        if isinstance(req_id, int):
            with contextlib.suppress(Exception):
                await self.write_message(json.dumps({"id": req_id, "ok": not error, "error": error}))
