"""The screen as text: read from the VGA text buffer when the guest is in a text mode.

In a VGA text mode the characters are in guest memory (0xB8000: a character byte and an
attribute byte per cell), so reading them is exact and cheap: one screendump to learn the
mode from the screen's size and one physical-memory read. Graphics modes have no text to
read; OCR is not implemented, and saying so beats guessing.
"""

from __future__ import annotations

from .errors import NotSupported
from .loop import runs_on_runtime_loop
from .vm_core import VmCore

VGA_TEXT = 0xB8000
#: Screen sizes (pixels) of the standard VGA text modes -> (columns, rows).
TEXT_MODES = {(720, 400): (80, 25), (640, 400): (80, 25), (720, 350): (80, 25), (640, 350): (80, 25),
              (360, 400): (40, 25), (320, 400): (40, 25), (720, 200): (80, 25)}


class ScreenText(str):
    """The screen's text, one line per row (trailing blanks dropped); ``source`` says how it was read."""

    source: str = "vga-text"
    columns: int = 80
    rows: int = 25

    def __new__(cls, text: str, source: str = "vga-text", columns: int = 80, rows: int = 25) -> ScreenText:
        obj = super().__new__(cls, text)
        obj.source, obj.columns, obj.rows = source, columns, rows
        return obj


def decode_text_buffer(data: bytes, columns: int, rows: int) -> str:
    """Characters of a VGA text buffer (code page 437), attributes dropped."""
    chars = data[0:columns * rows * 2:2].decode("cp437")
    return "\n".join(chars[r * columns:(r + 1) * columns].rstrip() for r in range(rows))


class ScreenTextMixin(VmCore):
    """``screen_text()`` for AsyncVm."""

    @runs_on_runtime_loop
    async def screen_text(self) -> ScreenText:
        """The text on the screen, read from the VGA text buffer (text modes only; NotSupported in graphics modes)."""
        image = await self._call("screenshot", self.runtime.screenshot())
        mode = TEXT_MODES.get(image.size)
        if mode is None:
            raise NotSupported(f"screen_text(): the screen is {image.size[0]}x{image.size[1]}, a graphics mode; the "
                               "VGA text buffer is only read in text modes, and OCR is not implemented")
        columns, rows = mode
        data = await self._call("read_memory", self.runtime.read_memory(VGA_TEXT, columns * rows * 2, True))
        return ScreenText(decode_text_buffer(data, columns, rows), "vga-text", columns, rows)
