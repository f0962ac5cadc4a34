"""Real text-UI screens in graphics modes, made by driving GRUB (Debian's rescue CD) with the keyboard.

Each screen is GRUB's own rendering (gfxterm and its unicode font, from the ISO) of a menu or
its command line, with lines a person reads on it (all but the paragraphs GRUB wraps by
width): the menu in GRUB's default colours (dark text on a light-grey highlight bar), in
coloured schemes (light text on a red bar, dark text on a light background), at 800x600 and
1024x768, and the command line after commands.
Used by ``bench/ocr_accuracy.py`` and the OCR tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image

import petri_nb

GFX = "insmod all_video; insmod gfxterm; loadfont unicode; set gfxmode={mode}; terminal_output gfxterm"
ENTRIES = ["GNU/Linux", "GNU (aka GNU/Hurd)", "FreeBSD (or GNU/kFreeBSD), direct boot",
           "FreeBSD (or GNU/kFreeBSD), via /boot/loader", "NetBSD", "OpenBSD", "Microsoft Windows", "Memtest86+",
           "Change the colors"]
TITLE = "GNU GRUB version 2.06-13+deb12u2"
#: The help line both modes show unwrapped (the paragraphs GRUB wraps by screen width are left out).
HELP = "Use the ↑ and ↓ keys to select which entry is highlighted."


@dataclass
class Screen:
    name: str
    image: Image.Image
    lines: list[str]  # what a person reads, one line each (spacing normalised)
    highlighted: str


def menu_lines(selected: int) -> list[str]:
    return [TITLE, *[("*" if i == selected else "") + e for i, e in enumerate(ENTRIES)], HELP]


def settled(vm: petri_nb.Vm, before: Image.Image) -> None:
    """Until the screen differs from ``before`` and then stays still for a second."""
    vm.wait_for_screen(changed=before, still_for=1.0, timeout=30)


def _menu(vm: petri_nb.Vm, colours: str, downs: int) -> None:
    if colours:
        vm.keyboard.type(colours + "\n")
    before = vm.screenshot()
    vm.keyboard.press("esc")
    settled(vm, before)
    if downs:
        before = vm.screenshot()
        vm.keyboard.press(*["down"] * downs)
        settled(vm, before)


def grub_screens(iso: object) -> Iterator[Screen]:
    """Boot the rescue CD once per mode and yield its screens."""
    schemes = [("default", "", 0),
               ("red-bar", "set menu_color_normal=light-gray/blue; set menu_color_highlight=white/red", 2),
               ("light", "set menu_color_normal=black/light-gray; set menu_color_highlight=yellow/brown", 4)]
    for mode in ("1024x768", "800x600"):
        for name, colours, downs in schemes:
            vm = petri_nb.launch(cdrom=iso, firmware="bios", name=f"ocr-{mode}-{name}")
            try:
                vm.wait_for_screen(text="GNU GRUB", timeout=60)
                vm.keyboard.press("c")
                vm.wait_for_screen(text="grub>", timeout=30)
                before = vm.screenshot()
                vm.keyboard.type(GFX.format(mode=mode) + "\n")
                settled(vm, before)
                _menu(vm, colours, downs)
                image = vm.screenshot()
                yield Screen(f"GRUB menu {mode} {name}", image, menu_lines(downs), "*" + ENTRIES[downs])
                if name == "default":
                    yield _command_line(vm, mode)
            finally:
                vm.teardown()


COMMANDS = ["echo Loading Linux 6.1.0-18-amd64 ...", "echo Loading initial ramdisk ...",
            "set timeout=5", "echo root=UUID=0f3e-42 ro quiet splash"]


def _command_line(vm: petri_nb.Vm, mode: str) -> Screen:
    before = vm.screenshot()
    vm.keyboard.press("c")
    settled(vm, before)
    before = vm.screenshot()
    for command in COMMANDS:
        vm.keyboard.type(command + "\n")
    settled(vm, before)
    lines = []
    for command in COMMANDS:
        lines.append("grub> " + command)
        if command.startswith("echo "):
            lines.append(command[5:])
    return Screen(f"GRUB command line {mode}", vm.screenshot(), [TITLE, *lines], "")
