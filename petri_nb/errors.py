"""The exceptions petri_nb raises: every one is a PetriError, so callers catch one type."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .halt import Halt, Stop


class PetriError(Exception):
    """Base of every error petri_nb raises on purpose."""


class BadArgument(PetriError, ValueError):
    """A public call got a value it cannot take (wrong type, NaN, a negative time, a bad pattern)."""


class LaunchError(PetriError):
    """The VM could not be started (bad options, missing QEMU, guest never got ready)."""


class PetriTimeout(PetriError, TimeoutError):
    """A wait expired; the message names what was awaited."""


class VmHalted(PetriError):
    """The VM halted while a call was pending; ``halt`` says why."""

    def __init__(self, halt: Halt, during: str = "") -> None:
        self.halt = halt
        where = f" during {during}" if during else ""
        super().__init__(f"VM halted{where}: {halt.reason.name} ({halt.detail})")


class BreakpointHit(PetriError):
    """The guest stopped at a breakpoint while a call was pending; ``stop`` says where."""

    def __init__(self, stop: Stop, during: str = "") -> None:
        self.stop = stop
        where = f" during {during}" if during else ""
        super().__init__(f"breakpoint hit{where} at 0x{stop.addr:x}; the guest is stopped: continue_() or step()")


class ConsoleFailure(PetriError):
    """``console.expect(..., fail=[...])`` saw a failure pattern first; ``match`` is what matched."""

    def __init__(self, message: str, match: object = None) -> None:
        super().__init__(message)
        self.match = match


class VmGone(PetriError):
    """The backend process (QEMU) disappeared; nothing more can be done with this VM."""


class AgentError(PetriError):
    """A guest agent command failed or the agent did not answer."""


class NotSupported(PetriError):
    """The backend has no analog for this call (e.g. OpenHCL-only calls on QEMU)."""
