"""Screen capture through QMP ``screendump`` into a PIL image."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from qemu.qmp import QMPClient


async def screendump(qmp: QMPClient, path: Path) -> Image.Image:
    """One full frame as RGB. PPM is the cheapest format QEMU writes (no compression)."""
    await qmp.execute("screendump", {"filename": str(path), "format": "ppm"})
    with Image.open(path) as img:
        return img.convert("RGB")
