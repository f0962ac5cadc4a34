"""VmView: the live view of a VM in a notebook (anywidget; front end in ``widgets/vmview.js``).

The widget is a thin bridge: frames come from a ``FramePump`` on the runtime loop
and go out as binary message buffers; browser input and button presses are turned
into ``AsyncVm`` calls on the runtime loop (so they are raced and on the timeline).
Status text that the guest can influence (halt detail, console line) travels as
plain trait strings and the front end renders it with ``textContent`` only.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from ..model.keymap import qcode
from ..model.run_state import RunState
from ..model.screen import encode_png
from ..runtime.loop import submit
from .screen_stream import ACK_TIMEOUT, DEFAULT_FPS, MAX_IN_FLIGHT, FramePump

if TYPE_CHECKING:
    from ..vm.facade import AsyncVm, Vm

#: Longest console line shown in the status bar.
CONSOLE_SNIPPET = 160
#: How long displaying the view may wait for the static copy of the screen.
STATIC_FRAME_TIMEOUT = 2.0
#: Comm-path buttons. "powerdown" is the ACPI power button, as on the view server; the forced
#: "poweroff" (QEMU quits) exists only there, and its button is shown only on that path.
ACTIONS = ("reset", "pause", "resume", "powerdown")


def _asset(name: str) -> Path:
    """The built front end ships in package ``petri_nb.notebook.widgets`` (source: the top-level ``widgets/``)."""
    return Path(str(resources.files("petri_nb.notebook.widgets") / name))


class VmView(anywidget.AnyWidget):
    """Live framebuffer, keyboard/mouse input, status bar and control buttons for one VM."""

    _esm = _asset("vmview.js")
    _css = _asset("vmview.css")

    vm_name = traitlets.Unicode("").tag(sync=True)
    state = traitlets.Unicode("").tag(sync=True)
    halt_reason = traitlets.Unicode("").tag(sync=True)
    halt_detail = traitlets.Unicode("").tag(sync=True)
    console_line = traitlets.Unicode("").tag(sync=True)
    #: Epoch seconds of the launch; the browser counts uptime itself (no traffic while static).
    launched_at = traitlets.Float(0.0).tag(sync=True)
    stopped_at = traitlets.Float(0.0).tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    #: The VM's run directory name: the browser asks the view server (petri_nb.server) for this
    #: VM's sockets by it; the server checks it names this user's private run dir. Never a path.
    view_id = traitlets.Unicode("").tag(sync=True)

    def __init__(self, vm: Vm | AsyncVm, *, fps: float = DEFAULT_FPS, max_in_flight: int = MAX_IN_FLIGHT,
                 ack_timeout: float = ACK_TIMEOUT, **kwargs: Any) -> None:
        aio: AsyncVm = getattr(vm, "aio", vm)
        vnc = aio.view_sockets.get("vnc")
        super().__init__(vm_name=aio.name, launched_at=time.time() - aio.uptime,
                         view_id=vnc.parent.name if vnc else "", **kwargs)
        self.vm = aio
        self._closed = False
        self._input_lock: asyncio.Lock | None = None
        self._buttons = 0
        self.pump = FramePump(aio.runtime.screenshot, self._send_frame, fps=fps, max_in_flight=max_in_flight,
                              ack_timeout=ack_timeout, alive=self._alive,
                              on_tick=self._sync_console_line)
        self.on_msg(self._on_msg)
        self._on_vm_state(aio.state, aio.state)
        self._unobserve = aio.observe_state(self._on_vm_state)
        self.pump.start()

    # -- runtime loop side -----------------------------------------------------

    def _alive(self) -> bool:
        return not self._closed and not self.stopped_at

    def _send_frame(self, meta: dict[str, Any], data: bytes) -> None:
        self.send(meta, buffers=[data])

    def _on_vm_state(self, old: RunState, new: RunState) -> None:
        """Told by the VM (on the runtime loop) instead of polling it."""
        self._sync_status()
        if new in (RunState.GONE, RunState.TORN_DOWN) and not self.stopped_at:
            self.stopped_at = time.time()

    def _sync_status(self) -> None:
        vm = self.vm
        halt = vm.last_halt
        # Held together, the browser never shows a new state with the previous halt.
        with self.hold_sync():
            self.state = vm.state.value
            self.halt_reason = halt.reason.name if halt else ""
            self.halt_detail = halt.detail if halt else ""
            self._sync_console_line()

    def _sync_console_line(self) -> None:
        # Traitlets only sends values that changed, so a quiet console costs nothing here.
        self.console_line = self.vm.console.last_line[-CONSOLE_SNIPPET:]

    # -- kernel side: messages from the browser ----------------------------------

    def _on_msg(self, _widget: Any, content: Any, buffers: list[bytes]) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "ack" and isinstance(content.get("seq"), int):
            self.pump.ack(content["seq"])
        elif kind == "ready":  # a comm-path view appeared (perhaps beside a VNC one): it needs frames
            self.pump.frames_wanted = True
            self.pump.resend()
        elif kind == "path":  # a view that shows the screen over VNC needs no frames from us
            self.pump.frames_wanted = content.get("path") != "vnc"
        elif kind == "key" and isinstance(content.get("code"), str):
            key = qcode(content["code"])
            if key is not None:
                self._input([{"type": "key", "data": {"down": bool(content.get("down")),
                                                      "key": {"type": "qcode", "data": key}}}])
        elif kind == "pointer":
            self._pointer(content)
        elif kind == "action" and content.get("action") in ACTIONS:
            self._submit(self._action(content["action"]))

    def _pointer(self, content: dict[str, Any]) -> None:
        try:
            x = min(max(float(content["x"]), 0.0), 1.0)
            y = min(max(float(content["y"]), 0.0), 1.0)
            buttons = int(content.get("buttons", 0))
        except (KeyError, TypeError, ValueError):
            return
        events: list[dict[str, Any]] = [
            {"type": "abs", "data": {"axis": "x", "value": round(x * 0x7FFF)}},
            {"type": "abs", "data": {"axis": "y", "value": round(y * 0x7FFF)}},
        ]
        for bit, name in ((1, "left"), (2, "right"), (4, "middle")):
            if (buttons ^ self._buttons) & bit:
                events.append({"type": "btn", "data": {"down": bool(buttons & bit), "button": name}})
        self._buttons = buttons
        self._input(events)

    def _input(self, events: list[dict[str, Any]]) -> None:
        async def send() -> None:
            if self._input_lock is None:
                self._input_lock = asyncio.Lock()
            async with self._input_lock:  # FIFO: key presses reach the guest in order
                await self.vm.send_input(events)

        self._submit(send())

    async def _action(self, action: str) -> None:
        if action == "powerdown":
            await self.vm.send_shutdown("poweroff")
        elif action == "reset":  # the button answers at once; the timeline notes when the guest is ready
            await self.vm.reset(wait_ready=False)
        else:
            await getattr(self.vm, action)()

    def _submit(self, coro: Any) -> None:
        submit(coro).add_done_callback(self._report)

    def _report(self, fut: concurrent.futures.Future[Any]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        self.error = f"{type(exc).__name__}: {exc}" if exc else ""

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget, plus the screen as a PNG for where widgets don't render (an HTML report,
        a notebook saved without widget state): nbconvert then shows the image, not an empty box."""
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle  # anywidget: (data, metadata)
        if isinstance(data, dict) and self.vm.state not in ("torn down", "gone"):
            try:
                shot = submit(self.vm.runtime.screenshot()).result(STATIC_FRAME_TIMEOUT)
                data["image/png"] = base64.b64encode(encode_png(shot)).decode()
            except Exception:  # noqa: BLE001  (no picture is fine; the widget is what matters)
                pass
        return bundle

    def close(self) -> None:
        self._closed = True
        self._unobserve()
        self.pump.stop()
        super().close()
