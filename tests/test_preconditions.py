"""Preconditions (petri_nb.vm.preconditions) refuse before the body runs, with the message the state calls for."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from petri_nb.errors import NotSupported, PetriError
from petri_nb.model.halt import Halt, HaltReason
from petri_nb.model.run_state import RunState
from petri_nb.vm.preconditions import requires_replay, requires_running_guest, requires_usable


@dataclass
class Facts:
    name: str = "vm-1"
    state: RunState = RunState.RUNNING
    last_halt: Halt | None = None


class Feature:
    def __init__(self, facts: Facts) -> None:
        self.vm = facts
        self.sent: list[str] = []

    @requires_running_guest(lambda a: f"feature.send({a['text']!r})")
    async def send(self, text: str, loud: bool = False) -> None:
        """Send ``text``."""
        self.sent.append(text)


def test_a_running_guest_gets_the_call() -> None:
    feature = Feature(Facts())
    asyncio.run(feature.send("ls"))
    assert feature.sent == ["ls"]


def test_a_paused_or_halted_guest_refuses_before_the_body_runs() -> None:
    feature = Feature(Facts(state=RunState.PAUSED))
    with pytest.raises(PetriError, match=r"^feature.send\('ls'\): VM vm-1 is paused, the guest would not read it; "
                                         r"resume\(\) first$"):
        asyncio.run(feature.send("ls"))
    feature.vm = Facts(state=RunState.HALTED, last_halt=Halt(HaltReason.POWER_OFF, "poweroff", 1.0))
    with pytest.raises(PetriError, match=r"^feature.send\('x'\): VM vm-1 is halted \(POWER_OFF\); reset\(\) it first$"):
        asyncio.run(feature.send(text="x"))
    assert feature.sent == []


def test_a_precondition_keeps_the_signature_and_docstring() -> None:
    import inspect

    assert list(inspect.signature(Feature.send).parameters) == ["self", "text", "loud"]
    assert Feature.send.__doc__ == "Send ``text``."


def test_an_unusable_vm_refuses_with_its_own_reason() -> None:
    class Vm:
        def __init__(self) -> None:
            self.calls = 0

        def _check_usable(self) -> None:
            if self.calls:
                raise PetriError("VM vm-1 was torn down")

        @requires_usable
        async def watch(self) -> None:
            self.calls += 1

    vm = Vm()
    asyncio.run(vm.watch())
    with pytest.raises(PetriError, match="was torn down"):
        asyncio.run(vm.watch())
    assert vm.calls == 1


def test_a_replay_call_outside_a_replay_says_how_to_get_one() -> None:
    class Vm:
        name = "vm-1"

        def __init__(self, runtime: object) -> None:
            self.runtime = runtime

        @requires_replay
        async def seek(self, where: int) -> int:
            return where

    class Recording:
        recorder = object()

    class Replay:
        def reverse_step(self) -> None: ...

    with pytest.raises(NotSupported, match=r"^seek\(\) works in a replay; VM vm-1 is not one \(launch with "
                                           r"record=True, then call replay\(\)\)$"):
        asyncio.run(Vm(object()).seek(5))
    with pytest.raises(NotSupported, match=r"\(call replay\(\) to replay it\)$"):
        asyncio.run(Vm(Recording()).seek(5))
    assert asyncio.run(Vm(Replay()).seek(5)) == 5
