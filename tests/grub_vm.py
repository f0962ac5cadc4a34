"""Debian's GRUB rescue CD (grub-rescue-pc, built by others): a real bootloader to drive by keyboard."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import petri_nb
from petri_nb.guests.images.common import cache_dir, package_file

MENU = "GNU GRUB  version"
PROMPT = r"(?m)^grub> ?$"


def grub_rescue_iso() -> Path:
    return package_file("grub-rescue-pc", "/usr/lib/grub-rescue/grub-rescue-cdrom.iso", cache_dir())


@contextmanager
def grub_vm(name: str | None = None) -> Iterator[petri_nb.Vm]:
    """A VM booted from the rescue CD (SeaBIOS), showing GRUB's menu; torn down afterwards."""
    vm = petri_nb.launch(cdrom=grub_rescue_iso(), firmware="bios", name=name)
    try:
        vm.wait_for_screen(text=MENU, timeout=60)
        # The title comes before the menu's box and highlight: a needle cut at once may hold half a menu.
        vm.wait_for_screen(still_for=0.5, timeout=30)
        yield vm
    finally:
        vm.teardown()


def to_prompt(vm: petri_nb.Vm) -> None:
    """From the menu to GRUB's command line (``c``)."""
    vm.keyboard.press("c")
    vm.wait_for_screen(text=PROMPT, timeout=20)
