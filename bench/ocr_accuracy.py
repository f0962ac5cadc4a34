"""Lines read exactly by OCR on real text-UI screens, before and after petri_nb.vm.ocr, and the cost
of one wait_for_screen poll (OCR and needle).

"Before" is the graphics path as it was (tesseract on the grey screen with its adaptive Otsu);
"after" is ``petri_nb.vm.ocr.read``. A line counts when it appears exactly (spacing normalised)
as a line of the OCR text. Screens: bench/text_ui_screens.py (GRUB in gfxterm, built live).

Run: ``.venv/bin/python -m bench.ocr_accuracy`` (prints Markdown to append to RESULTS.md)
"""

from __future__ import annotations

import statistics
import time

from PIL import Image, ImageOps

import petri_nb
from petri_nb.guests.images.common import cache_dir, package_file
from petri_nb.vm import ocr

from .text_ui_screens import grub_screens


def before(image: Image.Image) -> str:
    import pytesseract

    return pytesseract.image_to_string(ImageOps.grayscale(image), config="-c thresholding_method=1")


def exact(text: str, lines: list[str]) -> int:
    got = {" ".join(line.split()) for line in text.splitlines()}
    return sum(" ".join(line.split()) in got for line in lines)


def timed(fn, *args) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    value = fn(*args)
    return (time.perf_counter() - start) * 1000, value


def main() -> None:
    iso = package_file("grub-rescue-pc", "/usr/lib/grub-rescue/grub-rescue-cdrom.iso", cache_dir())
    rows, costs = [], {"OCR, new screen": [], "OCR, unchanged screen (cache)": [], "needle match": []}
    for screen in grub_screens(iso):
        ms_before, old = timed(before, screen.image)
        ocr._cache.clear()
        ms_after, new = timed(ocr.read, screen.image)
        costs["OCR, new screen"].append(ms_after)
        costs["OCR, unchanged screen (cache)"].append(timed(ocr.read, screen.image)[0])
        w, h = screen.image.size
        needle = petri_nb.Needle.from_image(screen.image, (w // 8, h // 8, w // 2, h // 6), name="n")
        shifted = screen.image.transform(screen.image.size, Image.Transform.AFFINE, (1, 0, -3, 0, 1, -2))
        costs["needle match"].append(timed(needle.match, shifted)[0])
        hl = "" if not screen.highlighted else (
            f"{'yes' if exact(old, [screen.highlighted]) else 'no'} / "
            f"{'yes' if exact(new.text, [screen.highlighted]) else 'no'}")  # type: ignore[attr-defined]
        rows.append((screen.name, len(screen.lines), exact(old, screen.lines),
                     exact(new.text, screen.lines), hl, ms_before, ms_after))  # type: ignore[attr-defined]
    print("| screen | lines | exact before | exact after | highlighted entry read (before / after) "
          "| OCR ms before | OCR ms after |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for name, n, b, a, hl, mb, ma in rows:
        print(f"| {name} | {n} | {b} | {a} | {hl or 'n/a'} | {mb:.0f} | {ma:.0f} |")
    total = sum(r[1] for r in rows)
    print(f"| **all** | {total} | {sum(r[2] for r in rows)} ({sum(r[2] for r in rows) / total:.0%}) | "
          f"{sum(r[3] for r in rows)} ({sum(r[3] for r in rows) / total:.0%}) | | | |")
    print()
    print("| one wait_for_screen poll | median ms | max ms |")
    print("|---|---:|---:|")
    for what, samples in costs.items():
        print(f"| {what} | {statistics.median(samples):.1f} | {max(samples):.1f} |")


if __name__ == "__main__":
    main()
