"""Watchdogs that leave evidence on the timeline while nobody is looking.

- The screen watchdog (as petri's) takes a screenshot every ``every`` seconds while the VM
  runs and keeps it as a timeline row (source ``screen``, kind ``screenshot``, the PNG in
  ``data``) only when the pixels changed: a still screen costs one screendump and a hash,
  no row and no PNG. The rows become thumbnails on ``plot.timeline`` and in run reports.
- The console stall detector adds one row (source ``console``, kind ``stall``) when a
  running guest printed nothing for ``after`` seconds; it re-arms on the next output.

Both run as tasks on the runtime loop and count only running time: a paused or halted
guest can neither draw nor print.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from PIL import Image

from ..model.run_state import RunState
from ..model.screen import screen_digest, screen_row
from ..runtime.loop import runs_on_runtime_loop
from .core import VmCore
from .preconditions import requires_usable

#: Default seconds between the screen watchdog's looks (petri's is 2 s too).
SCREEN_EVERY = 2.0
#: Default silence before the console stall detector speaks.
STALL_AFTER = 60.0
#: Give up on one screendump after this (QEMU busy); the next look tries again.
SHOT_TIMEOUT = 10.0

Record = Callable[..., Any]
Shoot = Callable[[], Awaitable[Image.Image]]
State = Callable[[], RunState]
ENDED = (RunState.GONE, RunState.TORN_DOWN)


async def watch_screen(shoot: Shoot, record: Record, state: State, every: float) -> None:
    """Put a changed screen on the timeline every ``every`` seconds of running; ends when the VM is gone."""
    last: bytes | None = None
    failures = 0
    while True:
        await asyncio.sleep(every)  # a period, not a synchronisation
        if state() in ENDED:
            return
        if state() is not RunState.RUNNING:
            continue
        try:
            image = await asyncio.wait_for(shoot(), SHOT_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # VM gone mid-shot, or a display that cannot be dumped
            failures += 1
            if failures == 3:
                record("screen", "watchdog stopped", f"screendump failed 3 times: {type(e).__name__}: {e}")
                return
            continue
        failures = 0
        digest = screen_digest(image)
        if digest != last:
            last = digest
            detail, data = await asyncio.to_thread(screen_row, image)
            record("screen", "screenshot", detail, data)


async def watch_console(last_output: Callable[[], float], record: Record, state: State, after: float) -> None:
    """One ``stall`` row per silence of ``after`` running seconds (``last_output``: monotonic time)."""
    quiet_since = time.monotonic()
    reported = False
    check = min(after / 4, 1.0)
    while True:
        await asyncio.sleep(check)  # a period, not a synchronisation
        now = time.monotonic()
        if state() in ENDED:
            return
        if state() is not RunState.RUNNING:
            quiet_since, reported = now, False  # the clock counts running time only
            continue
        if last_output() > quiet_since:
            quiet_since, reported = last_output(), False
        if not reported and now - quiet_since >= after:
            reported = True
            record("console", "stall", f"no console output for {after:g} s", {"silent_s": after})


class WatchdogsMixin(VmCore):
    """``watch_screen()`` and ``watch_console()`` for AsyncVm; ``launch`` starts both."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watchdogs: dict[str, asyncio.Task[None]] = {}

    async def _replace_watchdog(self, which: str, watch: Coroutine[Any, Any, None] | None) -> None:
        """Stop the ``which`` watchdog and start ``watch`` in its place (None: leave it off)."""
        old = self._watchdogs.pop(which, None)
        if old is not None:
            old.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await old
        if watch is not None:
            self._watchdogs[which] = self._in_background(watch)  # teardown stops it at once

    @runs_on_runtime_loop
    @requires_usable
    async def watch_screen(self, every: float | None = SCREEN_EVERY) -> None:
        """Keep a screenshot on the timeline (source ``screen``) every ``every`` running seconds in which
        the screen changed; ``None`` stops. Ends by itself with the VM."""
        await self._replace_watchdog("screen", None if every is None else watch_screen(
            self.runtime.screenshot, self._record, lambda: self.state, every))

    @runs_on_runtime_loop
    @requires_usable
    async def watch_console(self, stall_after: float | None = STALL_AFTER) -> None:
        """Put a ``stall`` row on the timeline when the running guest prints nothing for ``stall_after``
        seconds (once per silence); ``None`` stops."""
        await self._replace_watchdog("console", None if stall_after is None else watch_console(
            lambda: self.console.last_output, self._record, lambda: self.state, stall_after))
