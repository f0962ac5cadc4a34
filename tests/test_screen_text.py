"""screen_text() reads the VGA text buffer in text mode and OCRs graphics modes; wait_for_screen()
waits for text, a change or a still screen (real QEMU, tmk; real tesseract)."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw, ImageFont

import petri_nb
from petri_nb.errors import BadArgument
from petri_nb.vm.screen_text import decode_text_buffer

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def type_keys(vm: petri_nb.Vm, text: str) -> None:
    vm.send_input([{"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": ch}}}
                   for ch in text for down in (True, False)])


def test_typed_text_is_read_from_the_vga_text_buffer(vm: petri_nb.Vm) -> None:
    text = vm.screen_text()
    assert text.source == "vga-text" and (text.columns, text.rows) == (80, 25)
    assert "tmk" in text.splitlines()[0]  # the banner row
    # tmk echoes keys typed on the keyboard on the bottom row (serial input is not echoed there).
    type_keys(vm, "hello")
    vm.wait_for_screen(text="(?m)^hello$", timeout=10)
    assert vm.screen_text().splitlines()[-1] == "hello"


def paint(vm: petri_nb.Vm, image: Image.Image, x: int, y: int) -> None:
    """Paint ``image`` into tmk's 1024x768x32 framebuffer (a paused guest keeps it still)."""
    framebuffer = int.from_bytes(bytes(vm.read_memory("gfx_fb", 4, physical=True)), "little")
    pixels = image.convert("RGB").tobytes("raw", "BGRX")
    stride = image.width * 4
    for row in range(image.height):
        vm.write_memory(framebuffer + ((y + row) * 1024 + x) * 4, pixels[row * stride:(row + 1) * stride],
                        physical=True)


def draw_word(vm: petri_nb.Vm, word: str, x: int, y: int) -> None:
    """A dialog showing ``word``; and tmk's row of frame-counter squares blanked, because tesseract's
    page layout analysis drops every word of a screen that has it (measured: 0 of 3 placements read)."""
    paint(vm, Image.new("RGB", (1024, 48), (0x20, 0x30, 0x50)), 0, 0)
    dialog = Image.new("RGB", (60 * len(word), 80), (255, 255, 255))
    ImageDraw.Draw(dialog).text((10, 5), word, font=ImageFont.truetype(FONT, 56), fill=(0, 0, 0))
    paint(vm, dialog, x, y)


def test_graphics_mode_text_is_read_by_ocr(vm: petri_nb.Vm) -> None:
    vm.console.write("gfx\n")
    vm.console.expect("tmk: gfx", timeout=10)
    assert vm.wait_for_screen(changed=True, timeout=10).size == (1024, 768)
    vm.pause()  # the animation would paint over the word
    bar_x = int.from_bytes(bytes(vm.read_memory("bar_x", 4, physical=True)), "little")
    draw_word(vm, "PETRI", 600 if bar_x < 400 else 80, 300)  # clear of the sweeping bar
    shown = vm.wait_for_screen(text="PETRI", timeout=20)
    assert shown.size == (1024, 768)
    text = vm.screen_text()
    assert text.source == "ocr" and "PETRI" in text


def test_wait_for_screen_change_stillness_and_halt(vm: petri_nb.Vm) -> None:
    with pytest.raises(BadArgument, match="needs text="):
        vm.wait_for_screen()
    with pytest.raises(BadArgument, match="not a regular expression"):
        vm.wait_for_screen(text="(")
    with pytest.raises(BadArgument, match="still_for"):
        vm.wait_for_screen(still_for=float("nan"))
    with pytest.raises(petri_nb.PetriTimeout, match="a change"):
        vm.wait_for_screen(changed=True, timeout=1)  # tmk's text screen is idle
    before = vm.screenshot()
    type_keys(vm, "x")
    assert vm.wait_for_screen(changed=before, still_for=0.5, timeout=10).tobytes() != before.tobytes()
    vm.console.write("\ntriplefault\n")  # after the typed "x"
    with pytest.raises(petri_nb.VmHalted):
        vm.wait_for_screen(text="never shown", timeout=30)


def test_decode_drops_attributes_and_trailing_blanks() -> None:
    cells = bytes(b for ch in "hi  " + " " * 76 for b in (ord(ch), 0x1F)) * 2
    assert decode_text_buffer(cells, 80, 2) == "hi\nhi"
