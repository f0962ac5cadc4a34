"""The event table of one run in a runs report: one ``<tr>`` per timeline row, guest text escaped.

Screen rows carry a small thumbnail that opens to the full screenshot; halt rows carry
their diagnosis collapsed under them. Console lines beyond a budget are left out, the
ones near halts (and the run's end) kept, because those explain the halt; each gap says
how many lines it hides. Every row gets a stable ``id`` so a link can point at it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
from html import escape
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from ..model.diagnosis import Diagnosis

#: Width (px) a screenshot thumbnail is shrunk to.
THUMB_WIDTH = 160
#: Lines after a halt count this much less than lines before it when console lines are cut.
AFTER_WEIGHT = 2


def console_mask(frame: pd.DataFrame, budget: int | None) -> np.ndarray:
    """Which rows of one run (in time order) to show: all but the console lines over ``budget``.

    The ``budget`` lines closest to a halt stay: a line's distance is the number of lines
    between it and the next halt (or the run's end), or AFTER_WEIGHT times the number since
    the previous halt (or the start), whichever is less: what led up to a halt matters most."""
    is_line = ((frame["source"].astype(str) == "console") & (frame["kind"] == "line")).to_numpy(dtype=bool)
    keep = np.ones(len(frame), dtype=bool)
    n = int(is_line.sum())
    if budget is None or n <= budget:
        return keep
    position = np.cumsum(is_line) - 1  # a console line's number among the run's lines
    halt_rows = (frame["source"].astype(str) == "halt").to_numpy(dtype=bool)
    anchors = np.unique(np.concatenate([[0, n], np.cumsum(is_line)[halt_rows]]))  # lines before each halt
    p = np.arange(n)
    after = anchors[np.searchsorted(anchors, p, side="right")]  # the first anchor past each line
    before = anchors[np.searchsorted(anchors, p, side="right") - 1]
    distance = np.minimum(after - 1 - p, AFTER_WEIGHT * (p - before) + 1)
    chosen = np.zeros(n, dtype=bool)
    chosen[np.argsort(distance, kind="stable")[:budget]] = True
    keep[is_line] = chosen[position[is_line]]
    return keep


def _image_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def row_png(data: str | None) -> bytes | None:
    """The PNG of a screen row (its ``data``: {"png": base64, ...}), or None."""
    try:
        return base64.b64decode(json.loads(data)["png"], validate=True) if data else None
    except (ValueError, KeyError, TypeError):
        return None


class ScreenCache:
    """Screenshots as thumbnails that open to the full image, each made once (runs repeat screens)."""

    def __init__(self, width: int = THUMB_WIDTH) -> None:
        self.width = width
        self._done: dict[bytes, str] = {}

    def html(self, png: bytes | None) -> str:
        """"" if there is no image; a note if it does not decode (never the bytes of a broken file)."""
        if png is None:
            return ""
        key = hashlib.blake2b(png, digest_size=16).digest()
        if key not in self._done:
            self._done[key] = self._render(png)
        return self._done[key]

    def _render(self, png: bytes) -> str:
        try:
            image = Image.open(io.BytesIO(png))
            if image.format != "PNG":
                raise ValueError(f"a {image.format} image, not PNG")
            image = image.convert("RGB")
            thumb = image.copy()
            thumb.thumbnail((self.width, self.width * 3))
            small = _png(thumb.quantize(64))
            colours = image.getcolors(256)
            full = _png(_exact_palette(image, [c for _, c in colours])) if colours else png
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            return f'<span class="bad">unreadable screenshot: {escape(str(e))}</span>'
        w, h = image.size
        return (f'<details class="shot"><summary><img class="thumb" alt="screen {w}x{h}" '
                f'src="{_image_uri(small)}"></summary>'
                f'<img class="full" alt="screen {w}x{h}" src="{_image_uri(min(full, png, key=len))}"></details>')


def _exact_palette(image: Image.Image, colours: list[tuple[int, int, int]]) -> Image.Image:
    """``image`` (RGB, exactly these ``colours``) as a palette image, pixel for pixel (quantize() is slower and
    its nearest-colour mapping is not always exact)."""
    rgb = np.asarray(image, dtype=np.uint32)
    keys = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    palette = np.array(sorted(colours), dtype=np.uint32)
    out = Image.fromarray(np.searchsorted((palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2], keys)
                          .astype(np.uint8), "P")
    out.putpalette(palette.astype(np.uint8).tobytes())
    return out


def _png(image: Image.Image) -> bytes:
    """A palette PNG: a text screen has a few colours, so this is a third of the watchdog's fast RGB PNG."""
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=6)
    return out.getvalue()


def diagnosis_html(data: str | None, screens: ScreenCache) -> str:
    """A halt row's diagnosis, collapsed: its summary line opens registers, screen, oops, console tail."""
    try:
        found = json.loads(data).get("diagnosis") if data else None
        if not found:
            return ""
        diagnosis = Diagnosis.from_dict(found)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        return f'<span class="bad">unreadable diagnosis: {escape(type(e).__name__)}</span>'
    # The screen as a thumbnail like the screen rows'; the rest as the notebook shows it.
    rest = dataclasses.replace(diagnosis, screen_png=None)._repr_html_()
    return (f'<details class="diag"><summary>diagnosis: {escape(diagnosis.summary())}</summary>'
            f'<div class="diag-body">{screens.html(diagnosis.screen_png)}{rest}</div></details>')


def row_html(row_id: str, t: float, source: str, kind: str, reason: str, detail: str, extra: str = "") -> str:
    """One event row; ``extra`` is markup we made (thumbnail, diagnosis), everything else is escaped."""
    rid, src, knd = escape(row_id), escape(source), escape(kind)
    cls = ' class="halt"' if source == "halt" else ""
    return (f'<tr id="{rid}" data-s="{src}" data-k="{knd}"{cls}><td><a href="#{rid}">#</a></td>'
            f"<td>{t:.3f}</td><td>{src}</td><td>{knd}</td><td>{escape(reason)}</td>"
            f"<td>{escape(detail)}{extra}</td></tr>")


def gap_html(row_id: str, hidden: int) -> str:
    """Where console lines were left out, and how many."""
    return (f'<tr id="{escape(row_id)}" data-s="console" data-k="gap" class="gap"><td></td><td></td>'
            f'<td colspan="4">… {hidden} console line{"" if hidden == 1 else "s"} not shown</td></tr>')


def rows_html(frame: pd.DataFrame, slug: str, budget: int | None, screens: ScreenCache) -> tuple[list[str], int]:
    """The rows of one run (time order) as ``<tr>`` strings, and how many console lines were left out."""
    keep = console_mask(frame, budget)
    out: list[str] = []
    skipped = total_skipped = 0
    columns = [frame[c].astype(object).where(frame[c].notna(), "").tolist()
               for c in ("source", "kind", "reason", "detail", "data")]
    for i, (t, source, kind, reason, detail, data) in enumerate(zip(frame["t"].tolist(), *columns, strict=True)):
        if not keep[i]:
            skipped += 1
            continue
        if skipped:
            out.append(gap_html(f"r-{slug}-gap{i}", skipped))
            total_skipped, skipped = total_skipped + skipped, 0
        out.append(row_html(f"r-{slug}-{i}", t, str(source), str(kind), str(reason), str(detail),
                            _extra(str(source), str(kind), data, screens)))
    if skipped:
        out.append(gap_html(f"r-{slug}-gap{len(frame)}", skipped))
        total_skipped += skipped
    return out, total_skipped


def _extra(source: str, kind: str, data: Any, screens: ScreenCache) -> str:
    if source == "screen" and kind == "screenshot":
        return screens.html(row_png(data or None))
    if source == "halt" and kind == "halt":
        return diagnosis_html(data or None, screens)
    return ""
