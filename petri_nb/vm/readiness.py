"""When a guest is ready: the one rule that ``launch`` and ``reset`` share.

A guest description says what ready means (``Guest.ready``): a console regex (a
banner, a login prompt), ``"agent"`` (the guest agent answers) or ``"boot"`` (the
firmware reports a successful boot). Readiness is judged only on what happened
after a mark taken before the boot or reset began, so the previous boot's banner
never counts, and it consumes nothing: a user's own ``console.expect`` of the
banner still finds it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import PetriTimeout
from ..guests import Guest
from ..model.boot_event import BootEvent
from .console import AsyncConsole


class Readied(Protocol):
    """What readiness looks at: an Readied, seen from below (so this module needs no facade)."""

    name: str
    guest: Guest
    console: AsyncConsole
    boot_events: list[BootEvent]
    _boot_grew: asyncio.Event

    def wait_for_agent(self, timeout: float) -> Awaitable[Any]: ...

    def _call(self, name: str, aw: Awaitable[Any], **options: Any) -> Awaitable[Any]: ...


@dataclass(frozen=True)
class Mark:
    """Where the console and the boot events were when a boot or reset began."""

    console: int
    boot_events: int


def mark(vm: Readied) -> Mark:
    return Mark(vm.console.mark(), len(vm.boot_events))


async def until_ready(vm: Readied, since: Mark) -> None:
    """Wait for the guest's readiness after ``since``; PetriTimeout names what it waited for and
    what the guest did instead (boot events, console tail)."""
    ready, timeout = vm.guest.ready, vm.guest.ready_timeout
    try:
        if ready == "agent":
            await vm.wait_for_agent(timeout)
        elif ready == "boot":
            await vm._call("wait_for_boot_event", _ok_boot_since(vm, since.boot_events), timeout=timeout,
                           halts=True, what="a successful boot")
        elif ready is not None:
            await vm.console._shown_since(re.compile(ready), since.console, timeout)
    except PetriTimeout as e:
        events = ", ".join(f"{b.kind} ({b.detail})" for b in vm.boot_events[since.boot_events:]) or "none"
        tail = vm.console.tail(5) or "(nothing)"
        awaited = {"agent": "the guest agent", "boot": "a successful boot"}.get(ready, f"console {ready!r}")
        raise PetriTimeout(f"VM {vm.name} was not ready after {timeout:g} s (waiting for {awaited}); "
                           f"boot events: {events}; console tail: {tail!r}") from e


async def _ok_boot_since(vm: Readied, index: int) -> BootEvent:
    """The first successful boot event at or after ``index`` (seen or still to come)."""
    while True:
        vm._boot_grew.clear()
        for event in vm.boot_events[index:]:
            if event.ok:
                return event
        index = len(vm.boot_events)
        await vm._boot_grew.wait()
