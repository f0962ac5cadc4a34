"""petri_nb: debug virtual machines from Jupyter notebooks.

A petri-style runtime (launch, reset, wait for a typed halt, race calls against
halts) over real QEMU, with timelines as pandas DataFrames.
"""

import importlib
from typing import Any

from .analysis import plot
from .analysis.compare import compare
from .analysis.flakiness import flakiness
from .analysis.runs_report import runs_report
from .errors import (
    AgentError,
    BadArgument,
    BreakpointHit,
    ConsoleFailure,
    InspectPathError,
    LaunchError,
    NotebookFailed,
    NotSupported,
    PetriError,
    PetriTimeout,
    QemuRefused,
    QgaError,
    SaveError,
    VmGone,
    VmHalted,
)
from .guests import Disk, Guest, Nic, register_guest
from .model import BootEvent, Diagnosis, Halt, HaltReason, InspectNode, RunState, inspect_diff
from .records import read_timelines
from .vm import AsyncVm, Vm, facade, launch, launch_async, replay, replay_async

#: Modules the README names by their old flat paths (``petri_nb.report.run``...), where they live now.
_MOVED = {
    "agent": "petri_nb.vm.agent",
    "diagnosis": "petri_nb.model.diagnosis",
    "persist": "petri_nb.records.persist",
    "petri_log": "petri_nb.analysis.petri_log",
    "qga": "petri_nb.vm.qga",
    "report": "petri_nb.headless",
    "timetravel": "petri_nb.vm.time_travel",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return importlib.import_module(_MOVED[name])
    raise AttributeError(f"module 'petri_nb' has no attribute {name!r}")


__all__ = [
    "AgentError",
    "AsyncVm",
    "BadArgument",
    "BootEvent",
    "BreakpointHit",
    "ConsoleFailure",
    "Diagnosis",
    "Disk",
    "Guest",
    "Halt",
    "HaltReason",
    "InspectNode",
    "InspectPathError",
    "LaunchError",
    "Nic",
    "NotSupported",
    "NotebookFailed",
    "PetriError",
    "PetriTimeout",
    "QemuRefused",
    "QgaError",
    "RunState",
    "SaveError",
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


def _live_view(vm: Vm) -> Any:
    from .notebook.widget import VmView  # anywidget only when a VM is shown

    return VmView(vm)


facade.live_view = _live_view


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext petri_nb`` registers the ``%petri`` / ``%%petri`` magics (imported lazily: IPython is optional)."""
    from .notebook.magics import load_ipython_extension as load

    load(ipython)
