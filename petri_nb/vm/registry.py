"""The VMs alive in this process, by name: names are unique while a VM runs."""

from __future__ import annotations

import collections
import itertools
import threading
from typing import Any

from ..errors import BadArgument, PetriError
from ..guests.description import SAFE_NAME

_live: dict[str, Any] = {}  # name -> AsyncVm (None while it launches)
_lock = threading.Lock()
_counters: collections.defaultdict[str, itertools.count[int]] = collections.defaultdict(lambda: itertools.count(1))


def claim_name(name: str | None, guest: str) -> str:
    """Reserve ``name`` (default: GUEST-N) for a VM about to launch."""
    with _lock:
        if name is None:
            while (name := f"{guest}-{next(_counters[guest])}") in _live:
                pass
        elif not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
            raise BadArgument(f"VM name must be 1-64 letters, digits, '.', '_' or '-' (starting with a letter "
                              f"or digit), not {name!r:.80}")
        elif name in _live:
            raise PetriError(f"a VM named {name!r} is already running; tear it down or pick another name")
        _live[name] = None  # reserved until launched
        return name


def register(name: str, vm: Any) -> None:
    with _lock:
        _live[name] = vm


def release(name: str, vm: Any = None) -> None:
    """Free ``name`` (only if it still belongs to ``vm``, when given)."""
    with _lock:
        if vm is None or _live.get(name) is vm:
            _live.pop(name, None)


def live_vms() -> list[Any]:
    """Every launched VM not yet torn down, oldest first."""
    with _lock:
        return [vm for vm in _live.values() if vm is not None]
