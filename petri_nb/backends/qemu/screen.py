"""Screen capture through QMP ``screendump`` into a PIL image."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from PIL import Image

#: Sends one QMP command and returns its answer (the runtime's ``_execute``); every QEMU helper takes one.
Execute = Callable[..., Awaitable[Any]]


def _load(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        return img if img.mode == "RGB" else img.convert("RGB")


async def screendump(execute: Execute, path: Path) -> Image.Image:
    """One full frame as RGB. PPM is the cheapest format QEMU writes (no compression); it is
    decoded in a worker thread so a live view polling at 30 Hz does not load the runtime loop."""
    await execute("screendump", {"filename": str(path), "format": "ppm"})
    return await asyncio.to_thread(_load, path)
