"""vm.keyboard types text, presses combos and moves the tablet on a real bootloader (Debian's GRUB
rescue CD under SeaBIOS); bad keys and characters are one-line errors."""

from __future__ import annotations

import asyncio
import json

import pytest
from grub_vm import PROMPT, grub_vm, to_prompt
from IPython.core.error import UsageError

import petri_nb
from petri_nb.errors import BadArgument, PetriError
from petri_nb.vm.keyboard import char_events, parse_combo, scale


def test_text_maps_to_us_qcodes_with_shift() -> None:
    events = char_events("aA!")
    assert [len(e) for e in events] == [2, 4, 4]
    assert [e["data"]["key"]["data"] for e in events[1]] == ["shift", "a", "a", "shift"]
    assert events[2][1]["data"]["key"]["data"] == "1"
    assert parse_combo("ctrl-alt-delete") == ["ctrl", "alt", "delete"]
    assert parse_combo("Enter") == ["ret"] and parse_combo("minus") == ["minus"]
    assert scale(0, 640) == 26 and scale(639, 640) == 0x7FFF - 26


@pytest.mark.parametrize(("call", "message"), [
    (lambda: char_events("héllo€"), r"cannot type 'é', '€' on a US keyboard"),
    (lambda: parse_combo("ctrl-alt-dlete"), r"unknown key 'dlete' in 'ctrl-alt-dlete'"),
    (lambda: parse_combo(""), "a key combo is text"),
])
def test_bad_keys_are_one_line_bad_arguments(call, message: str) -> None:
    with pytest.raises(BadArgument, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_typing_reaches_grubs_command_line_and_the_timeline() -> None:
    with grub_vm() as vm:
        with pytest.raises(BadArgument, match="unknown key 'nokey'"):
            vm.keyboard.press("nokey")
        with pytest.raises(BadArgument, match="cannot type '→'"):
            vm.keyboard.type("a→b")
        vm.keyboard.press("down", "up")  # the menu moves and comes back
        to_prompt(vm)
        vm.keyboard.type("echo 'Hello, World: 42 {ok} ~/x_y|z' \"A<B>C\"")
        vm.keyboard.press("ret")
        vm.wait_for_screen(text=r"(?m)^Hello, World: 42 \{ok\} ~/x_y\|z A<B>C$", timeout=20)
        vm.keyboard.type("set pw=hunter2\n", secret=True)
        vm.wait_for_screen(text=r"(?m)^grub> set pw=hunter2\n", timeout=20)  # it was typed, just not recorded
        rows = vm.timeline().query("source == 'input'")
        assert list(rows["kind"]) == ["key", "key", "type", "key", "type"]
        assert list(rows["detail"])[:4] == ["down up", "c", "echo 'Hello, World: 42 {ok} ~/x_y|z' \"A<B>C\"", "ret"]
        assert rows["detail"].iloc[4] == "<15 characters, secret>"
        assert "hunter2" not in vm.timeline().to_string()


def test_the_tablet_takes_screen_pixels_and_refuses_points_off_screen() -> None:
    with grub_vm() as vm:
        vm.keyboard.move(10, 20)
        vm.keyboard.click(719, 399, button="right")
        with pytest.raises(BadArgument, match=r"outside the 720x400 screen"):
            vm.keyboard.click(720, 0)
        with pytest.raises(BadArgument, match="button='thumb'"):
            vm.keyboard.click(1, 1, button="thumb")
        rows = vm.timeline().query("source == 'input'")
        assert list(rows["detail"]) == ["10,20", "719,399 right"]
        assert json.loads(rows["data"].iloc[1])["screen"] == [720, 400]


def test_keys_for_a_paused_or_halted_vm_are_refused_clearly() -> None:
    with grub_vm() as vm:
        to_prompt(vm)
        vm.pause()
        with pytest.raises(PetriError, match=r"is paused, the guest would not read it; resume\(\) first"):
            vm.keyboard.type("ls")
        vm.resume()
        vm.keyboard.type("halt\n")  # GRUB powers the machine off
        halt = vm.wait_for_halt(timeout=30)
        assert halt.reason is petri_nb.HaltReason.POWER_OFF
        with pytest.raises(PetriError, match=r"is halted \(POWER_OFF\); reset\(\) it first") as info:
            vm.keyboard.press("ret")
        assert "\n" not in str(info.value)


def test_the_async_keyboard_is_the_same_path() -> None:
    with grub_vm() as vm:
        async def drive() -> None:
            await vm.aio.keyboard.press("c")
            await vm.aio.wait_for_screen(text=PROMPT, timeout=20)
            await vm.aio.keyboard.type("echo async\n")
            await vm.aio.wait_for_screen(text=r"(?m)^async$", timeout=20)

        asyncio.run(drive())
        assert vm.aio.keyboard is vm.keyboard.aio


def test_type_and_key_magics_drive_grub(shell) -> None:
    with grub_vm(name="grub-magic") as vm:
        shell.run_line_magic("petri", "use grub-magic")
        shell.run_line_magic("petri", "key c")
        vm.wait_for_screen(text=PROMPT, timeout=20)
        shell.run_line_magic("petri", "type --enter echo 'from  the magic'")
        vm.wait_for_screen(text=r"(?m)^from the magic$", timeout=20)  # GRUB's echo joins its words
        shell.run_line_magic("petri", "key --hold 0.05 ctrl-a")
        vm.pause()
        with pytest.raises(UsageError, match=r"^%petri type: PetriError: keyboard.type\('x'\): VM grub-magic is "
                                             r"paused") as info:
            shell.run_line_magic("petri", "type x")
        assert "\n" not in str(info.value)
