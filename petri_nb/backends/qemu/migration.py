"""Save and restore a QEMU VM through its migration stream.

QEMU 7.2 has no ``file:`` migration URI, so the stream goes through a pipe whose
one end is handed to QEMU over QMP (``getfd`` + ``fd:`` URI): the state never
touches the disk and no shell is involved. Restoring starts a second QEMU with
the identical command line plus ``-incoming defer`` and feeds it the bytes; only
once it holds the state does it replace the old process, so bad bytes leave the
VM exactly as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import TYPE_CHECKING, Any

from qemu.qmp import ExecuteError, QMPClient

from ...errors import PetriError, PetriTimeout
from . import gdb
from .process import QemuProcess

if TYPE_CHECKING:
    from .runtime import QemuRuntime

#: QEMU throttles migration to 32 MiB/s by default; a local pipe takes any rate.
MAX_BANDWIDTH = 1 << 40
MIGRATE_TIMEOUT = 120.0
POLL = 0.005
#: Every QEMU migration stream starts with this magic (``QEMU_VM_FILE_MAGIC``).
STREAM_MAGIC = b"QEVM"


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BrokenPipeError:
        pass  # QEMU stopped reading: it rejected the stream and says why on stderr
    finally:
        os.close(fd)


async def _pass_fd(qmp: QMPClient, fd: int, name: str) -> None:
    qmp.send_fd_scm(fd)
    await qmp.execute("getfd", {"fdname": name})


async def save(rt: QemuRuntime) -> bytes:
    """The VM's state as one migration stream; a running VM is paused for it and resumed after."""
    status = await rt.status()
    if status in ("inmigrate", "finish-migrate"):
        raise PetriError(f"cannot save state while QEMU is {status}")
    was_running = status == "running"
    if was_running:
        await rt.pause()  # through gdb when it is attached
    try:
        await rt._execute("migrate-set-parameters", {"max-bandwidth": MAX_BANDWIDTH})
        rfd, wfd = os.pipe()
        try:
            await _pass_fd(rt.qmp, wfd, "petri-save")
        except BaseException:
            os.close(rfd)
            raise
        finally:
            os.close(wfd)
        reading = asyncio.ensure_future(asyncio.to_thread(_read_all, rfd))
        try:
            await rt._execute("migrate", {"uri": "fd:petri-save"})
            await _wait_migrated(rt.qmp)
        except BaseException:
            with contextlib.suppress(Exception):
                await rt.qmp.execute("migrate_cancel")
            raise
        finally:
            data = await reading  # QEMU closes its end when migration ends either way
    finally:
        if was_running:
            await rt.resume()  # through gdb when it is attached
    return data


async def _wait_migrated(qmp: QMPClient) -> None:
    deadline = time.monotonic() + MIGRATE_TIMEOUT
    while True:
        info = await qmp.execute("query-migrate")
        status = info.get("status")  # type: ignore[union-attr]
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise PetriError(f"saving state failed: {info.get('error-desc', status)}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise PetriTimeout(f"saving state did not finish within {MIGRATE_TIMEOUT:g} s")
        await asyncio.sleep(POLL)  # polling query-migrate: QEMU 7.2 sends no event without a capability


class _Incoming:
    """A second QEMU, started with ``-incoming defer``, that may become the VM."""

    def __init__(self, rt: QemuRuntime) -> None:
        self.rt = rt
        self.qmp = QMPClient(rt.name)
        self.proc: QemuProcess | None = None
        self.exited: asyncio.Future[int] | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        rundir = self.rt.rundir
        assert rundir is not None
        conn: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.get_running_loop().create_future()
        )

        def on_console(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if not conn.done():
                conn.set_result((reader, writer))

        # The old QEMU keeps its connections; the socket paths are only used to connect.
        for sock in ("qmp.sock", "console.sock"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(rundir / sock)
        server = await asyncio.start_unix_server(on_console, str(rundir / "console.sock"))
        try:
            await self.qmp.start_server(str(rundir / "qmp.sock"))
            self.proc = await QemuProcess.spawn([*self.rt.argv, "-incoming", "defer"], cwd=str(rundir))
            self.exited = asyncio.ensure_future(self.proc.wait())
            await self._before_exit(self.qmp.accept(), "connecting to QMP")
            self.reader, self.writer = await self._before_exit(conn, "connecting the console")
        finally:
            server.close()

    async def _before_exit(self, aw: Any, what: str) -> Any:
        assert self.exited is not None and self.proc is not None
        task = asyncio.ensure_future(aw)
        done, _ = await asyncio.wait({task, self.exited}, timeout=MIGRATE_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if task in done and task.exception() is None:
            return task.result()
        task.cancel()
        if task in done or self.exited in done:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), 3.0)
        if self.exited.done():
            raise PetriError(f"restore failed while {what}: {self.proc.exit_description()}")
        if task in done:
            exc = task.exception()
            desc = str(exc) if isinstance(exc, ExecuteError) else repr(exc)
            raise PetriError(f"restore failed while {what}: {desc}")
        raise PetriTimeout(f"restore timed out after {MIGRATE_TIMEOUT:g} s {what}")

    async def load(self, data: bytes) -> str:
        """Feed the stream; returns the run state QEMU ends in (``paused``, ``shutdown``...)."""
        rfd, wfd = os.pipe()
        try:
            await _pass_fd(self.qmp, rfd, "petri-restore")
        except BaseException:
            os.close(wfd)
            raise
        finally:
            os.close(rfd)
        writing = asyncio.ensure_future(asyncio.to_thread(_write_all, wfd, data))
        try:
            await self._before_exit(self.qmp.execute("migrate-incoming", {"uri": "fd:petri-restore"}),
                                    "starting the incoming migration")
            deadline = time.monotonic() + MIGRATE_TIMEOUT
            while True:
                status = (await self._before_exit(self.qmp.execute("query-status"), "loading the state"))["status"]
                if status != "inmigrate":
                    return status
                if time.monotonic() > deadline:
                    raise PetriTimeout(f"loading the state did not finish within {MIGRATE_TIMEOUT:g} s")
                await asyncio.sleep(POLL)  # polling: no completion event without the events capability
        finally:
            await writing

    async def discard(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            await self.proc.wait()
        with contextlib.suppress(Exception):
            await self.qmp.disconnect()
        if self.writer is not None:
            self.writer.close()


async def restore(rt: QemuRuntime, data: bytes) -> str:
    """Replace the running QEMU by one loaded from ``data``; returns its run state (not resumed)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PetriError(f"restore_state() needs the bytes from save_state(), not {type(data).__name__}")
    data = bytes(data)
    if not data.startswith(STREAM_MAGIC):
        raise PetriError(
            f"restore_state(): these {len(data)} bytes are not a QEMU migration stream "
            f"(it starts with {STREAM_MAGIC!r}); pass what save_state() returned"
        )
    incoming = _Incoming(rt)
    try:
        await incoming.start()
        status = await incoming.load(data)
    except BaseException:
        await incoming.discard()
        raise
    await gdb.detach(rt)  # its stub goes with the old QEMU; breakpoints are not part of the state
    await _adopt(rt, incoming)
    return status


async def _adopt(rt: QemuRuntime, new: _Incoming) -> None:
    """Make the restored QEMU this VM's process; the old one is quit without a ``gone`` report."""
    assert new.proc is not None and new.exited is not None and new.reader is not None
    old_proc, old_qmp, old_console = rt.proc, rt.qmp, rt._console
    for task in rt._tasks:  # watch_exit first of all: the old process is about to exit on purpose
        task.cancel()
    await asyncio.gather(*rt._tasks, return_exceptions=True)
    rt.proc, rt._exited, rt.qmp, rt._console = new.proc, new.exited, new.qmp, new.writer  # type: ignore[assignment]
    rt._cpu_log_offset = 0  # the new QEMU truncated cpu.log
    rt.mapper.restarted()
    rt._tasks = [
        asyncio.ensure_future(rt._watch_exit()),
        asyncio.ensure_future(rt._pump_console(new.reader)),
        asyncio.ensure_future(rt._pump_events()),
    ]
    if old_proc is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old_qmp.execute("quit"), 3.0)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(old_proc.wait(), 3.0)  # (the old exit task went with watch_exit)
        old_proc.kill()
        await old_proc.wait()
    with contextlib.suppress(Exception):
        await old_qmp.disconnect()
    if old_console is not None:
        old_console.close()
