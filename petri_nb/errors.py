"""The exceptions petri_nb raises: every one is a PetriError, so callers catch one type.

    PetriError
    ├── BadArgument (also ValueError)       a public call got a value it cannot take
    ├── LaunchError                          the VM could not be started
    ├── PetriTimeout (also TimeoutError)     a wait expired
    ├── VmHalted                             the VM halted under a call (``.halt``)
    ├── BreakpointHit                        the guest stopped at a breakpoint under a call (``.stop``)
    ├── ConsoleFailure                       ``console.expect(fail=...)`` saw a failure pattern
    ├── VmGone                               QEMU disappeared
    ├── AgentError                           a guest agent call failed
    │   └── QgaError                         qemu-ga answered with an error (``.error_class``)
    ├── NotSupported                         the backend has no analog for the call
    ├── QemuRefused                          QEMU answered a QMP command with an error (``.error``)
    ├── InspectPathError (also KeyError)     ``node[path]`` named no child
    ├── SaveError                            a timeline or snapshot could not be written
    └── NotebookFailed                       a headless notebook's cell raised
"""

from __future__ import annotations

from typing import Any


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

    def __init__(self, halt: Any, during: str = "") -> None:  # a petri_nb.Halt
        self.halt = halt
        where = f" during {during}" if during else ""
        super().__init__(f"VM halted{where}: {halt.reason.name} ({halt.detail})")


class BreakpointHit(PetriError):
    """The guest stopped at a breakpoint while a call was pending; ``stop`` says where."""

    def __init__(self, stop: Any, during: str = "") -> None:  # a petri_nb.model.Stop
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


class QemuRefused(PetriError):
    """QEMU answered a QMP command with an error; ``error`` is qemu.qmp's ExecuteError."""

    def __init__(self, cmd: str, error: Exception) -> None:
        self.cmd = cmd
        self.error = error
        super().__init__(f"QEMU refused {cmd}: {error}")


class InspectPathError(PetriError, KeyError):
    """``node[path]`` named a child that does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class SaveError(PetriError):
    """A timeline or snapshot could not be written (e.g. the disk is full); earlier files are intact."""


class NotebookFailed(PetriError):
    """A notebook cell raised; the partly executed notebook and its HTML are still written."""


class QgaError(AgentError):
    """The guest agent answered a command with an error; its class and description are kept."""

    def __init__(self, command: str, error_class: str, desc: str) -> None:
        self.command = command
        self.error_class = error_class
        self.desc = desc
        super().__init__(f"guest agent {command}: {error_class}: {desc}")
