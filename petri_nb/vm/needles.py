"""Needles: reference pictures of parts of a screen, and how well a screen matches one.

A needle is a screenshot plus the areas of it that matter and a score threshold, kept as a
PNG and a JSON file of the same name (the pair openQA made common), so a team can share a
folder of them. Matching is exact where the pixels are exact (score 1.0, no search) and
otherwise tolerant, with scikit-image: each area is found by normalised cross-correlation
of grey levels within ``margin`` pixels of where it was cut (so a shift by a few pixels is
followed), then scored there by colour SSIM, which brightness and colour count in (so a
highlighted entry is not its plain twin) while a few drifted pixels barely do. A needle's
score is its worst area's.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import BadArgument, PetriError

#: Default lowest score that counts as a match (normalised correlation, 1.0 = identical).
THRESHOLD = 0.95
#: Default pixels around each area searched for it.
MARGIN = 16
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")

Region = tuple[int, int, int, int]


def check_region(region: Any, size: tuple[int, int]) -> Region:
    """``(x, y, w, h)`` as ints inside a screen of ``size``, else a one-line BadArgument."""
    try:
        x, y, w, h = (int(v) for v in region)
    except (TypeError, ValueError):
        raise BadArgument(f"a region is (x, y, w, h) in screen pixels, not {region!r}") from None
    sw, sh = size
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > sw or y + h > sh:
        raise BadArgument(f"region (x={x}, y={y}, w={w}, h={h}) is outside the {sw}x{sh} screen")
    return x, y, w, h


@dataclass(frozen=True)
class AreaMatch:
    """One area's best place on the screen: ``score`` (1.0 exact) at ``region``."""

    score: float
    region: Region
    exact: bool = False


@dataclass(frozen=True)
class ScreenMatch:
    """How a screen compares with a needle; truthy when every area scored at least the threshold."""

    needle: str
    matched: bool
    score: float
    region: Region
    threshold: float
    areas: tuple[AreaMatch, ...] = ()

    def __bool__(self) -> bool:
        return self.matched

    def describe(self) -> str:
        x, y, w, h = self.region
        verdict = "match" if self.matched else "no match"
        return f"needle {self.needle!r}: {verdict}, score {self.score:.3f} at {x},{y} {w}x{h} " \
               f"(threshold {self.threshold:g})"

    def evidence(self) -> dict[str, Any]:
        """The timeline row's data."""
        return {"needle": self.needle, "matched": self.matched, "score": round(self.score, 4),
                "region": list(self.region), "threshold": self.threshold,
                "areas": [{"score": round(a.score, 4), "region": list(a.region), "exact": a.exact}
                          for a in self.areas]}


@dataclass
class Needle:
    """A reference screen, its ``areas`` (x, y, w, h) and the ``threshold`` a match must reach."""

    name: str
    image: Image.Image = field(repr=False)
    areas: list[Region]
    threshold: float = THRESHOLD
    margin: int = MARGIN
    path: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise BadArgument(f"needle name {self.name!r}: letters, digits and _ . + - (it names the files)")
        if not (isinstance(self.threshold, (int, float)) and 0 < self.threshold <= 1):
            raise BadArgument(f"needle threshold {self.threshold!r}: a score in (0, 1]")
        if not isinstance(self.margin, int) or self.margin < 0:
            raise BadArgument(f"needle margin {self.margin!r}: whole pixels >= 0")
        if not self.areas:
            raise BadArgument(f"needle {self.name!r} has no areas")
        self.image = self.image.convert("RGB")
        self.areas = [check_region(a, self.image.size) for a in self.areas]

    @classmethod
    def from_image(cls, image: Image.Image, region: Any, name: str, threshold: float = THRESHOLD,
                   margin: int = MARGIN) -> Needle:
        """A needle of ``region`` (x, y, w, h) of a screenshot; more areas can be added to ``areas``."""
        return cls(name, image.copy(), [check_region(region, image.size)], threshold, margin)

    @classmethod
    def from_screen(cls, vm: Any, region: Any, name: str, threshold: float = THRESHOLD,
                    margin: int = MARGIN) -> Needle:
        """A needle cut from the live screen of a (blocking) ``Vm``; with an AsyncVm use
        ``from_image(await vm.screenshot(), ...)``."""
        return cls.from_image(vm.screenshot(), region, name, threshold, margin)

    def crop(self, index: int = 0) -> Image.Image:
        x, y, w, h = self.areas[index]
        return self.image.crop((x, y, x + w, y + h))

    def _repr_png_(self) -> bytes:
        out = io.BytesIO()
        self.crop().save(out, "PNG")
        return out.getvalue()

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``<folder>/<name>.png`` and ``<name>.json``; returns the JSON's path."""
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.image.save(folder / f"{self.name}.png", "PNG")
            meta = {"name": self.name, "threshold": self.threshold, "margin": self.margin,
                    "screen": list(self.image.size),
                    "areas": [{"x": x, "y": y, "w": w, "h": h} for x, y, w, h in self.areas]}
            path = folder / f"{self.name}.json"
            path.write_text(json.dumps(meta, indent=1) + "\n")
        except OSError as e:
            raise PetriError(f"cannot save needle {self.name!r} in {str(folder)!r}: {e.strerror or e}") from None
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Needle:
        """The needle of ``path`` (its .json, its .png, or the name without a suffix)."""
        base = Path(path)
        if not base.name:  # "", "." or "/": nothing to add .json to
            raise PetriError(f"a needle path names a file (its .json, its .png or the name without one), "
                             f"not {str(path)!r}")
        base = base.with_suffix("") if base.suffix in (".json", ".png") else base
        json_path, png_path = base.with_name(base.name + ".json"), base.with_name(base.name + ".png")
        for p in (json_path, png_path):
            if not _is(p, Path.is_file):
                raise PetriError(f"needle {base.name!r}: no file {str(p)!r} (a needle is a .png and a .json)")
        try:
            meta = json.loads(json_path.read_text())
            with Image.open(png_path) as img:
                image = img.convert("RGB")
            areas = [(a["x"], a["y"], a["w"], a["h"]) for a in meta["areas"]]
            needle = cls(meta.get("name", base.name), image, areas, float(meta.get("threshold", THRESHOLD)),
                         int(meta.get("margin", MARGIN)), json_path)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise PetriError(f"needle {str(json_path)!r} is not a needle: {type(e).__name__}: {e}") from None
        return needle

    @classmethod
    def load_all(cls, folder: str | os.PathLike[str]) -> dict[str, Needle]:
        """Every needle in ``folder``, by name."""
        folder = Path(folder)
        if not _is(folder, Path.is_dir):
            raise PetriError(f"no needle folder {str(folder)!r}")
        needles = [cls.load(p) for p in sorted(folder.glob("*.json"))]
        return {n.name: n for n in needles}

    def match(self, screen: Image.Image) -> ScreenMatch:
        """How ``screen`` compares with this needle (see the module doc)."""
        rgb = screen.convert("RGB")
        found = [self._match_area(rgb, i) for i in range(len(self.areas))]
        worst = min(found, key=lambda a: a.score)
        return ScreenMatch(self.name, all(a.score >= self.threshold for a in found), worst.score, worst.region,
                           self.threshold, tuple(found))

    def _match_area(self, screen: Image.Image, index: int) -> AreaMatch:
        x, y, w, h = self.areas[index]
        sw, sh = screen.size
        patch = np.asarray(self.crop(index), dtype=np.float32)
        if x + w <= sw and y + h <= sh:
            here = np.asarray(screen.crop((x, y, x + w, y + h)), dtype=np.float32)
            if np.array_equal(here, patch):
                return AreaMatch(1.0, (x, y, w, h), exact=True)
        left, top = max(0, x - self.margin), max(0, y - self.margin)
        right, bottom = min(sw, x + w + self.margin), min(sh, y + h + self.margin)
        if right - left < w or bottom - top < h:
            return AreaMatch(0.0, (x, y, w, h))  # the screen is too small to hold the area
        window = np.asarray(screen.crop((left, top, right, bottom)), dtype=np.float32)
        gx, gy = _locate(window.mean(axis=-1), patch.mean(axis=-1), x - left, y - top)
        found = window[gy:gy + h, gx:gx + w]
        return AreaMatch(_similarity(found, patch), (left + gx, top + gy, w, h))


def _locate(window: np.ndarray, patch: np.ndarray, x: int, y: int) -> tuple[int, int]:
    """Where the grey ``patch`` correlates best in ``window``; a flat patch has no pattern to find,
    so it stays where it was cut (``x``, ``y``)."""
    if patch.std() < 1.0:
        return x, y
    from skimage.feature import match_template

    scores = np.nan_to_num(match_template(window, patch), nan=-1.0)
    dy, dx = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return int(dx), int(dy)


def _similarity(found: np.ndarray, patch: np.ndarray) -> float:
    """SSIM in colour: structure, contrast and brightness all count, so a highlight bar's colour or
    another text lowers it while a few changed pixels barely do."""
    from skimage.metrics import structural_similarity

    side = min(found.shape[0], found.shape[1], 7)
    if side < 3:  # too thin for SSIM's window: mean absolute difference
        return 1.0 - float(np.abs(found - patch).mean()) / 255.0
    score = structural_similarity(found, patch, win_size=side - (side + 1) % 2, channel_axis=-1, data_range=255.0)
    return float(score) if math.isfinite(score) else 0.0


def _is(path: Path, test: Callable[[Path], bool]) -> bool:
    """``test(path)``, as a PetriError when the path itself is unusable (a name too long for the system)."""
    try:
        return test(path)
    except OSError as e:
        raise PetriError(f"needle path {str(path)[:200]!r} cannot be used: {e.strerror}") from None
