"""The view's buttons beside the kernel: a fixed allow-list of actions, done by the VM's backend.

The browser sends ``{"id": N, "action": NAME}`` and gets ``{"id": N, "ok": bool, "error": str}``.
Only the actions in ``ACTIONS`` exist; no command name or argument comes from the browser.
What an action does is the backend's (``backends.view_control``; on QEMU, over the VM's
second QMP monitor, whose events the kernel's own session also sees and records).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from pathlib import Path
from typing import Any

from ..backends import view_control
from ..backends.view import note_view_action
from .bridge import SideChannelHandler
from .rundirs import ViewSocket

#: The buttons the view has; what each does is the backend's (backends.view_control).
ACTIONS = ("reset", "pause", "resume", "powerdown", "poweroff")

#: One action at a time per VM (QEMU's monitor socket takes one client); gone with the last user.
_locks: weakref.WeakValueDictionary[Path, asyncio.Lock] = weakref.WeakValueDictionary()


async def run_action(view: ViewSocket, action: str) -> None:
    """Do ``action`` on the VM whose control socket is ``view`` (one client at a time per VM)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    lock = _locks.get(view.rundir)
    if lock is None:
        lock = _locks[view.rundir] = asyncio.Lock()
    async with lock:
        note_view_action(view.dir, action)  # before acting: the kernel's timeline names the button
        await view_control(view.dir)(view.dir, Path(view.path), action)


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
