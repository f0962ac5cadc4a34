"""One QEMU process, connected: its QMP session and its console stream, CPUs still stopped (-S).

Launch, restore_state() and update_command_line() all start a QEMU the same way; only
the argv and what a failure is called differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

from qemu.qmp import ExecuteError, QMPClient

from ...errors import PetriError, PetriTimeout
from ...runtime.abandon import abandon
from .process import QemuProcess

#: How long a QEMU that hung up may take to exit and say why.
EXIT_GRACE = 3.0


def qemu_version(qmp: QMPClient) -> str | None:
    """QEMU's version as its QMP greeting gives it ("7.2.22"), None before it connected."""
    try:
        v = qmp.greeting.QMP.version["qemu"]  # type: ignore[union-attr]
        return f"{v['major']}.{v['minor']}.{v['micro']}"
    except (AttributeError, KeyError, TypeError):
        return None


class QemuInstance:
    """A started QEMU. ``failure`` names the operation in errors ("launch", "restore")."""

    def __init__(self, qmp: QMPClient, failure: type[PetriError], what: str, timeout: float) -> None:
        self.qmp = qmp
        self.discarded = False  # set by discard(): a QEMU spawned after it is killed at once
        self._failure = failure
        self._what = what
        self._timeout = timeout
        self.proc: QemuProcess | None = None
        self.exited: asyncio.Task[int] | None = None
        self.console_reader: asyncio.StreamReader | None = None
        self.console_writer: asyncio.StreamWriter | None = None
        self._track: set[QemuInstance] = set()

    @classmethod
    async def start(cls, qmp: QMPClient, argv: list[str], rundir: Path, *, failure: type[PetriError],
                    what: str, timeout: float, track: set[QemuInstance] | None = None) -> QemuInstance:
        """Listen on the run directory's sockets, spawn QEMU and wait until it connected to both.

        ``track`` holds the instance from before its process exists until it is discarded, so
        an owner tearing down meanwhile can discard it too: no QEMU outlives its VM."""
        inst = cls(qmp, failure, what, timeout)
        if track is not None:
            track.add(inst)
            inst._track = track
        try:
            await inst._connect(argv, rundir)
        except BaseException:
            await inst.discard()
            raise
        return inst

    async def _connect(self, argv: list[str], rundir: Path) -> None:
        conn: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.get_running_loop().create_future()
        )

        def on_console(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if not conn.done():
                conn.set_result((reader, writer))

        # A QEMU this one replaces keeps its connections; the paths are only for connecting.
        for sock in ("qmp.sock", "console.sock"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(rundir / sock)
        server = await asyncio.start_unix_server(on_console, str(rundir / "console.sock"))
        try:
            await self.qmp.start_server(str(rundir / "qmp.sock"))
            self.proc = await QemuProcess.spawn(argv, cwd=str(rundir))
            if self.discarded:  # its owner was torn down while it was being spawned
                self.proc.kill()
            self.exited = asyncio.ensure_future(self.proc.wait())
            await self.before_exit(self.qmp.accept(), "waiting for QEMU's QMP connection")
            self.console_reader, self.console_writer = await self.before_exit(conn, "waiting for the console")
        finally:
            server.close()

    async def before_exit(self, aw: Any, what: str) -> Any:
        """Await ``aw`` unless QEMU exits first (e.g. it rejected its command line or the state)."""
        assert self.exited is not None and self.proc is not None
        task = asyncio.ensure_future(aw)
        try:
            done, _ = await asyncio.wait({task, self.exited}, timeout=self._timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled (Ctrl-C, teardown): the wait must not outlive us, pending
            abandon(task)
            raise
        if task in done and task.exception() is None:
            return task.result()
        abandon(task)
        if done:  # QEMU hung up or exited: let it say why
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), EXIT_GRACE)
        if self.exited.done():
            raise self._failure(f"{self._what} failed while {what}: {self.proc.exit_description()}")
        if task in done:
            exc = task.exception()
            desc = str(exc) if isinstance(exc, ExecuteError) else repr(exc)
            raise self._failure(f"{self._what} failed while {what}: {desc}")
        raise PetriTimeout(f"{self._what} timed out after {self._timeout:g} s {what}")

    async def stop(self, grace: float) -> None:
        """Ask QEMU to quit, kill it if it has not gone within ``grace``, close its connections."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.qmp.execute("quit"), grace)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.proc.wait(), grace)
        await self.discard()

    async def discard(self) -> None:
        """Kill a QEMU that did not become (or no longer is) the VM's."""
        self.discarded = True
        self._track.discard(self)
        if self.proc is not None:
            self.proc.kill()
            await self.proc.wait()
        with contextlib.suppress(Exception):
            await self.qmp.disconnect()
        for writer in (self.console_writer,):
            if writer is not None:
                writer.close()
