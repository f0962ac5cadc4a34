"""The live view's frame source: poll the screen, send only changes, never queue stale frames.

Runs as a task on the runtime loop (``petri_nb.runtime.loop``), not on the Jupyter kernel's
loop, so frames keep flowing while a cell blocks in a ``Vm`` call. Each poll takes a
QMP ``screendump`` (about 3 ms at 720x400), hashes the pixels and, only when they
changed, encodes a PNG (lossless, decoded natively by the browser) and hands it to
``send``. The browser acks every frame it drew; with ``max_in_flight`` frames unacked
the pump keeps polling but holds only the newest changed frame, so a slow browser
sees the latest screen, not a backlog. Acks travel on the kernel's shell channel,
which is busy while a cell runs, so an unacked frame counts as delivered after
``ack_timeout``: the view slows down during a blocking cell instead of freezing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ..model.screen import encode_png, screen_digest
from ..runtime.abandon import abandon
from ..runtime.loop import runtime_loop

#: Screen polls per second; the frame rate cannot exceed it.
DEFAULT_FPS = 30.0
MAX_IN_FLIGHT = 2
#: An unacked frame counts as delivered after this. Acks cannot arrive while a cell blocks
#: (they travel on the busy shell channel), so this paces the view then: about 13 frames/s.
#: The browser itself skips stale frames, so a slow one is not flooded.
ACK_TIMEOUT = 0.15

Grab = Callable[[], Awaitable[Image.Image]]
Send = Callable[[dict[str, Any], bytes], None]


@dataclass
class PumpStats:
    polls: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    unchanged: int = 0
    dropped_stale: int = 0
    ack_timeouts: int = 0
    errors: list[str] = field(default_factory=list)


class FramePump:
    """Polls ``grab`` on the runtime loop and calls ``send(meta, png)`` for changed screens."""

    def __init__(self, grab: Grab, send: Send, *, fps: float = DEFAULT_FPS, max_in_flight: int = MAX_IN_FLIGHT,
                 ack_timeout: float = ACK_TIMEOUT, alive: Callable[[], bool] = lambda: True,
                 on_tick: Callable[[], None] | None = None) -> None:
        if fps <= 0 or max_in_flight < 1 or ack_timeout <= 0:
            raise ValueError("fps and ack_timeout must be positive and max_in_flight at least 1")
        self._grab = grab
        self._send = send
        self.interval = 1.0 / fps
        self.max_in_flight = max_in_flight
        self.ack_timeout = ack_timeout
        self._alive = alive
        self._on_tick = on_tick
        self.stats = PumpStats()
        #: False while every view shows the screen another way (VNC): ticks go on, polls stop.
        self.frames_wanted = True
        self._in_flight: dict[int, float] = {}  # seq -> monotonic send time
        self._seq = 0
        self._last_hash: bytes | None = None
        self._pending: Image.Image | None = None
        self._wake = asyncio.Event()
        self._encoder: asyncio.Future[None] | None = None
        self._task: asyncio.Future[None] | None = None
        self._loop = runtime_loop()

    # -- control, callable from any thread ----------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.run_coroutine_threadsafe(self._run(), self._loop)  # type: ignore[assignment]

    def stop(self) -> None:
        if self._task is not None:
            abandon(self._task)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def ack(self, seq: int) -> None:
        """The browser drew frame ``seq`` (called from the kernel's thread)."""
        self._loop.call_soon_threadsafe(self._on_ack, seq)

    def resend(self) -> None:
        """A new browser view appeared: it needs the current frame even if nothing changed."""
        self._loop.call_soon_threadsafe(self._on_resend)

    # -- on the runtime loop ------------------------------------------------

    def _on_ack(self, seq: int) -> None:
        if self._in_flight.pop(seq, None) is not None:
            self._wake.set()

    def _on_resend(self) -> None:
        self._in_flight.clear()
        self._last_hash = None
        self._wake.set()

    def _expire(self) -> None:
        now = time.monotonic()
        for seq, sent in list(self._in_flight.items()):
            if now - sent > self.ack_timeout:
                del self._in_flight[seq]
                self.stats.ack_timeouts += 1

    async def _run(self) -> None:
        try:
            await self._pump()
        except Exception as e:  # a dead pump must say why, not vanish silently
            self.stats.errors.append(f"pump stopped: {type(e).__name__}: {e}")
            raise

    def _can_send(self) -> bool:
        return self._encoder is None and len(self._in_flight) < self.max_in_flight

    def _start_encoder(self) -> None:
        """Encode and send the held frame in the background, so the next poll overlaps the encoding."""
        if self._pending is not None and self._can_send():
            self._encoder = asyncio.ensure_future(self._emit(self._pending))
            self._pending = None

    async def _pump(self) -> None:
        next_poll = time.monotonic()
        try:
            while self._alive():
                if self._on_tick is not None:
                    self._on_tick()
                self._expire()
                self._start_encoder()
                delay = next_poll - time.monotonic()
                if delay > 0:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), delay)
                        continue  # an ack freed a slot or an encoding finished: send the held frame now
                    except TimeoutError:
                        pass
                next_poll = max(next_poll + self.interval, time.monotonic())
                if self.frames_wanted:
                    await self._poll()
        finally:
            if self._encoder is not None:
                abandon(self._encoder)

    async def _poll(self) -> None:
        try:
            img = await self._grab()
        except Exception as e:  # VM halted mid-dump, torn down...: keep the last frame
            if len(self.stats.errors) < 20:
                self.stats.errors.append(f"{type(e).__name__}: {e}")
            return
        self.stats.polls += 1
        digest = await asyncio.to_thread(screen_digest, img)
        if digest == self._last_hash:
            self.stats.unchanged += 1
            return
        self._last_hash = digest
        if self._pending is not None:
            self.stats.dropped_stale += 1
        self._pending = img
        self._start_encoder()

    async def _emit(self, img: Image.Image) -> None:
        try:
            data = await asyncio.to_thread(encode_png, img)
            self._seq += 1
            meta = {"type": "frame", "seq": self._seq, "width": img.width, "height": img.height,
                    "mime": "image/png"}
            self._in_flight[self._seq] = time.monotonic()
            self.stats.frames_sent += 1
            self.stats.bytes_sent += len(data)
            self._send(meta, data)
        except Exception as e:  # e.g. the comm closed under us: report, keep pumping
            if len(self.stats.errors) < 20:
                self.stats.errors.append(f"send failed: {type(e).__name__}: {e}")
        finally:
            self._encoder = None
            self._wake.set()
