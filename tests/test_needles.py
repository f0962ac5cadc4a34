"""Needles: a picture cut from one boot of a real bootloader (Debian's GRUB rescue CD) matches the same
screen on a second boot and not a different screen; the files, the search and the bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from grub_vm import grub_vm, to_prompt
from IPython.core.error import UsageError
from PIL import Image, ImageDraw, ImageFont

import petri_nb
from petri_nb.errors import BadArgument, PetriError

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
#: GRUB's menu box with its five entries (VGA text mode 720x400: 9x16 character cells).
MENU_BOX = (9, 3 * 16, 78 * 9, 7 * 16)


def screen(word: str, at: tuple[int, int] = (40, 30), size: int = 28) -> Image.Image:
    image = Image.new("RGB", (320, 120), (10, 20, 60))
    ImageDraw.Draw(image).text(at, word, font=ImageFont.truetype(FONT, size), fill=(230, 230, 230))
    return image


def test_exact_pixels_score_one_and_a_small_shift_is_found_in_the_margin() -> None:
    needle = petri_nb.Needle.from_image(screen("Install"), (30, 20, 200, 50), name="install")
    exact = needle.match(screen("Install"))
    assert exact and exact.score == 1.0 and exact.areas[0].exact and exact.region == (30, 20, 200, 50)
    shifted = needle.match(screen("Install", at=(44, 33)))
    assert shifted and shifted.region == (34, 23, 200, 50) and not shifted.areas[0].exact
    other = needle.match(screen("Rescue"))
    assert not other and other.score < 0.9
    far = needle.match(screen("Install", at=(120, 30)))  # moved beyond the margin
    assert not far


def test_every_area_must_match_and_flat_areas_compare_colour() -> None:
    needle = petri_nb.Needle.from_image(screen("Install"), (30, 20, 200, 50), name="two")
    needle.areas.append((250, 80, 60, 30))  # plain background
    assert needle.match(screen("Install"))
    blue = screen("Install")
    blue.paste((10, 20, 200), (240, 70, 320, 120))
    result = needle.match(blue)
    assert not result and result.areas[0].score == 1.0 and result.areas[1].score < 0.9


def test_a_needle_is_a_png_and_a_json_that_round_trip(tmp_path: Path) -> None:
    needle = petri_nb.Needle.from_image(screen("Install"), (30, 20, 200, 50), name="install", threshold=0.9)
    path = needle.save(tmp_path / "needles")
    meta = json.loads(path.read_text())
    assert meta["areas"] == [{"x": 30, "y": 20, "w": 200, "h": 50}] and meta["threshold"] == 0.9
    assert (tmp_path / "needles" / "install.png").is_file()
    again = petri_nb.Needle.load(tmp_path / "needles" / "install.png")
    assert again.areas == needle.areas and again.threshold == 0.9 and again.match(screen("Install")).score == 1.0
    assert list(petri_nb.Needle.load_all(tmp_path / "needles")) == ["install"]


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: petri_nb.Needle.from_image(screen("x"), (300, 0, 40, 10), name="n"), BadArgument,
     r"region \(x=300, y=0, w=40, h=10\) is outside the 320x120 screen"),
    (lambda: petri_nb.Needle.from_image(screen("x"), (0, 0, 0, 10), name="n"), BadArgument, "outside"),
    (lambda: petri_nb.Needle.from_image(screen("x"), "top", name="n"), BadArgument, r"a region is \(x, y, w, h\)"),
    (lambda: petri_nb.Needle.from_image(screen("x"), (0, 0, 4, 4), name="../up"), BadArgument, "needle name"),
    (lambda: petri_nb.Needle.from_image(screen("x"), (0, 0, 4, 4), name="n", threshold=2), BadArgument,
     "threshold"),
    (lambda: petri_nb.Needle.load("/no/such/menu.json"), PetriError, r"needle 'menu': no file '/no/such/menu.json'"),
    (lambda: petri_nb.Needle.load_all("/no/such"), PetriError, "no needle folder"),
    # A name longer than the system takes (the fuzz test found it raising OSError).
    (lambda: petri_nb.Needle.load("x" * 5000), PetriError, "needle path 'x+' cannot be used: File name too long"),
    (lambda: petri_nb.Needle.load_all("y" * 5000), PetriError, "cannot be used: File name too long"),
])
def test_bad_needles_are_one_line_petri_errors(call, error: type, message: str) -> None:
    with pytest.raises(error, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_a_needle_from_one_boot_matches_the_next_boot_and_not_the_prompt(tmp_path: Path) -> None:
    with grub_vm() as first:
        path = petri_nb.Needle.from_screen(first, MENU_BOX, name="grub-menu").save(tmp_path)
    with grub_vm() as vm:
        assert vm.wait_for_screen(like=path, timeout=30).size == (720, 400)
        result = vm.screen_matches(petri_nb.Needle.load(path))
        assert result and result.score >= 0.99 and result.region == MENU_BOX
        entry = petri_nb.Needle.from_screen(vm, (18, 64, 300, 16), name="first-entry-selected")
        vm.keyboard.press("down")  # the highlight bar moves to the second entry
        vm.wait_for_screen(changed=True, timeout=10)
        vm.wait_for_screen(still_for=0.5, timeout=10)  # GRUB has redrawn: the next key is not pressed mid-redraw
        assert not vm.screen_matches(entry) and not vm.screen_matches(path)
        vm.keyboard.press("up")
        assert vm.wait_for_screen(like=entry, timeout=10)
        to_prompt(vm)
        miss = vm.screen_matches(path)
        assert not miss and miss.score < 0.9
        with pytest.raises(petri_nb.PetriTimeout, match=r"needle 'grub-menu'.*; best candidate: score 0\.\d+ at ") \
                as info:
            vm.wait_for_screen(like=path, timeout=1.5)
        assert "\n" not in str(info.value)
        with pytest.raises(PetriError, match="no file"):
            vm.wait_for_screen(like=tmp_path / "nope.json", timeout=1)
        rows = vm.timeline().query("source == 'screen'")
        needles = rows[rows["kind"].str.startswith("needle")]
        assert list(needles["kind"])[-1] == "needle failed"
        assert any(json.loads(d)["matched"] for d in needles["data"])  # (the first look may beat the box)
        assert "no match, score" in needles["detail"].iloc[-2]
        assert (rows["kind"] == "screenshot").sum() >= 3  # the first looks and the best failed candidate


def test_the_needle_magic_cuts_from_the_live_screen_and_wait_screen_matches_it(shell, tmp_path: Path) -> None:
    with grub_vm(name="grub-needle"):
        shell.run_line_magic("petri", "use grub-needle")
        out = shell.run_line_magic("petri", f"needle menu {' '.join(map(str, MENU_BOX))} --dir {tmp_path}")
        assert f"saved as {tmp_path}/menu.json" in str(out)
        shown = shell.run_line_magic("petri", f"wait-screen --like {tmp_path}/menu.json --timeout 10")
        assert shown.size == (720, 400)
        for line, message in [
            ("needle wide 700 0 40 16", r"needle: BadArgument: region \(x=700, y=0, w=40, h=16\) is outside the "
                                        r"720x400 screen"),
            (f"wait-screen --like {tmp_path}/gone.json", r"wait-screen: PetriError: needle 'gone': no file"),
        ]:
            with pytest.raises(UsageError, match=message) as info:
                shell.run_line_magic("petri", line)
            assert "\n" not in str(info.value)
