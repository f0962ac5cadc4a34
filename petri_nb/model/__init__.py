"""Values with no I/O: what a halt, a boot event, a run state, an inspect tree, a diagnosis and a
screen are. Every other layer speaks in these; nothing here starts a process or awaits anything."""

from .boot_event import BootEvent
from .diagnosis import Diagnosis
from .halt import Halt, HaltReason, Stop
from .inspect_node import InspectNode, inspect_diff
from .run_state import RunState

__all__ = ["BootEvent", "Diagnosis", "Halt", "HaltReason", "InspectNode", "RunState", "Stop", "inspect_diff"]
