"""Backends: the backend-neutral runtime protocol (``base``), its implementations, and a registry.

``launch`` asks the registry for the backend a Guest names (``Guest.backend``), so a
new backend (OpenVMM, say) registers a factory here and nothing above changes.
Implementations are imported only when first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LaunchError
from .view import read_facts

if TYPE_CHECKING:
    from ..guests.description import Guest
    from .base import Runtime

#: Makes the runtime for one VM: (guest, VM name, accel) -> Runtime.
RuntimeFactory = Callable[["Guest", str, str], "Runtime"]

_factories: dict[str, RuntimeFactory | str] = {"qemu": "petri_nb.backends.qemu:QemuRuntime"}
#: Does one live-view button for a VM: (its run dir, its control socket, the action) -> None.
ViewControl = Callable[[Path, Path, str], Awaitable[None]]
#: Each backend's view buttons, for the view server (which knows a VM only by its run dir).
_view_controls: dict[str, ViewControl | str] = {"qemu": "petri_nb.backends.qemu.view_control:run_action"}


def register_backend(name: str, factory: RuntimeFactory) -> None:
    """Make ``Guest(backend=name)`` run on ``factory``'s runtimes."""
    _factories[name] = factory


def _load(table: dict[str, Any], name: str) -> Any:
    """The entry ``name`` of ``table``, imported on first use if it is still a "module:attr" string."""
    found = table[name]
    if isinstance(found, str):
        module, _, attr = found.partition(":")
        found = table[name] = getattr(importlib.import_module(module), attr)
    return found


#: Each backend's recordings: path -> (the recorded guest's name, a maker of its replay runtime).
OpenReplay = Callable[[Path], "tuple[str, Callable[[str], Runtime]]"]
_replays: dict[str, OpenReplay | str] = {"qemu": "petri_nb.backends.qemu.replay:open_recording"}


def open_replay(path: Path, backend: str = "qemu") -> tuple[str, Callable[[str], Runtime]]:
    """A recording's guest name, and a maker of the runtime that replays it (given the VM's name)."""
    return _load(_replays, backend)(path)  # type: ignore[no-any-return]


def view_control(rundir: Path) -> ViewControl:
    """The buttons of the backend that made ``rundir`` (its view facts name it)."""
    backend = str(read_facts(rundir).get("backend", "qemu"))
    if backend not in _view_controls:
        raise LaunchError(f"the VM in {rundir.name} runs on backend {backend!r}, which has no view buttons")
    return _load(_view_controls, backend)


def create_runtime(guest: Guest, name: str, accel: str) -> Runtime:
    """The runtime for a VM named ``name`` booting ``guest``."""
    factory = _factories.get(guest.backend)
    if factory is None:
        raise LaunchError(f"unknown backend {guest.backend!r}; known backends: {', '.join(sorted(_factories))}")
    return _load(_factories, guest.backend)(guest, name, accel)
