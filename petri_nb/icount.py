"""Instruction counts on the timeline rows of a recorded run, so any row can be seeked to."""

from __future__ import annotations

import asyncio
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

    def stamp(self, data: dict[str, Any] | None) -> dict[str, Any]:
        """A copy of ``data`` that gets ``icount`` once QEMU answers (before any frame is built, mostly)."""
        holder = dict(data or {})
        self._waiting.append(holder)
        if self._asking is None or self._asking.done():
            self._asking = asyncio.ensure_future(self._ask())
        return holder

    async def _ask(self) -> None:
        while self._waiting:
            rows, self._waiting = self._waiting, []
            try:
                count = await self._icount()
            except Exception:  # the recording QEMU is gone: these rows keep no count
                self._waiting.clear()
                return
            for row in rows:
                row["icount"] = count
