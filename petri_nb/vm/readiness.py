"""When a guest is ready: the one rule that ``launch`` and ``reset`` share.

A guest description says what ready means (``Guest.ready``): a console regex (a
banner, a login prompt), ``"agent"`` (the guest agent answers) or ``"boot"`` (the
firmware reports a successful boot). Readiness is judged only on what happened
after a mark taken before the boot or reset began, so the previous boot's banner
never counts, and it consumes nothing: a user's own ``console.expect`` of the
banner still finds it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import PetriTimeout
from ..model.boot_event import BootEvent
from .console import AsyncConsole
from .context import CallContext


class Readied(Protocol):
    """What readiness looks at: a VM, seen from below (so this module needs no facade)."""

    console: AsyncConsole
    boot_events: list[BootEvent]
    #: The VM's call context (petri_nb.vm.context): its race and facts.
    _context: CallContext

    def wait_for_agent(self, timeout: float) -> Awaitable[Any]: ...


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
    context = vm._context
    ready, timeout = context.guest.ready, context.guest.ready_timeout
    try:
        if ready == "agent":
            await vm.wait_for_agent(timeout)
        elif ready == "boot":
            await context.call("wait_for_boot_event", _ok_boot_since(context, since.boot_events), timeout=timeout,
                               halts=True, what="a successful boot")
        elif ready is not None:
            await vm.console._shown_since(re.compile(ready), since.console, timeout)
    except PetriTimeout as e:
        events = ", ".join(f"{b.kind} ({b.detail})" for b in vm.boot_events[since.boot_events:]) or "none"
        tail = vm.console.tail(5) or "(nothing)"
        awaited = {"agent": "the guest agent", "boot": "a successful boot"}.get(ready, f"console {ready!r}")
        raise PetriTimeout(f"VM {context.name} was not ready after {timeout:g} s (waiting for {awaited}); "
                           f"boot events: {events}; console tail: {tail!r}") from e


async def _ok_boot_since(vm: CallContext, index: int) -> BootEvent:
    """The first successful boot event at or after ``index`` (seen or still to come)."""
    while True:
        vm.boot_grew.clear()
        for event in vm.boot_events[index:]:
            if event.ok:
                return event
        index = len(vm.boot_events)
        await vm.boot_grew.wait()
