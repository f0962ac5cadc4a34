"""``vm.screen_matches(needle)`` and the needle half of ``wait_for_screen(like=...)``, with evidence.

Every check is a timeline row (source ``screen``, kind ``needle``: the score, the region
and the threshold) next to a screenshot row of the screen it was made on, so a failed
check can be looked at later in ``runs_report``, as openQA keeps its candidates. While a
wait polls, the needle is matched only when the screen changed, and the screenshot row is
kept for the first screen and for the best candidate, not for every frame.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from PIL import Image

from ..errors import BadArgument
from ..model.screen import screen_row
from ..runtime.loop import runs_on_runtime_loop
from .context import Record
from .core import VmCore
from .needles import Needle, ScreenMatch


def as_needle(like: Any) -> Needle:
    """A Needle, or the path of one (loaded now, so a missing file fails before any wait)."""
    if isinstance(like, Needle):
        return like
    if isinstance(like, (str, os.PathLike)):
        return Needle.load(like)
    raise BadArgument(f"like= takes a Needle or the path of one, not {type(like).__name__}")


class NeedleWatch:
    """One wait's needle state: the last score, the best candidate and the rows they leave."""

    def __init__(self, needle: Needle, record: Record) -> None:
        self.needle = needle
        self.record = record
        self.last: ScreenMatch | None = None
        self.best: ScreenMatch | None = None
        self.best_image: Image.Image | None = None
        self.looks = 0

    async def check(self, image: Image.Image) -> bool:
        """Match a changed screen; a row per look, a screenshot row for the first."""
        result = await asyncio.to_thread(self.needle.match, image)
        self.looks += 1
        self.last = result
        if self.best is None or result.score > self.best.score:
            self.best, self.best_image = result, image
        if self.looks == 1 or result.matched:
            detail, data = await asyncio.to_thread(screen_row, image)
            self.record("screen", "screenshot", detail, data)
        self.record("screen", "needle", result.describe(), result.evidence())
        return result.matched

    async def failed(self) -> str:
        """What a timed-out wait says about its best candidate (also a row, with that screen)."""
        best = self.best
        if best is None:
            return f"needle {self.needle.name!r} was never checked"
        if self.best_image is not None and self.looks > 1:
            detail, data = await asyncio.to_thread(screen_row, self.best_image)
            self.record("screen", "screenshot", detail, data)
        text = f"best candidate: score {best.score:.3f} at {','.join(map(str, best.region[:2]))} " \
               f"{best.region[2]}x{best.region[3]}, threshold {best.threshold:g}"
        self.record("screen", "needle failed", f"needle {self.needle.name!r}: {text}", best.evidence())
        return text


class ScreenMatchMixin(VmCore):
    """``screen_matches()`` for AsyncVm."""

    @runs_on_runtime_loop
    async def screen_matches(self, needle: Any) -> ScreenMatch:
        """How the screen compares with ``needle`` (a Needle or its path) now: truthy when it matches,
        with the score and where; the check and the screen are timeline rows."""
        wanted = as_needle(needle)
        image = await self._call("screenshot", self.runtime.screenshot())
        watch = NeedleWatch(wanted, self._context.record)
        await watch.check(image)
        assert watch.last is not None
        return watch.last
