"""petri_nb: debug virtual machines from Jupyter notebooks.

A petri-style runtime (launch, reset, wait for a typed halt, race calls against
halts) over real QEMU, with timelines as pandas DataFrames.
"""

from . import plot
from .compare import compare
from .errors import (
    AgentError,
    BreakpointHit,
    ConsoleFailure,
    LaunchError,
    NotSupported,
    PetriError,
    PetriTimeout,
    VmGone,
    VmHalted,
)
from .flaky import flakiness
from .guests import Disk, Guest, Nic, register_guest
from .halt import Halt, HaltReason
from .introspect import InspectNode, inspect_diff
from .keyboard import AsyncKeyboard, Keyboard
from .needles import Needle, ScreenMatch
from .persist import read_timelines
from .run_state import RunState
from .runs_report import runs_report
from .vm import AsyncVm, Vm, launch, launch_async, replay, replay_async

__all__ = [
    "AgentError",
    "AsyncKeyboard",
    "AsyncVm",
    "BreakpointHit",
    "ConsoleFailure",
    "Disk",
    "Guest",
    "Halt",
    "HaltReason",
    "InspectNode",
    "Keyboard",
    "LaunchError",
    "Needle",
    "NotSupported",
    "Nic",
    "PetriError",
    "PetriTimeout",
    "RunState",
    "ScreenMatch",
    "Vm",
    "VmGone",
    "VmHalted",
    "compare",
    "flakiness",
    "inspect_diff",
    "launch",
    "launch_async",
    "plot",
    "read_timelines",
    "register_guest",
    "replay",
    "replay_async",
    "runs_report",
]


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext petri_nb`` registers the ``%petri`` / ``%%petri`` magics (imported lazily: IPython is optional)."""
    from .magics import load_ipython_extension as load

    load(ipython)
