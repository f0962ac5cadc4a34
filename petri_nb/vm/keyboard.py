"""``vm.keyboard``: type text, press key combos and click, as a person at the VM would.

Text becomes QEMU qcodes for a US layout (shift added where the character needs it); combos
use QEMU's ``sendkey`` spelling (``ctrl-alt-delete``). Each character is its own
``input-send-event``, ``delay`` seconds apart, because QEMU's PS/2 queue holds 16 bytes and
drops the rest: a whole string in one event overflows it (measured on GRUB: 8 of 62 letters
arrived), and QEMU says nothing when the guest has read a key. Mouse positions are screen
pixels, scaled to the virtio tablet's absolute axes (0..0x7FFF) by the current screen size.
"""

from __future__ import annotations

import asyncio
import string
from typing import Any

from ..errors import BadArgument
from ..runtime.loop import blocking_twins, runs_on_runtime_loop
from .context import CallContext
from .core import VmCore
from .preconditions import requires_running_guest
from .twin_names import KeyboardTwins

#: QEMU's QKeyCode names (QAPI ``QKeyCode``, as QEMU 7-9 list them), the ``sendkey`` spelling.
QCODES = frozenset((
    "shift shift_r alt alt_r ctrl ctrl_r menu esc 1 2 3 4 5 6 7 8 9 0 minus equal backspace tab "
    "q w e r t y u i o p bracket_left bracket_right ret a s d f g h j k l semicolon apostrophe grave_accent "
    "backslash z x c v b n m comma dot slash asterisk spc caps_lock f1 f2 f3 f4 f5 f6 f7 f8 f9 f10 num_lock "
    "scroll_lock kp_divide kp_multiply kp_subtract kp_add kp_enter kp_decimal sysrq kp_0 kp_1 kp_2 kp_3 kp_4 "
    "kp_5 kp_6 kp_7 kp_8 kp_9 less f11 f12 print home pgup pgdn end left up down right insert delete stop "
    "again props undo front copy open paste find cut lf help meta_l meta_r compose pause ro hiragana henkan "
    "yen muhenkan katakanahiragana kp_comma kp_equals power sleep wake audionext audioprev audiostop audioplay "
    "audiomute volumeup volumedown mediaselect mail calculator computer ac_home ac_back ac_forward ac_refresh "
    "ac_bookmarks lang1 lang2").split())

#: Names people type that QEMU spells otherwise (HMP ``sendkey`` accepts none of these, we do).
ALIASES = {"enter": "ret", "return": "ret", "space": "spc", "escape": "esc", "del": "delete", "ins": "insert",
           "pageup": "pgup", "pagedown": "pgdn", "control": "ctrl", "win": "meta_l", "super": "meta_l",
           "backtab": "tab"}

#: US layout: character -> (qcode, needs shift).
_PAIRS = {"-_": "minus", "=+": "equal", "[{": "bracket_left", "]}": "bracket_right", "\\|": "backslash",
          ";:": "semicolon", "'\"": "apostrophe", "`~": "grave_accent", ",<": "comma", ".>": "dot", "/?": "slash"}
US_LAYOUT: dict[str, tuple[str, bool]] = {
    **{c: (c, False) for c in string.ascii_lowercase + string.digits},
    **{c.upper(): (c, True) for c in string.ascii_lowercase},
    **{shifted: (digit, True) for digit, shifted in zip("1234567890", "!@#$%^&*()", strict=True)},
    **{pair[0]: (key, False) for pair, key in _PAIRS.items()},
    **{pair[1]: (key, True) for pair, key in _PAIRS.items()},
    " ": ("spc", False), "\n": ("ret", False), "\t": ("tab", False), "\b": ("backspace", False),
}

#: Seconds between typed characters: QEMU's PS/2 queue must drain between them (see the module doc).
TYPE_DELAY = 0.01
BUTTONS = ("left", "right", "middle", "wheel-up", "wheel-down", "side", "extra")
ABS_MAX = 0x7FFF


def key_event(qcode: str, down: bool) -> dict[str, Any]:
    return {"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": qcode}}}


def char_events(text: str) -> list[list[dict[str, Any]]]:
    """One event list per character; BadArgument names every character a US keyboard cannot type."""
    bad = sorted({c for c in text if c not in US_LAYOUT})
    if bad:
        raise BadArgument(f"cannot type {', '.join(map(repr, bad))} on a US keyboard layout "
                          "(use keyboard.press() for named keys)")
    out = []
    for c in text:
        key, shift = US_LAYOUT[c]
        press = [key_event(key, True), key_event(key, False)]
        out.append([key_event("shift", True), *press, key_event("shift", False)] if shift else press)
    return out


def parse_combo(combo: str) -> list[str]:
    """``"ctrl-alt-delete"`` -> its qcodes; an unknown name is a BadArgument naming it."""
    if not isinstance(combo, str) or not combo:
        raise BadArgument(f"a key combo is text such as 'ctrl-alt-delete', not {combo!r}")
    names = combo.lower().split("-") if combo not in ("-", "minus") else ["minus"]
    keys = []
    for name in names:
        key = ALIASES.get(name, name)
        if key not in QCODES:
            raise BadArgument(f"unknown key {name!r} in {combo!r}: use QEMU sendkey names such as ret, spc, esc, "
                              "f2, ctrl, alt, shift, up, delete, a, 1")
        keys.append(key)
    return keys


def scale(pixel: float, size: int) -> int:
    """A screen pixel (its centre) on the tablet's 0..0x7FFF axis."""
    return min(ABS_MAX, max(0, round((pixel + 0.5) * ABS_MAX / size)))


class AsyncKeyboard:
    """Keyboard and mouse of an AsyncVm (``vm.keyboard``); every call is a timeline row, source ``input``."""

    def __init__(self, vm: CallContext) -> None:
        self.vm = vm
        self._lock = asyncio.Lock()  # two cells typing at once would interleave their characters

    async def _send(self, name: str, batches: list[list[dict[str, Any]]], delay: float) -> None:
        async def send_all() -> None:
            for i, events in enumerate(batches):
                if i and delay:
                    await asyncio.sleep(delay)  # pacing for the guest's keyboard queue, not a synchronisation
                await self.vm.runtime.send_input(events)

        async with self._lock:
            await self.vm.call(name, send_all(), halts=True, timeout=30.0 + delay * len(batches))

    @runs_on_runtime_loop
    @requires_running_guest(lambda a: f"keyboard.type({'<secret>' if a['secret'] else repr(a['text'])})")
    async def type(self, text: str, delay: float = TYPE_DELAY, secret: bool = False) -> None:
        """Type ``text`` (US layout; ``\\n`` is Enter), ``delay`` seconds between characters. The timeline
        row holds the text, or with ``secret=True`` only its length."""
        if delay < 0:
            raise BadArgument(f"keyboard.type(delay={delay!r}): seconds >= 0")
        batches = char_events(text)
        await self._send("keyboard.type", batches, delay)
        shown = f"<{len(text)} characters, secret>" if secret else text
        self.vm.record("input", "type", shown, {"length": len(text), "secret": secret} if secret
                       else {"text": text, "length": len(text)})

    @runs_on_runtime_loop
    @requires_running_guest(lambda a: f"keyboard.press({', '.join(map(repr, a['combos']))})")
    async def press(self, *combos: str, hold: float = 0.0, delay: float = TYPE_DELAY) -> None:
        """Press each combo in turn (QEMU ``sendkey`` spelling: ``"ctrl-alt-delete"``, ``"f2"``, ``"ret"``),
        holding its keys down for ``hold`` seconds; keys go down in order and up in reverse."""
        if not combos:
            raise BadArgument("keyboard.press() needs at least one key combo, e.g. press('ret')")
        if hold < 0 or delay < 0:
            raise BadArgument(f"keyboard.press(hold={hold!r}, delay={delay!r}): seconds >= 0")
        parsed = [parse_combo(c) for c in combos]

        async def hold_each() -> None:
            for i, keys in enumerate(parsed):
                if i and delay:
                    await asyncio.sleep(delay)  # pacing for the guest's keyboard queue
                downs = [key_event(k, True) for k in keys]
                ups = [key_event(k, False) for k in reversed(keys)]
                if hold:
                    await self.vm.runtime.send_input(downs)
                    await asyncio.sleep(hold)  # the hold itself: how long a person keeps the keys down
                    await self.vm.runtime.send_input(ups)
                else:
                    await self.vm.runtime.send_input(downs + ups)

        async with self._lock:
            await self.vm.call("keyboard.press", hold_each(), halts=True,
                               timeout=30.0 + (hold + delay) * len(parsed))
        self.vm.record("input", "key", " ".join(combos), {"combos": list(combos), "hold_s": hold})

    async def _pointer(self, kind: str, x: float, y: float, extra: list[dict[str, Any]]) -> None:
        image = await self.vm.call("screenshot", self.vm.runtime.screenshot())
        w, h = image.size
        if not (0 <= x < w and 0 <= y < h):
            raise BadArgument(f"keyboard.{kind}({x:g}, {y:g}) is outside the {w}x{h} screen")
        events = [{"type": "abs", "data": {"axis": "x", "value": scale(x, w)}},
                  {"type": "abs", "data": {"axis": "y", "value": scale(y, h)}}]
        async with self._lock:
            await self.vm.call(f"keyboard.{kind}", self.vm.runtime.send_input(events + extra[:1]))
            if extra[1:]:
                await self.vm.call(f"keyboard.{kind}", self.vm.runtime.send_input(extra[1:]))
        self.vm.record("input", kind, f"{x:g},{y:g}" + (f" {extra[0]['data']['button']}" if extra else ""),
                       {"x": x, "y": y, "screen": [w, h]})

    @runs_on_runtime_loop
    @requires_running_guest(lambda a: f"keyboard.move({a['x']:g}, {a['y']:g})")
    async def move(self, x: float, y: float) -> None:
        """Move the pointer to screen pixel (``x``, ``y``) (the virtio tablet: absolute, no drift)."""
        await self._pointer("move", x, y, [])

    @runs_on_runtime_loop
    @requires_running_guest(lambda a: f"keyboard.click({a['x']:g}, {a['y']:g})")
    async def click(self, x: float, y: float, button: str = "left") -> None:
        """Move to screen pixel (``x``, ``y``) and click ``button`` (left, right, middle, wheel-up...)."""
        if button not in BUTTONS:
            raise BadArgument(f"keyboard.click(button={button!r}): one of {', '.join(BUTTONS)}")
        await self._pointer("click", x, y, [{"type": "btn", "data": {"down": down, "button": button}}
                                            for down in (True, False)])


@blocking_twins(AsyncKeyboard)
class Keyboard(KeyboardTwins):
    """Blocking face of AsyncKeyboard (methods generated from it), ``vm.keyboard`` of a ``Vm``."""

    def __init__(self, aio: AsyncKeyboard) -> None:
        self.aio = aio

    def __repr__(self) -> str:
        return f"<Keyboard of {self.aio.vm.name}>"


class KeyboardMixin(VmCore):
    """``keyboard`` for AsyncVm: one AsyncKeyboard per VM, made on first use."""

    @property
    def keyboard(self) -> AsyncKeyboard:
        """Type, press keys and click (petri_nb.vm.keyboard)."""
        kb = self.__dict__.get("_keyboard")
        if kb is None:
            kb = self.__dict__["_keyboard"] = AsyncKeyboard(self._context)
        return kb
