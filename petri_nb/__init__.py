"""petri_nb: debug virtual machines from Jupyter notebooks.

A petri-style runtime (launch, reset, wait for a typed halt, race calls against
halts) over real QEMU, with timelines as pandas DataFrames.
"""

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from typing import Any

from .analysis import plot
from .analysis.compare import compare
from .analysis.flakiness import flakiness
from .analysis.petri_results import read_petri_results
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
from .vm.keyboard import AsyncKeyboard, Keyboard
from .vm.needles import Needle, ScreenMatch

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


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import petri_nb.persist`` and ``from petri_nb.report import run`` still work: the old name is
    the module at its new home (the same object, so nothing is loaded twice)."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.partition(".")
        if package != __name__ or name not in _MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        module = importlib.import_module(_MOVED[spec.name.partition(".")[2]])
        spec.loader_state = (module.__spec__, module.__loader__)  # the machinery overwrites them
        return module

    def exec_module(self, module: Any) -> None:
        """Already executed at its new home: only its own spec and loader are put back."""
        module.__spec__, module.__loader__ = module.__spec__.loader_state


sys.meta_path.insert(0, _MovedModules())  # before the path finders: the old files are gone


__all__ = [
    "AgentError",
    "AsyncKeyboard",
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
    "Keyboard",
    "LaunchError",
    "Needle",
    "Nic",
    "NotSupported",
    "NotebookFailed",
    "PetriError",
    "PetriTimeout",
    "QemuRefused",
    "QgaError",
    "RunState",
    "SaveError",
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
    "read_petri_results",
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
