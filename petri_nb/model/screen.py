"""A screen as values: its digest (to tell screens apart cheaply), its PNG bytes, its timeline row."""

from __future__ import annotations

import base64
import hashlib
import io
from typing import Any

from PIL import Image


def encode_png(img: Image.Image) -> bytes:
    """PNG at zlib level 1: 2 ms / 5 KB for tmk's text screen, 5 ms at 1024x768 (see design notes)."""
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def screen_digest(img: Image.Image) -> bytes:
    """A short hash of a screen's pixels and size: equal only for the same picture."""
    return hashlib.blake2b(img.tobytes(), digest_size=16, person=f"{img.width}x{img.height}".encode()[:16]).digest()


def screen_row(image: Image.Image) -> tuple[str, dict[str, Any]]:
    """The detail and data of one screen row: the size, and the image as base64 PNG."""
    png = encode_png(image)
    w, h = image.size
    return f"{w}x{h}, {len(png)} bytes", {"png": base64.b64encode(png).decode(), "width": w, "height": h}
