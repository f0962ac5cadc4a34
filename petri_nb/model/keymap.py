"""Browser ``KeyboardEvent.code`` names to QEMU qcodes (layout-independent physical keys)."""

from __future__ import annotations

import string

_NAMED = {
    "Enter": "ret", "NumpadEnter": "kp_enter", "Space": "spc", "Backspace": "backspace", "Tab": "tab",
    "Escape": "esc", "Minus": "minus", "Equal": "equal", "BracketLeft": "bracket_left",
    "BracketRight": "bracket_right", "Backslash": "backslash", "Semicolon": "semicolon",
    "Quote": "apostrophe", "Backquote": "grave_accent", "Comma": "comma", "Period": "dot", "Slash": "slash",
    "ShiftLeft": "shift", "ShiftRight": "shift_r", "ControlLeft": "ctrl", "ControlRight": "ctrl_r",
    "AltLeft": "alt", "AltRight": "alt_r", "MetaLeft": "meta_l", "MetaRight": "meta_r", "CapsLock": "caps_lock",
    "ArrowUp": "up", "ArrowDown": "down", "ArrowLeft": "left", "ArrowRight": "right",
    "Home": "home", "End": "end", "PageUp": "pgup", "PageDown": "pgdn", "Insert": "insert", "Delete": "delete",
    "IntlBackslash": "less", "ContextMenu": "menu", "NumLock": "num_lock", "ScrollLock": "scroll_lock",
    "Pause": "pause", "PrintScreen": "print",
}

KEYMAP: dict[str, str] = {
    **{f"Key{c}": c.lower() for c in string.ascii_uppercase},
    **{f"Digit{d}": d for d in string.digits},
    **{f"F{n}": f"f{n}" for n in range(1, 13)},
    **{f"Numpad{d}": f"kp_{d}" for d in string.digits},
    **_NAMED,
}


def qcode(code: str) -> str | None:
    """The qcode for a browser key code, or None for keys QEMU has no name for."""
    return KEYMAP.get(code)
