"""The screen as text, and waiting for the screen: exact in text modes, OCR in graphics modes.

In a VGA text mode the characters are in guest memory (0xB8000: a character byte and an
attribute byte per cell), so reading them is exact and cheap: one screendump to learn the
mode from the screen's size and one physical-memory read. A graphics mode has no text to
read, so its pixels go through OCR (petri_nb.vm.ocr: Debian's ``tesseract-ocr`` after
preprocessing); the result says which way it was read (``ScreenText.source``), because OCR
can misread, and keeps word boxes either way (``.find(regex)``).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from PIL import Image

from ..errors import BadArgument, PetriTimeout
from ..model.screen import screen_digest
from ..runtime.loop import runs_on_runtime_loop
from .core import VmCore
from .ocr import Word, cell_words, find_boxes, read
from .screen_match import NeedleWatch, as_needle

VGA_TEXT = 0xB8000
#: Screen sizes (pixels) of the standard VGA text modes -> (columns, rows).
TEXT_MODES = {(720, 400): (80, 25), (640, 400): (80, 25), (720, 350): (80, 25), (640, 350): (80, 25),
              (360, 400): (40, 25), (320, 400): (40, 25), (720, 200): (80, 25)}
#: Seconds between looks while waiting for the screen (QEMU has no "screen changed" event).
LOOK_EVERY = 0.25
WAIT_TIMEOUT = 60.0


class ScreenText(str):
    """The screen's text, one line per row (trailing blanks dropped); ``source`` says how it was
    read: ``"vga-text"`` (exact) or ``"ocr"``; ``words`` are the words with their screen boxes."""

    source: str = "vga-text"
    columns: int = 80
    rows: int = 25
    words: tuple[Word, ...] = ()

    def __new__(cls, text: str, source: str = "vga-text", columns: int = 80, rows: int = 25,
                words: tuple[Word, ...] = ()) -> ScreenText:
        obj = super().__new__(cls, text)
        obj.source, obj.columns, obj.rows, obj.words = source, columns, rows, words
        return obj

    def find(self, pattern: str) -> list[tuple[int, int, int, int]]:
        """Screen boxes (x, y, w, h) of each match of the regex ``pattern`` (within one line)."""
        return find_boxes(self, pattern)


def decode_text_buffer(data: bytes, columns: int, rows: int) -> str:
    """Characters of a VGA text buffer (code page 437), attributes dropped."""
    chars = data[0:columns * rows * 2:2].decode("cp437")
    return "\n".join(chars[r * columns:(r + 1) * columns].rstrip() for r in range(rows))


def ocr(image: Image.Image) -> ScreenText:
    """Text read from a graphics-mode screen by petri_nb.vm.ocr (preprocessed per line, cached by digest)."""
    reading = read(image)
    return ScreenText(reading.text, "ocr", 0, reading.text.count("\n") + 1, reading.words)


class ScreenTextMixin(VmCore):
    """``screen_text()`` and ``wait_for_screen()`` for AsyncVm."""

    @runs_on_runtime_loop
    async def screen_text(self) -> ScreenText:
        """The text on the screen: from the VGA text buffer in text modes, else by OCR (see ``.source``)."""
        image = await self._call("screenshot", self.runtime.screenshot())
        return await self._read_text(image)

    async def _read_text(self, image: Image.Image) -> ScreenText:
        mode = TEXT_MODES.get(image.size)
        if mode is None:
            return await asyncio.to_thread(ocr, image)
        columns, rows = mode
        data = await self.runtime.read_memory(VGA_TEXT, columns * rows * 2, True)
        text = decode_text_buffer(data, columns, rows)
        return ScreenText(text, "vga-text", columns, rows, cell_words(text, image.size, columns, rows))

    @runs_on_runtime_loop
    async def wait_for_screen(self, text: str | None = None, changed: bool | Image.Image = False,
                              still_for: float | None = None, timeout: float | None = WAIT_TIMEOUT,
                              like: Any = None) -> Image.Image:
        """Wait until the screen shows ``text`` (a regex, searched in ``screen_text()``), has ``changed``
        (True: from how it looks when the call starts; an image: from that earlier ``screenshot()``, so
        a change caused before the call still counts), has stayed the same for ``still_for`` seconds,
        and matches the needle ``like`` (a Needle or its path; petri_nb.vm.needles): all that are given.
        Returns that screen; raises VmHalted if the VM halts first and PetriTimeout after ``timeout``
        (naming a needle's best candidate)."""
        if text is None and changed is False and still_for is None and like is None:
            raise BadArgument("wait_for_screen() needs text=, changed=True, still_for= or like= "
                              "(else it waits for nothing)")
        watch = None if like is None else NeedleWatch(as_needle(like), self._context.record)
        try:
            regex = None if text is None else re.compile(text)
        except re.error as e:
            raise BadArgument(f"wait_for_screen(text={text!r}) is not a regular expression: {e}") from None
        wanted = ", ".join(w for w in (f"text {text!r}" if text is not None else "",
                                       "a change" if changed is not False else "",
                                       f"{still_for:g} s unchanged" if still_for is not None else "",
                                       f"needle {watch.needle.name!r}" if watch else "") if w)
        before = screen_digest(changed) if isinstance(changed, Image.Image) else None
        try:
            return await self._call("wait_for_screen", self._look_until(regex, changed is not False, before,
                                                                        still_for, watch),
                                    halts=True, timeout=timeout, what=f"the screen to show {wanted}")
        except PetriTimeout as e:
            if watch is None:
                raise
            raise PetriTimeout(f"{e}; {await watch.failed()}") from None

    async def _look_until(self, regex: re.Pattern[str] | None, changed: bool, first: bytes | None,
                          still_for: float | None, watch: NeedleWatch | None = None) -> Image.Image:
        last = None
        since = 0.0
        shows_text = shows_like = False
        while True:
            image = await self.runtime.screenshot()
            digest, now = screen_digest(image), time.monotonic()
            if digest != last:
                last, since = digest, now
                shows_text = regex is not None and bool(regex.search(await self._read_text(image)))
                shows_like = watch is not None and await watch.check(image)
            first = first or digest
            if ((regex is None or shows_text) and (watch is None or shows_like) and (not changed or digest != first)
                    and (still_for is None or now - since >= still_for)):
                return image
            await asyncio.sleep(LOOK_EVERY)  # polling: QEMU has no event for a changed screen
