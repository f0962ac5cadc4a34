"""Declarative preconditions for VM calls, after qemu.qmp's ``@require(Runstate.X)``.

A call that makes no sense in some state says so where it is defined, and refuses before its
body starts, with the message that state calls for (what the VM is, and what to do), instead
of a check written into each body.

``requires_usable``: the VM is neither torn down nor gone (VmCore's race checks the same for
every runtime call; this is for calls that start work of their own, such as a watchdog).
``requires_running_guest``: the guest is not paused or halted, for input that a stopped guest
would never read. ``requires_replay``: the VM replays a recording (seek, reverse steps).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from ..errors import NotSupported, PetriError
from ..model.halt import Halt
from ..model.run_state import RunState

F = TypeVar("F", bound=Callable[..., Coroutine[Any, Any, Any]])
#: The call as its refusal names it, from its bound arguments (``{"text": "ls", ...}``).
Describe = Callable[[dict[str, Any]], str]


class Usable(Protocol):
    """The VM itself (VmEvents): its own rule for torn down and lost."""

    def _check_usable(self) -> None: ...


class Stated(Protocol):
    """The facts a state refusal reads (a feature's CallContext)."""

    name: str

    @property
    def state(self) -> RunState: ...

    @property
    def last_halt(self) -> Halt | None: ...


def requires_usable(fn: F) -> F:
    """The VM's own method refuses on a torn-down VM (PetriError) or a lost one (VmGone)."""

    @functools.wraps(fn)
    async def checked(self: Usable, *args: Any, **kwargs: Any) -> Any:
        self._check_usable()
        return await fn(self, *args, **kwargs)

    return checked  # type: ignore[return-value]


def requires_running_guest(describe: Describe) -> Callable[[F], F]:
    """A feature's call (its ``vm`` is the VM's CallContext) refuses on a paused or halted VM,
    naming itself by ``describe`` of its arguments."""

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        async def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
            facts: Stated = self.vm
            state = facts.state
            if state is RunState.PAUSED or state is RunState.HALTED:
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
                what = describe(bound.arguments)
                if state is RunState.PAUSED:
                    raise PetriError(f"{what}: VM {facts.name} is paused, the guest would not read it; "
                                     "resume() first")
                halt = facts.last_halt
                why = f" ({halt.reason.name})" if halt else ""
                raise PetriError(f"{what}: VM {facts.name} is halted{why}; reset() it first")
            return await fn(self, *args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorate


def refuse_unless_replay(vm: Any, call: str) -> None:
    """NotSupported unless ``vm`` replays a recording, saying how to get a replay of it."""
    runtime = vm.runtime
    if not hasattr(runtime, "reverse_step"):
        how = ("call replay() to replay it" if getattr(runtime, "recorder", None) is not None
               else "launch with record=True, then call replay()")
        raise NotSupported(f"{call}() works in a replay; VM {vm.name} is not one ({how})")


def requires_replay(fn: F) -> F:
    """The VM's own method works in a replay only (petri_nb.vm.time_travel)."""

    @functools.wraps(fn)
    async def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        refuse_unless_replay(self, fn.__name__)
        return await fn(self, *args, **kwargs)

    return checked  # type: ignore[return-value]
