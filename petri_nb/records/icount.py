"""Instruction counts on the timeline rows of a recorded run, so any row can be seeked to."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any


class IcountStamps:
    """Gives each timeline row of a recorded run the instruction count it happened at, so any row can
    be seeked to. The count is asked once per burst of rows (one QMP round trip), so it is the count a
    moment after the row, microseconds of guest time later under TCG."""

    def __init__(self, icount: Callable[[], Awaitable[int]]) -> None:
        self._icount = icount
        self._waiting: list[dict[str, Any]] = []
        self._asking: asyncio.Task[None] | None = None
        self._recorded = 0  # rows handed out so far
        self._answered = 0  # rows whose count is known (or will never be)
        self._progress = asyncio.Event()
        #: Set while every row has its count (a frame built now shows them all).
        self.settled = threading.Event()
        self.settled.set()

    def stamp(self, data: dict[str, Any] | None) -> dict[str, Any]:
        """A copy of ``data`` that gets ``icount`` once QEMU answers (before any frame is built, mostly)."""
        holder = dict(data or {})
        self._waiting.append(holder)
        self._recorded += 1
        self.settled.clear()
        if self._asking is None or self._asking.done():
            self._asking = asyncio.ensure_future(self._ask())
        return holder

    async def flush(self, timeout: float = 2.0) -> None:
        """Wait (at most ``timeout``) until the rows recorded so far have their counts: before the next
        call lets the host act on the guest, so a row's count never includes what the host did after it."""
        target = self._recorded

        async def answered() -> None:
            while self._answered < target:
                self._progress.clear()
                await self._progress.wait()

        if self._answered < target:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(answered(), timeout)

    async def _ask(self) -> None:
        try:
            while self._waiting:
                rows, self._waiting = self._waiting, []
                count: int | None = None
                with contextlib.suppress(Exception):  # the recording QEMU is gone: no count for these
                    count = await self._icount()
                for row in rows:
                    if count is not None:
                        row["icount"] = count
                self._answered += len(rows)
                self._progress.set()
        finally:
            if not self._waiting:
                self.settled.set()
