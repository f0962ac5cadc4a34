"""Backends: the backend-neutral runtime protocol (``base``), its implementations, and a registry.

``launch`` asks the registry for the backend a Guest names (``Guest.backend``), so a
new backend (OpenVMM, say) registers a factory here and nothing above changes.
Implementations are imported only when first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import LaunchError

if TYPE_CHECKING:
    from ..guests.description import Guest
    from .base import Runtime

#: Makes the runtime for one VM: (guest, VM name, accel) -> Runtime.
RuntimeFactory = Callable[["Guest", str, str], "Runtime"]

_factories: dict[str, RuntimeFactory | str] = {"qemu": "petri_nb.backends.qemu:QemuRuntime"}


def register_backend(name: str, factory: RuntimeFactory) -> None:
    """Make ``Guest(backend=name)`` run on ``factory``'s runtimes."""
    _factories[name] = factory


def create_runtime(guest: Guest, name: str, accel: str) -> Runtime:
    """The runtime for a VM named ``name`` booting ``guest``."""
    factory = _factories.get(guest.backend)
    if factory is None:
        raise LaunchError(f"unknown backend {guest.backend!r}; known backends: {', '.join(sorted(_factories))}")
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = _factories[guest.backend] = getattr(importlib.import_module(module), attr)
    return factory(guest, name, accel)
