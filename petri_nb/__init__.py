"""petri_nb: debug virtual machines from Jupyter notebooks.

A petri-style runtime (launch, reset, wait for a typed halt, race calls against
halts) over real QEMU, with timelines as pandas DataFrames.
"""

from .errors import AgentError, LaunchError, NotSupported, PetriError, PetriTimeout, VmGone, VmHalted
from .halt import Halt, HaltReason
from .vm import AsyncVm, Vm, launch, launch_async

__all__ = [
    "AgentError",
    "AsyncVm",
    "Halt",
    "HaltReason",
    "LaunchError",
    "NotSupported",
    "PetriError",
    "PetriTimeout",
    "Vm",
    "VmGone",
    "VmHalted",
    "launch",
    "launch_async",
]
