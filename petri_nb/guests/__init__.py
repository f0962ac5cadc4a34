"""Guests by name: the presets (``tmk``, ``linux``) and the ones a user registers.

A preset is a function returning a ``Guest``; options given to ``launch`` go to it
(``launch("linux", command_line=...)``) or, for a plain ``Guest`` value, replace its
fields (``launch("tmk", memory_mib=64)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import LaunchError
from .description import Disk, Guest, Nic

__all__ = ["Disk", "Guest", "Nic", "describe", "known_guests", "register_guest"]

Preset = Callable[..., Guest]
_registry: dict[str, Guest | Preset] = {}
#: Fields that describe a guest of the user's own (``launch(kernel=...)`` needs no preset).
OWN_GUEST_FIELDS = ("kernel", "disks", "cdrom")


def _presets() -> dict[str, Guest | Preset]:
    from .linux import linux
    from .tmk import tmk

    return {"tmk": tmk, "linux": linux, **_registry}


def register_guest(name: str, guest: Guest | Preset) -> None:
    """Make ``launch(name)`` (and ``%petri launch name``) boot ``guest`` (a Guest, or a function returning one)."""
    if not isinstance(name, str) or not name:
        raise LaunchError(f"guest name must be a non-empty string, not {name!r}")
    if not isinstance(guest, Guest) and not callable(guest):
        raise LaunchError(f"register_guest() needs a Guest or a function returning one, not {guest!r}")
    _registry[name] = guest


def known_guests() -> list[str]:
    return sorted(_presets())


def describe(guest: str | Guest | None = None, **options: Any) -> Guest:
    """The Guest that ``launch(guest, **options)`` boots."""
    if guest is None:
        if any(options.get(f) for f in OWN_GUEST_FIELDS):
            return Guest(**options)
        guest = "tmk"
    if isinstance(guest, Guest):
        return guest.replace(**options) if options else guest
    presets = _presets()
    if not isinstance(guest, str) or guest not in presets:
        raise LaunchError(f"unknown guest {guest!r}; known guests: {', '.join(sorted(presets))} "
                          "(or describe your own: launch(kernel=..., disks=[...], cdrom=...))")
    preset = presets[guest]
    if isinstance(preset, Guest):
        return preset.replace(**options) if options else preset
    try:
        made = preset(**options)
    except TypeError as e:
        raise LaunchError(f"bad launch option for guest {guest!r}: {e}") from None
    if not isinstance(made, Guest):
        raise LaunchError(f"guest {guest!r} did not describe a Guest (its function returned {made!r})")
    return made
