"""Regenerate tmk's 8x16 VGA font (petri_nb/guests/tmk/font8x16.bin) from Debian's console-data.

Why: under qboot no VGA BIOS runs, so tmk loads a font into VGA plane 2 itself. The
glyphs are the Linux console's ``default8x16`` (CP437 order, GPL-2.0, from the kbd
project) as Debian ships it in console-data 2:1.12-9. Reproducible without root:

    apt-get download console-data && dpkg-deb -x console-data_*_all.deb /tmp/cd
    .venv/bin/python tools/tmk_font.py /tmp/cd/usr/share/consolefonts/default8x16.psf.gz

The output is the first 256 glyphs, 16 bytes each (4096 bytes); its SHA-256 is checked
so a different source font cannot slip in unnoticed. Rebuild tmk afterwards
(``petri-nb build-tmk``).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "petri_nb" / "guests" / "tmk" / "font8x16.bin"
PSF1_MAGIC = b"\x36\x04"
GLYPHS, HEIGHT = 256, 16
SHA256 = "602906c22a6d9e1dcf04cffe4fcfa4c9f5239762d670390b9d069bca5588d593"


def glyphs(psf: bytes) -> bytes:
    """The 256 glyphs of a PSF1 8x16 font, without its header and Unicode table."""
    if psf[:2] != PSF1_MAGIC or psf[3] != HEIGHT:
        raise SystemExit(f"not a PSF1 font with {HEIGHT}-line glyphs")
    return psf[4:4 + GLYPHS * HEIGHT]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("psf", type=Path, help="default8x16.psf.gz from console-data")
    parser.add_argument("--accept-new-font", action="store_true", help="skip the SHA-256 check")
    args = parser.parse_args()
    raw = args.psf.read_bytes()
    font = glyphs(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    digest = hashlib.sha256(font).hexdigest()
    if digest != SHA256 and not args.accept_new_font:
        raise SystemExit(f"font SHA-256 {digest} is not the expected {SHA256}")
    OUT.write_bytes(font)
    print(f"wrote {OUT} ({len(font)} bytes, sha256 {digest})")


if __name__ == "__main__":
    main()
