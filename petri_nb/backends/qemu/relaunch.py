"""A new kernel command line for the next restart: QEMU reads ``-append`` only at start-up.

The command line of a direct-booted kernel lives in fw_cfg, filled once when QEMU
starts; ``system_reset`` boots the same one again and no QMP command changes it.
So, as petri's ``update_command_line`` "applies at the next restart", the next
``reset()`` after an update starts a fresh QEMU from the updated argv (same run
dir, same sockets) and swaps it in the way restore_state() swaps in a restored
one. The guest boots from scratch, as after a reset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import PetriError
from . import migration

if TYPE_CHECKING:
    from .runtime import QemuRuntime


def set_command_line(rt: QemuRuntime, command_line: str) -> None:
    """Put ``command_line`` in the argv used for the next QEMU start."""
    if not isinstance(command_line, str) or "\n" in command_line or "\0" in command_line:
        raise PetriError(f"the kernel command line must be a one-line string, not {command_line!r}")
    argv = rt.argv
    if "-append" in argv:
        argv[argv.index("-append") + 1] = command_line
    elif "-kernel" in argv:
        argv[argv.index("-kernel") + 2:argv.index("-kernel") + 2] = ["-append", command_line]
    else:
        raise PetriError("update_command_line() needs a direct-boot (-kernel) guest")


async def relaunch(rt: QemuRuntime) -> None:
    """Replace rt's QEMU by a fresh one started from ``rt.argv`` and let it run."""
    fresh = await migration.start_replacement(rt, what="relaunch")  # starts paused (-S), like any launch
    await migration.adopt(rt, fresh)
    rt.hotplug.plugged.clear()  # the new QEMU has only the command line's devices
    await rt._execute("cont")
