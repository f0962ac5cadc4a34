"""A disk with nothing bootable: zeros, so firmware must report "no boot device", not hang."""

from __future__ import annotations

from pathlib import Path

from .common import MIB, build_atomically, cache_dir, cache_lock

EMPTY_MIB = 16


def empty_disk(cache: Path | None = None) -> Path:
    """A raw all-zero disk (sparse); no partition table, no boot sector."""
    cache = cache or cache_dir()
    with cache_lock(cache, "empty"):
        out = cache / "empty.img"
        if out.exists() and out.stat().st_size == EMPTY_MIB * MIB:
            return out

        def build(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                f.truncate(EMPTY_MIB * MIB)

        return build_atomically(out, build)
