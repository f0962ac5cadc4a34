"""The blocking faces (Vm, Console, Agent) match their async originals, and the check that says so can fail."""

from __future__ import annotations

import inspect

import pytest

from petri_nb.backends.base import EventSink
from petri_nb.runtime.loop import public_coroutines
from petri_nb.vm.agent import Agent, AsyncAgent
from petri_nb.vm.console import AsyncConsole, Console
from petri_nb.vm.events import BackendSink
from petri_nb.vm.facade import AsyncVm, Vm
from petri_nb.vm.keyboard import AsyncKeyboard, Keyboard

PAIRS = [(AsyncVm, Vm), (AsyncConsole, Console), (AsyncAgent, Agent), (AsyncKeyboard, Keyboard)]
#: Async return types and their blocking counterparts.
SYNC_TYPE = {"AsyncAgent": "Agent", "AsyncConsole": "Console", "AsyncVm": "Vm"}
#: What only the backend calls (EventSink): on the VM's sink, not on the user's VM.
SINK_CALLBACKS = {name for name in dir(EventSink) if not name.startswith("_")}


def _params(fn: object) -> list[tuple[str, object, object]]:
    params = list(inspect.signature(fn).parameters.values())[1:]  # without self
    return [(p.name, p.kind, p.default) for p in params]


def twin_mismatches(async_cls: type, sync_cls: type) -> list[str]:
    """Every public coroutine of ``async_cls`` must have a blocking twin with the same parameters
    and the same (or the blocking counterpart of the) return annotation."""
    problems = []
    for name in public_coroutines(async_cls):
        twin = getattr(sync_cls, name, None)
        if twin is None:
            problems.append(f"{sync_cls.__name__}.{name} is missing")
            continue
        original = getattr(async_cls, name)
        if _params(twin) != _params(original):
            problems.append(f"{sync_cls.__name__}.{name}{inspect.signature(twin)} != {inspect.signature(original)}")
        want = str(inspect.signature(original).return_annotation)
        got = str(inspect.signature(twin).return_annotation)
        if SYNC_TYPE.get(want, want) != got:
            problems.append(f"{sync_cls.__name__}.{name} returns {got}, not {SYNC_TYPE.get(want, want)}")
    return problems


@pytest.mark.parametrize(("async_cls", "sync_cls"), PAIRS, ids=[s.__name__ for _, s in PAIRS])
def test_every_async_method_has_a_blocking_twin_with_the_same_signature(async_cls: type, sync_cls: type) -> None:
    assert twin_mismatches(async_cls, sync_cls) == []


def test_every_plain_public_member_of_asyncvm_is_on_vm() -> None:
    members = {name for name, _ in inspect.getmembers(AsyncVm) if not name.startswith("_")}
    missing = sorted(name for name in members if not hasattr(Vm, name))
    assert missing == []


def test_the_backend_callbacks_are_on_the_vms_sink_not_on_the_vm() -> None:
    assert sorted(SINK_CALLBACKS & set(dir(AsyncVm))) == []
    assert all(callable(getattr(BackendSink, name, None)) for name in SINK_CALLBACKS)


def test_the_twin_check_fails_when_a_twin_is_removed() -> None:
    class Shorter(Vm):
        reset = None  # type: ignore[assignment]

    assert twin_mismatches(AsyncVm, Shorter) == ["Shorter.reset is missing"]


def test_the_twin_check_fails_when_a_twin_signature_changes() -> None:
    class Drifted(Vm):
        def remove_breakpoint(self, where: int) -> None:  # the old drift: int only, returns None
            ...

        def wait_for_halt(self, allow_reset: bool = True, timeout: float | None = None) -> object:
            ...

    problems = twin_mismatches(AsyncVm, Drifted)
    assert any(p.startswith("Drifted.remove_breakpoint returns None") for p in problems)
    assert any(p.startswith("Drifted.wait_for_halt(self, allow_reset") and "= True" in p for p in problems)


def test_a_blocking_twin_keeps_the_async_docstring() -> None:
    assert Vm.wait_for_halt.__doc__ == AsyncVm.wait_for_halt.__doc__
    assert "allow_reset" in (Vm.wait_for_halt.__doc__ or "")
