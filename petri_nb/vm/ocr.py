"""OCR of a graphics-mode screen as a person reads it: ink found against its own background,
line by line, then read by tesseract with word boxes; cached by the screen's digest.

Text UIs (bootloaders, installers, dialog boxes) draw light text on dark, dark text on
light and text on coloured highlight bars, all on one screen. tesseract's own binarisation
picks one polarity per region and loses the rest (measured on GRUB's menus: 17% of lines
read before this module). So each pixel is compared with the background around it on its
row (a running median), which makes ink of any colour on any background black on white;
box-drawing rules are removed; the text line height is measured and small fonts are
upscaled to what tesseract reads best; then one tesseract call returns words with boxes,
mapped back to screen pixels. Measured on eight GRUB screens (bench/ocr_accuracy.py):
9-17% of lines read exactly before, 83% after; the highlighted entry on 4 of 6 menus
(none before).
"""

from __future__ import annotations

import collections
import re
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import BadArgument, NotSupported
from ..model.screen import screen_digest

#: Colour distance (max over R, G, B) from the local background that counts as ink.
INK = 48
#: Fewest pixels of one colour, connected, that make a background area (and 1/500 of the screen).
BACKGROUND_AREA = 600
#: The text line height (pixels) small fonts are upscaled to: measured best of 32-80 on GRUB's font.
TARGET_LINE = 64
#: Blur after upscaling, as a fraction of the scale (measured best of 0-0.75).
BLUR = 0.625
#: Screens remembered by digest, so a poll of an unchanged screen costs no OCR.
CACHE_SIZE = 32


@dataclass(frozen=True)
class Word:
    """One word read from the screen, its box in screen pixels and tesseract's confidence (0-100)."""

    text: str
    x: int
    y: int
    w: int
    h: int
    conf: float
    line: int  # index of its line in the text


@dataclass(frozen=True)
class Reading:
    text: str
    words: tuple[Word, ...]


def ink_mask(image: Image.Image) -> np.ndarray:
    """True where a pixel differs from the background around it, whatever the colours.

    Backgrounds are the large areas of one colour (the screen, a dialog, a highlight bar, a box's
    rules); glyphs are small ones. So the screen is cut into connected areas of equal colour, the
    large ones are background, and every pixel is compared with the nearest background pixel:
    light-on-dark, dark-on-light and text on a bar all become ink, and a letter's hole is not."""
    from scipy.ndimage import distance_transform_edt
    from skimage.measure import label

    rgb = np.asarray(image.convert("RGB"))
    q = (rgb >> 3).astype(np.int32)  # 5 bits a channel: a font's shading stays apart from its background
    areas = label((q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2], background=-1, connectivity=1)
    sizes = np.bincount(areas.ravel())
    big = sizes[areas] >= max(BACKGROUND_AREA, rgb.shape[0] * rgb.shape[1] // 500)
    if not big.any():  # no large area at all (a photo): compare with the screen's median colour
        return np.abs(rgb.astype(np.int16) - np.median(rgb, axis=(0, 1))).max(axis=-1) > INK
    iy, ix = distance_transform_edt(~big, return_distances=False, return_indices=True)
    return np.abs(rgb.astype(np.int16) - rgb[iy, ix]).max(axis=-1) > INK


def drop_rules(mask: np.ndarray, line: int) -> np.ndarray:
    """The mask without box-drawing rules: ink runs far longer than a glyph, across or down."""
    from scipy.ndimage import binary_opening

    across = binary_opening(mask, structure=np.ones((1, max(8 * line, 24)), bool))
    down = binary_opening(mask, structure=np.ones((max(2 * line, 24), 1), bool))
    return mask & ~across & ~down


def line_height(mask: np.ndarray) -> int:
    """Median height of the bands of rows that hold ink (the text lines), at least 8."""
    rows = mask.sum(axis=1) > 0
    heights, run = [], 0
    for inked in rows:
        if inked:
            run += 1
        elif run:
            heights.append(run)
            run = 0
    heights = [h for h in heights if h >= 4]
    return max(8, int(np.median(heights))) if heights else 16


def prepare(image: Image.Image) -> tuple[Image.Image, float]:
    """Black ink on white, rules removed, upscaled; and the scale it was upscaled by.

    Upscaling is by a whole factor (each pixel a square, as a bitmap font is drawn) and then
    blurred by a fraction of it, which rounds the squares into strokes tesseract knows:
    measured on GRUB's screens, 78% of lines exact against 32% for a plain bicubic resize."""
    from PIL import ImageFilter

    mask = ink_mask(image)
    mask = drop_rules(mask, line_height(mask))
    scale = max(1, min(6, round(TARGET_LINE / line_height(mask))))
    page = Image.fromarray(np.where(mask, 0, 255).astype(np.uint8))
    if scale > 1:
        page = page.resize((page.width * scale, page.height * scale), Image.Resampling.NEAREST)
        page = page.filter(ImageFilter.GaussianBlur(BLUR * scale))
    return page, float(scale)


def tesseract_words(page: Image.Image, scale: float) -> Reading:
    """One tesseract call: its words (boxes back in screen pixels), grouped into lines top to bottom."""
    try:
        import pytesseract
    except ImportError:
        raise NotSupported("screen_text() in a graphics mode needs pytesseract (pip install pytesseract)") from None
    try:
        data = pytesseract.image_to_data(page, config="--psm 4", output_type=pytesseract.Output.DICT)
    except pytesseract.TesseractNotFoundError:
        raise NotSupported("screen_text() in a graphics mode needs Debian's tesseract-ocr "
                           "(apt-get install tesseract-ocr)") from None
    lines: dict[tuple[int, int, int], list[Word]] = {}
    for i, text in enumerate(data["text"]):
        if not text.strip():
            continue
        key = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
        box = [round(data[k][i] / scale) for k in ("left", "top", "width", "height")]
        lines.setdefault(key, []).append(Word(text, *box, conf=float(data["conf"][i]), line=0))
    ordered = sorted(lines.values(), key=lambda ws: (min(w.y for w in ws), min(w.x for w in ws)))
    words = tuple(Word(w.text, w.x, w.y, w.w, w.h, w.conf, n) for n, ws in enumerate(ordered)
                  for w in sorted(ws, key=lambda w: w.x))
    text = "\n".join(" ".join(w.text for w in words if w.line == n) for n in range(len(ordered)))
    return Reading(text, words)


_cache: collections.OrderedDict[bytes, Reading] = collections.OrderedDict()
_cache_lock = threading.Lock()


def read(image: Image.Image) -> Reading:
    """The screen's text and word boxes; the same pixels are read once (by digest)."""
    digest = screen_digest(image)
    with _cache_lock:
        if digest in _cache:
            _cache.move_to_end(digest)
            return _cache[digest]
    reading = tesseract_words(*prepare(image))
    with _cache_lock:
        _cache[digest] = reading
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return reading


def cell_words(text: str, size: tuple[int, int], columns: int, rows: int) -> tuple[Word, ...]:
    """Words of a VGA text screen with their boxes: each character is one cell of the grid."""
    cw, ch = size[0] / columns, size[1] / rows
    return tuple(Word(m.group(), round(m.start() * cw), round(n * ch), round(len(m.group()) * cw), round(ch), 100.0, n)
                 for n, line in enumerate(text.split("\n")) for m in re.finditer(r"\S+", line))


def find_boxes(text: str, pattern: str) -> list[tuple[int, int, int, int]]:
    """Boxes (x, y, w, h) around the words each match of ``pattern`` covers, one per match, by line."""
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise BadArgument(f"find({pattern!r}) is not a regular expression: {e}") from None
    words = getattr(text, "words", ())
    boxes = []
    for n, line in enumerate(text.split("\n")):
        spans, pos = [], 0
        for w in (w for w in words if w.line == n):  # where each word sits in the line's text
            start = line.find(w.text, pos)
            if start < 0:
                continue
            spans.append((start, start + len(w.text), w))
            pos = start + len(w.text)
        for m in regex.finditer(line):
            hit = [w for a, b, w in spans if a < max(m.end(), m.start() + 1) and b > m.start()]
            if hit:
                x0, y0 = min(w.x for w in hit), min(w.y for w in hit)
                boxes.append((x0, y0, max(w.x + w.w for w in hit) - x0, max(w.y + w.h for w in hit) - y0))
    return boxes
