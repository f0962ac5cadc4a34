"""Guests petri_nb can boot by name, e.g. ``launch("tmk")``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..backends.qemu import QemuConfig
from ..errors import LaunchError


@dataclass(frozen=True)
class Guest:
    """A bootable guest: how to configure QEMU for it and what it prints when ready."""

    name: str
    make_config: Callable[..., QemuConfig]
    ready: str | None = None
    ready_timeout: float = 30.0

    def config(self, **options: Any) -> QemuConfig:
        try:
            return self.make_config(**options)
        except TypeError as e:
            raise LaunchError(f"bad launch option for guest {self.name!r}: {e}") from None


def _registry() -> dict[str, Guest]:
    from .linux import LINUX
    from .tmk import TMK

    return {g.name: g for g in (TMK, LINUX)}


def get_guest(name: str) -> Guest:
    guests = _registry()
    if not isinstance(name, str) or name not in guests:
        raise LaunchError(f"unknown guest {name!r}; known guests: {', '.join(sorted(guests))}")
    return guests[name]
