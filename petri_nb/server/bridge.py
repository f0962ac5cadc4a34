"""Authenticated websocket handlers of the view server (base class and the VNC byte bridge).

Each handler refuses a request without a Jupyter user (token or login cookie) with 403
before the websocket upgrade, and opens a socket only through ``rundirs.resolve``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.utils import ensure_async
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from ..runtime.abandon import abandon
from .rundirs import Refused, ViewSocket, resolve

#: Same permission as a kernel's websocket: whoever may run code may drive its VMs.
AUTH_RESOURCE = "kernels"
READ_CHUNK = 1 << 16


class SideChannelHandler(WebSocketMixin, JupyterHandler, WebSocketHandler):  # type: ignore[misc]
    """Authenticate, authorise, then resolve the VM's socket of kind ``socket_kind``."""

    auth_resource = AUTH_RESOURCE
    socket_kind = ""
    view: ViewSocket

    async def get(self, *args: Any, **kwargs: Any) -> None:
        user = self.current_user
        if not user:
            self.log.warning("petri_nb view: refused an unauthenticated websocket")
            raise web.HTTPError(403)
        if self.authorizer is not None and not await ensure_async(
            self.authorizer.is_authorized(self, user, "execute", self.auth_resource)
        ):
            raise web.HTTPError(403)
        try:
            self.view = resolve(args[0], self.socket_kind)
        except Refused as e:
            self.log.warning("petri_nb view: refused %s socket %r: %s", self.socket_kind, args[0], e)
            raise web.HTTPError(403, str(e)) from None
        try:  # the upgrade, then the whole websocket session: the checked directory stays open till its end
            resp = super().get(*args, **kwargs)
            if resp is not None:
                await ensure_async(resp)  # type: ignore[arg-type]
        finally:
            self.view.close()


class RawBridge(SideChannelHandler):
    """Raw bytes both ways between a binary websocket and the VM's unix socket of ``socket_kind``."""

    async def open(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self.set_nodelay(True)  # small key events must not wait for Nagle
        try:
            self._reader, self._writer = await asyncio.open_unix_connection(self.view.path)
        except OSError as e:
            self.log.warning("petri_nb view: cannot reach %s in %s: %s", self.view.name, self.view.rundir, e)
            self.close(1011, f"the VM's {self.socket_kind} socket is not reachable")
            return
        self._pump = asyncio.ensure_future(self._to_browser())

    async def _to_browser(self) -> None:
        try:
            while data := await self._reader.read(READ_CHUNK):
                await self.write_message(data, binary=True)
        except (OSError, WebSocketClosedError):
            pass
        finally:
            self.close()

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes) and hasattr(self, "_writer"):
            self._writer.write(message)  # binary only; text frames are ignored

    def on_close(self) -> None:
        if hasattr(self, "_writer"):
            with contextlib.suppress(Exception):
                self._writer.close()
        if hasattr(self, "_pump"):
            abandon(self._pump)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return "binary" if "binary" in subprotocols else None


class VncHandler(RawBridge):
    """noVNC's RFB stream to QEMU's VNC server."""

    socket_kind = "vnc"


class SerialHandler(RawBridge):
    """The serial pane (xterm.js) to the runtime's serial tap: console bytes out, typed bytes in."""

    socket_kind = "serial"
