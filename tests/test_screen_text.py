"""screen_text() reads the VGA text buffer in text mode and refuses graphics modes (real QEMU, tmk)."""

from __future__ import annotations

import pytest
from conftest import wait_until

import petri_nb
from petri_nb.screen_text import decode_text_buffer


def test_typed_text_is_read_from_the_vga_text_buffer(vm: petri_nb.Vm) -> None:
    text = vm.screen_text()
    assert text.source == "vga-text" and (text.columns, text.rows) == (80, 25)
    assert "tmk" in text.splitlines()[0]  # the banner row
    # tmk echoes keys typed on the keyboard on the bottom row (serial input is not echoed there).
    vm.send_input([{"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": ch}}}
                   for ch in "hello" for down in (True, False)])
    wait_until(lambda: vm.screen_text().splitlines()[-1] == "hello", timeout=10, what="hello on screen")


def test_graphics_mode_is_refused_with_the_reason(vm: petri_nb.Vm) -> None:
    vm.console.write("gfx\n")
    vm.console.expect("tmk: gfx", timeout=10)
    wait_until(lambda: vm.screenshot().size == (1024, 768), timeout=10, what="the 1024x768 mode")
    with pytest.raises(petri_nb.NotSupported, match="1024x768, a graphics mode"):
        vm.screen_text()


def test_decode_drops_attributes_and_trailing_blanks() -> None:
    cells = bytes(b for ch in "hi  " + " " * 76 for b in (ord(ch), 0x1F)) * 2
    assert decode_text_buffer(cells, 80, 2) == "hi\nhi"
