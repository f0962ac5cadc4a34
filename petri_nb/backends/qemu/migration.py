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
from collections.abc import Awaitable, Callable
from pathlib import Path

from ...errors import PetriError, PetriTimeout, QemuRefused
from .instance import QemuInstance
from .screen import Execute

#: Hands a file descriptor to QEMU over the QMP socket (SCM_RIGHTS), before a ``getfd``.
SendFd = Callable[[int], None]
Step = Callable[[], Awaitable[None]]

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


async def save(execute: Execute, send_fd: SendFd, status: Callable[[], Awaitable[str]],
               pause: Step, resume: Step) -> bytes:
    """The VM's state as one migration stream; a running VM is paused for it and resumed after
    (``pause``/``resume`` go through gdb when it is attached)."""
    state = await status()
    if state in ("inmigrate", "finish-migrate"):
        raise PetriError(f"cannot save state while QEMU is {state}")
    was_running = state == "running"
    try:  # the resume below runs on every way out, a cancellation during pause() included
        if was_running:
            await pause()
        await execute("migrate-set-parameters", {"max-bandwidth": MAX_BANDWIDTH})
        rfd = await _pipe_for_qemu(send_fd, execute, "petri-save", qemu_reads=False)
        reading = asyncio.ensure_future(asyncio.to_thread(_read_all, rfd))
        try:
            await _migrate_out(execute)
        finally:
            data = await reading  # QEMU closes its end when migration ends either way
    finally:
        if was_running:
            await resume_once_finalized(resume, status)
    return data


async def resume_once_finalized(resume: Step, status: Callable[[], Awaitable[str]]) -> None:
    """``resume`` after a migration out. QEMU 7.2 reports the migration completed a moment
    before it moves the VM from finish-migrate on, and refuses ``cont`` in between ("Migration
    is not finalized yet"); only a refusal pays for waiting that out, as asking first stalls
    QEMU's finishing migration thread now and then (40-50 ms, bench/RESULTS.md)."""
    try:
        await resume()
        return
    except QemuRefused:
        if await status() != "finish-migrate":
            raise
    await _run_state_after("finish-migrate", status, "finalizing the migration")
    await resume()


async def _run_state_after(state: str, status: Callable[[], Awaitable[str]], what: str) -> str:
    """Poll QEMU's run state until it has left ``state`` (a migration's own); returns the new one.
    Polling: QEMU 7.2 sends no event as a migration ends without the events capability."""
    deadline = time.monotonic() + MIGRATE_TIMEOUT
    while (now := await status()) == state:
        if time.monotonic() > deadline:
            raise PetriTimeout(f"{what} did not finish within {MIGRATE_TIMEOUT:g} s")
        await asyncio.sleep(POLL)
    return now


async def _migrate_out(execute: Execute) -> None:
    """Migrate to QEMU's fd ``petri-save`` until done; on any failure cancel it and close that fd
    (a migrate QEMU refused never took it: a pipe's reader would wait for EOF forever)."""
    try:
        await execute("migrate", {"uri": "fd:petri-save"})
        await _wait_migrated(execute)
    except BaseException:
        with contextlib.suppress(Exception):
            await execute("migrate_cancel")
        with contextlib.suppress(Exception):
            await execute("closefd", {"fdname": "petri-save"})
        raise


async def _wait_migrated(execute: Execute) -> None:
    deadline = time.monotonic() + MIGRATE_TIMEOUT
    while True:
        info = await execute("query-migrate")
        status = info.get("status")  # type: ignore[union-attr]
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise PetriError(f"saving state failed: {info.get('error-desc', status)}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise PetriTimeout(f"saving state did not finish within {MIGRATE_TIMEOUT:g} s")
        await asyncio.sleep(POLL)  # polling query-migrate: QEMU 7.2 sends no event without a capability


async def save_to_file(execute: Execute, send_fd: SendFd, path: Path) -> int:
    """Migrate a paused VM's state straight into the new file ``path`` (QEMU writes it: no copy
    through us); returns its size. The caller pauses and resumes around it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        send_fd(fd)
        await execute("getfd", {"fdname": "petri-save"})
    finally:
        os.close(fd)
    await execute("migrate-set-parameters", {"max-bandwidth": MAX_BANDWIDTH})
    await _migrate_out(execute)
    return path.stat().st_size


async def load_file(inst: QemuInstance, path: Path) -> str:
    """As ``load``, QEMU reading the stream from the file ``path`` itself (a boot cache entry)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if os.pread(fd, len(STREAM_MAGIC), 0) != STREAM_MAGIC:
            raise PetriError(f"{path} is not a QEMU migration stream")
        inst.qmp.send_fd_scm(fd)
        await inst.before_exit(inst.qmp.execute("getfd", {"fdname": "petri-restore"}), "passing the state file")
    finally:
        os.close(fd)
    return await _incoming(inst, "petri-restore")


async def _pipe_for_qemu(send_fd: SendFd, execute: Execute, fdname: str, *, qemu_reads: bool) -> int:
    """A pipe whose one end QEMU gets as ``fdname`` (for an ``fd:`` URI); returns our end."""
    rfd, wfd = os.pipe()
    theirs, ours = (rfd, wfd) if qemu_reads else (wfd, rfd)
    try:
        send_fd(theirs)
        await execute("getfd", {"fdname": fdname})
    except BaseException:
        os.close(ours)
        raise
    finally:
        os.close(theirs)
    return ours


async def load(inst: QemuInstance, data: bytes) -> str:
    """Feed the stream to a QEMU started with ``-incoming defer``; returns the run state it ends
    in (``paused``, ``shutdown``...). Only then may it replace the VM's QEMU, so bad bytes
    leave the VM as it was."""
    wfd = await _pipe_for_qemu(
        inst.qmp.send_fd_scm, lambda cmd, args: inst.before_exit(inst.qmp.execute(cmd, args), "passing the state pipe"),
        "petri-restore", qemu_reads=True)
    writing = asyncio.ensure_future(asyncio.to_thread(_write_all, wfd, data))
    try:
        return await _incoming(inst, "petri-restore")
    finally:
        await writing


async def _incoming(inst: QemuInstance, fdname: str) -> str:
    """Start the incoming migration from QEMU's fd ``fdname`` and wait until it ends."""
    await inst.before_exit(inst.qmp.execute("migrate-incoming", {"uri": f"fd:{fdname}"}),
                           "starting the incoming migration")

    async def status() -> str:
        return (await inst.before_exit(inst.qmp.execute("query-status"), "loading the state"))["status"]

    return await _run_state_after("inmigrate", status, "loading the state")


def check_stream(data: object) -> bytes:
    """The bytes of a migration stream, or a PetriError saying what was passed instead."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PetriError(f"restore_state() needs the bytes from save_state(), not {type(data).__name__}")
    data = bytes(data)
    if not data.startswith(STREAM_MAGIC):
        raise PetriError(
            f"restore_state(): these {len(data)} bytes are not a QEMU migration stream "
            f"(it starts with {STREAM_MAGIC!r}); pass what save_state() returned"
        )
    return data
