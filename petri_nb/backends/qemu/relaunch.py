"""A new kernel command line for the next restart: QEMU reads ``-append`` only at start-up.

The command line of a direct-booted kernel lives in fw_cfg, filled once when QEMU
starts; ``system_reset`` boots the same one again and no QMP command changes it.
So, as petri's ``update_command_line`` "applies at the next restart", the next
``reset()`` after an update starts a fresh QEMU from the updated argv (same run
dir, same sockets) and swaps it in the way restore_state() swaps in a restored
one. The guest boots from scratch, as after a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING

from ...errors import PetriError
from . import migration
from .process import QemuProcess

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


class _Fresh(migration._Incoming):
    """A second QEMU booting from scratch (no ``-incoming``) that becomes the VM."""

    async def start(self) -> None:
        rundir = self.rt.rundir
        assert rundir is not None
        conn: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.get_running_loop().create_future())

        def on_console(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if not conn.done():
                conn.set_result((reader, writer))

        for sock in ("qmp.sock", "console.sock"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(rundir / sock)
        server = await asyncio.start_unix_server(on_console, str(rundir / "console.sock"))
        try:
            await self.qmp.start_server(str(rundir / "qmp.sock"))
            self.proc = await QemuProcess.spawn(list(self.rt.argv), cwd=str(rundir))  # starts paused (-S)
            self.exited = asyncio.ensure_future(self.proc.wait())
            await self._before_exit(self.qmp.accept(), "connecting to QMP")
            self.reader, self.writer = await self._before_exit(conn, "connecting the console")
        finally:
            server.close()


async def relaunch(rt: QemuRuntime) -> None:
    """Replace rt's QEMU by a fresh one started from ``rt.argv`` and let it run."""
    fresh = _Fresh(rt)
    try:
        await fresh.start()
    except BaseException:
        await fresh.discard()
        raise
    await migration._adopt(rt, fresh)
    rt.hotplug.plugged.clear()  # the new QEMU has only the command line's devices
    await rt._execute("cont")
