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
from typing import TYPE_CHECKING

from qemu.qmp import QMPClient

from ...errors import PetriError, PetriTimeout
from . import display, gdb
from .instance import QemuInstance
from .screen import Execute

if TYPE_CHECKING:
    from .runtime import QemuRuntime

#: QEMU throttles migration to 32 MiB/s by default; a local pipe takes any rate.
MAX_BANDWIDTH = 1 << 40
MIGRATE_TIMEOUT = 120.0
POLL = 0.005
#: How long the QEMU a restore replaces gets to quit before it is killed.
OLD_QEMU_GRACE = 3.0
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


async def _pass_fd(qmp: QMPClient, execute: Execute, fd: int, name: str) -> None:
    qmp.send_fd_scm(fd)
    await execute("getfd", {"fdname": name})


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
        rfd = await _pipe_for_qemu(rt.qmp, rt._execute, "petri-save", qemu_reads=False)
        reading = asyncio.ensure_future(asyncio.to_thread(_read_all, rfd))
        try:
            await rt._execute("migrate", {"uri": "fd:petri-save"})
            await _wait_migrated(rt)
        except BaseException:
            with contextlib.suppress(Exception):
                await rt._execute("migrate_cancel")
            # A migrate QEMU refused never took the pipe: close QEMU's end so the reader sees EOF.
            with contextlib.suppress(Exception):
                await rt._execute("closefd", {"fdname": "petri-save"})
            raise
        finally:
            data = await reading  # QEMU closes its end when migration ends either way
    finally:
        if was_running:
            await rt.resume()  # through gdb when it is attached
    return data


async def _wait_migrated(rt: QemuRuntime) -> None:
    deadline = time.monotonic() + MIGRATE_TIMEOUT
    while True:
        info = await rt._execute("query-migrate")
        status = info.get("status")  # type: ignore[union-attr]
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise PetriError(f"saving state failed: {info.get('error-desc', status)}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise PetriTimeout(f"saving state did not finish within {MIGRATE_TIMEOUT:g} s")
        await asyncio.sleep(POLL)  # polling query-migrate: QEMU 7.2 sends no event without a capability


async def _pipe_for_qemu(qmp: QMPClient, execute: Execute, fdname: str, *, qemu_reads: bool) -> int:
    """A pipe whose one end QEMU gets as ``fdname`` (for an ``fd:`` URI); returns our end."""
    rfd, wfd = os.pipe()
    theirs, ours = (rfd, wfd) if qemu_reads else (wfd, rfd)
    try:
        await _pass_fd(qmp, execute, theirs, fdname)
    except BaseException:
        os.close(ours)
        raise
    finally:
        os.close(theirs)
    return ours


async def start_replacement(rt: QemuRuntime, extra_args: tuple[str, ...] = (), what: str = "restore") -> QemuInstance:
    """A second QEMU from rt's command line (plus ``extra_args``) that may become the VM."""
    assert rt.rundir is not None
    return await QemuInstance.start(QMPClient(rt.name), [*rt.argv, *extra_args], rt.rundir,
                                    failure=PetriError, what=what, timeout=MIGRATE_TIMEOUT)


async def _load(inst: QemuInstance, data: bytes) -> str:
    """Feed the stream; returns the run state QEMU ends in (``paused``, ``shutdown``...)."""
    wfd = await _pipe_for_qemu(
        inst.qmp, lambda cmd, args: inst.before_exit(inst.qmp.execute(cmd, args), "passing the state pipe"),
        "petri-restore", qemu_reads=True)
    writing = asyncio.ensure_future(asyncio.to_thread(_write_all, wfd, data))
    try:
        await inst.before_exit(inst.qmp.execute("migrate-incoming", {"uri": "fd:petri-restore"}),
                               "starting the incoming migration")
        deadline = time.monotonic() + MIGRATE_TIMEOUT
        while True:
            status = (await inst.before_exit(inst.qmp.execute("query-status"), "loading the state"))["status"]
            if status != "inmigrate":
                return status
            if time.monotonic() > deadline:
                raise PetriTimeout(f"loading the state did not finish within {MIGRATE_TIMEOUT:g} s")
            await asyncio.sleep(POLL)  # polling: no completion event without the events capability
    finally:
        await writing


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
    incoming = await start_replacement(rt, ("-incoming", "defer"))
    try:
        status = await _load(incoming, data)
    except BaseException:
        await incoming.discard()
        raise
    await gdb.detach(rt)  # its stub goes with the old QEMU; breakpoints are not part of the state
    await adopt(rt, incoming)
    return status


async def adopt(rt: QemuRuntime, new: QemuInstance) -> None:
    """Make the restored QEMU this VM's process; the old one is quit without a ``gone`` report."""
    old = await rt.attach(new)
    rt._cpu_log_offset = 0  # the new QEMU truncated cpu.log
    rt.mapper.restarted()
    if old is not None:
        with display.view_sockets_kept(rt.rundir):  # the old QEMU would unlink the new one's control socket
            await old.stop(OLD_QEMU_GRACE)
