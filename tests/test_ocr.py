"""OCR reads a real text-UI menu in a graphics mode as a person does: GRUB (Debian's rescue CD) in
gfxterm, its highlighted entry on a coloured bar included; word boxes and the digest cache."""

from __future__ import annotations

import time

import pytest
from grub_vm import grub_vm, to_prompt
from PIL import Image

from petri_nb.errors import BadArgument
from petri_nb.vm import ocr

GFX = "insmod all_video; insmod gfxterm; loadfont unicode; set gfxmode=1024x768; terminal_output gfxterm\n"
COLOURS = "set menu_color_normal=light-gray/blue; set menu_color_highlight=white/red\n"


@pytest.mark.slow
def test_the_highlighted_entry_of_grubs_graphics_menu_is_read() -> None:
    with grub_vm() as vm:
        to_prompt(vm)
        before = vm.screenshot()
        vm.keyboard.type(GFX)
        vm.wait_for_screen(changed=before, still_for=1.0, timeout=30)
        vm.keyboard.type(COLOURS)
        before = vm.screenshot()
        vm.keyboard.press("esc", "down", "down")  # back to the menu, the third entry highlighted
        shown = vm.wait_for_screen(text=r"(?m)^\*FreeBSD \(or GNU/kFreeBSD\), direct boot$", timeout=120)
        assert shown.size == (1024, 768) and shown.tobytes() != before.tobytes()
        text = vm.screen_text()
        assert text.source == "ocr" and "*FreeBSD (or GNU/kFreeBSD), direct boot" in text.splitlines()
        assert "Microsoft Windows" in text.splitlines() and "Change the colors" in text.splitlines()
        [(x, y, w, h)] = text.find(r"direct boot")
        bar = shown.convert("RGB").getpixel((x - 4, y + h // 2))
        assert bar[0] > 150 and bar[2] < 80  # the box is on the red highlight bar
        start = time.perf_counter()
        assert vm.screen_text() == text  # the unchanged screen is not read again
        assert time.perf_counter() - start < 0.5


def test_vga_text_words_have_cell_boxes_and_find_says_where() -> None:
    with grub_vm() as vm:
        to_prompt(vm)
        vm.keyboard.type("echo find me here\n")
        vm.wait_for_screen(text=r"(?m)^find me here$", timeout=20)
        text = vm.screen_text()
        row = text.splitlines().index("find me here")
        # 9x16 cells: "grub> echo find me here" above (columns 16-22), then GRUB's echo (columns 5-11)
        assert text.find(r"me here") == [(144, (row - 1) * 16, 63, 16), (45, row * 16, 63, 16)]
        assert text.find("nowhere") == []
        with pytest.raises(BadArgument, match="not a regular expression"):
            text.find("(")


def test_light_on_dark_dark_on_light_and_a_bar_all_become_ink() -> None:
    image = Image.new("RGB", (200, 60), (0, 0, 0))
    image.paste((170, 170, 170), (0, 20, 200, 40))  # a light bar across a dark screen
    image.putpixel((10, 10), (255, 255, 255))  # light on dark
    image.putpixel((10, 30), (0, 0, 0))  # dark on the light bar
    mask = ocr.ink_mask(image)
    assert mask[10, 10] and mask[30, 10] and not mask[30, 100] and not mask[50, 100]
    assert mask.sum() == 2
