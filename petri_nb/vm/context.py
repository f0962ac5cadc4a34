"""CallContext: one VM as the features beside it see it (console, agent, keyboard, readiness, needles).

Those features are objects of their own, not the VM. They need the VM's race for their
runtime calls (``call``: raced against VM loss, and halts if asked, bounded, one timeline
row each, so a guest that crashes under a command gives VmHalted, not a hang), its
timeline for their own rows (``record``) and a few facts about it. The VM (VmCore) hands
them this instead of itself, so ``_call``, ``_record`` and its signals stay private to
the VM's own classes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

from ..backends.base import Runtime
from ..guests import Guest
from ..model.boot_event import BootEvent
from ..model.halt import Halt
from ..model.run_state import RunState

T = TypeVar("T")


class Call(Protocol):
    """Run one runtime call in the VM's race (VmCore._call)."""

    def __call__(self, name: str, aw: Awaitable[T], *, halts: bool = ..., breakpoints: bool = ...,
                 timeout: float | None = ..., what: str = "") -> Awaitable[T]: ...


class Record(Protocol):
    """Put one row on the VM's timeline."""

    def __call__(self, source: str, kind: str, detail: str = "", data: Any = None) -> None: ...


class VmFacts(Protocol):
    """What a context reads of its VM: public facts only."""

    name: str
    guest: Guest
    runtime: Runtime
    boot_events: list[BootEvent]

    @property
    def state(self) -> RunState: ...

    @property
    def last_halt(self) -> Halt | None: ...


class CallContext:
    """The VM's race, its timeline and its facts, for one VM's features."""

    __slots__ = ("_vm", "agent", "boot_grew", "call", "record")

    def __init__(self, vm: VmFacts, call: Call, record: Record, boot_grew: asyncio.Event) -> None:
        self._vm = vm
        self.call = call
        self.record = record
        #: Set at every boot event (readiness waits on it).
        self.boot_grew = boot_grew
        #: The VM's guest agent once connected (petri_nb.vm.agent.agent_for); it lives as long as the VM.
        self.agent: Any = None

    def __repr__(self) -> str:
        return f"<CallContext of {self.name}>"

    @property
    def name(self) -> str:
        return self._vm.name

    @property
    def guest(self) -> Guest:
        return self._vm.guest

    @property
    def runtime(self) -> Runtime:
        return self._vm.runtime

    @property
    def state(self) -> RunState:
        return self._vm.state

    @property
    def last_halt(self) -> Halt | None:
        return self._vm.last_halt

    @property
    def boot_events(self) -> list[BootEvent]:
        return self._vm.boot_events
