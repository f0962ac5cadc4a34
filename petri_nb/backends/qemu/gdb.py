"""Breakpoints, stepping and memory writes through QEMU's gdbstub, driven by real gdb.

We do not speak the GDB remote protocol ourselves: Debian's gdb does, and we
drive it over its machine interface (gdb/MI), parsing records with pygdbmi.
gdb attaches lazily, on the first call that needs it, to the stub's unix socket
in the VM's run directory (``-gdb unix:...``, see command.py); it runs under the
same parent-death guard as QEMU. While gdb is attached, QEMU's run state and
gdb's must agree, so resuming goes through gdb (``-exec-continue``) rather than
QMP ``cont``, and pausing through gdb (``-exec-interrupt``) rather than QMP
``stop``, which gdb would only learn about later.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from pygdbmi.gdbmiparser import parse_response

from ...errors import NotSupported, PetriError, PetriTimeout
from . import cpu

GDB_TIMEOUT = 15.0


class GdbSession:
    """One gdb process attached to one QEMU gdbstub."""

    def __init__(self, proc: asyncio.subprocess.Process, on_stop: Callable[[dict[str, Any]], None],
                 on_running: Callable[[], None]) -> None:
        self.proc = proc
        self._on_stop = on_stop
        self._on_running = on_running
        self._tokens = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._stopped = asyncio.Event()
        self.running = False
        self.last_stop: dict[str, Any] = {}
        self.breakpoints: dict[int, int] = {}  # address -> gdb breakpoint number
        self.qemu_status: Callable[[], Awaitable[str]] | None = None
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def attach(cls, socket_path: str, on_stop: Callable[[dict[str, Any]], None],
                     on_running: Callable[[], None]) -> GdbSession:
        gdb = shutil.which("gdb")
        if gdb is None:
            raise NotSupported("breakpoints and stepping need gdb; install it with: sudo apt-get install gdb")
        proc = await asyncio.create_subprocess_exec(
            "setpriv", "--pdeathsig", "KILL", "--", gdb, "--interpreter=mi3", "-nx", "-q",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            cwd=os.path.dirname(socket_path), start_new_session=True,
        )
        session = cls(proc, on_stop, on_running)
        try:
            await session.command("-gdb-set mi-async on")
            # Relative to gdb's cwd (the run dir): MI would take quotes literally, and the
            # run dir's name contains the user's VM name.
            await session.command(f"-target-select remote {os.path.basename(socket_path)}")
            await session.wait_stopped()  # attaching stops the guest (QEMU: run state 'paused')
        except BaseException:
            await session.close()
            raise
        return session

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            record = parse_response(line.decode(errors="replace"))
            kind, message, payload = record.get("type"), record.get("message"), record.get("payload")
            if kind == "result" and record.get("token") in self._waiting:
                fut = self._waiting.pop(record["token"])
                if not fut.done():
                    fut.set_result(record)
            elif kind == "notify" and message == "stopped":
                self.running = False
                self.last_stop = payload or {}
                self._stopped.set()
                self._on_stop(self.last_stop)
            elif kind == "notify" and message == "running":
                self.running = True
                self._stopped.clear()
                self._on_running()
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(PetriError("gdb exited"))

    async def command(self, cmd: str, timeout: float = GDB_TIMEOUT) -> dict[str, Any]:
        """Send one MI command; its result record, or PetriError with gdb's message."""
        if self.proc.returncode is not None or self.proc.stdin is None:
            raise PetriError("the gdb session has ended")
        token = next(self._tokens)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[token] = fut
        self.proc.stdin.write(f"{token}{cmd}\n".encode())
        await self.proc.stdin.drain()
        try:
            record = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise PetriTimeout(f"gdb did not answer {cmd.split()[0]} within {timeout:g} s") from None
        finally:
            self._waiting.pop(token, None)
        if record.get("message") == "error":
            raise PetriError(f"gdb: {(record.get('payload') or {}).get('msg', 'error')}")
        return record

    async def wait_stopped(self, timeout: float = GDB_TIMEOUT) -> dict[str, Any]:
        try:
            await asyncio.wait_for(self._stopped.wait(), timeout)
        except TimeoutError:
            raise PetriTimeout(f"the guest did not stop within {timeout:g} s") from None
        return self.last_stop

    async def interrupt(self) -> None:
        """Stop a running guest and wait until gdb has seen the stop."""
        if self.running:
            self._stopped.clear()
            await self.command("-exec-interrupt")
            await self.wait_stopped()

    async def continue_(self) -> None:
        """Let the guest run; with ``qemu_status`` set (QMP query-status), return only once QEMU
        runs it: gdb answers as soon as it has sent the packet, before QEMU acted on it."""
        status = self.qemu_status
        if self.running:
            return
        self._stopped.clear()
        await self.command("-exec-continue")
        self.running = True  # gdb's *running notice follows the result record
        if status is None:
            return
        deadline = time.monotonic() + GDB_TIMEOUT
        while await status() != "running" and not self._stopped.is_set():
            if time.monotonic() > deadline:
                raise PetriTimeout(f"QEMU did not resume within {GDB_TIMEOUT:g} s of gdb's continue")
            await asyncio.sleep(0.002)  # polling query-status: a few ms at most

    async def step(self, timeout: float = GDB_TIMEOUT) -> dict[str, Any]:
        if self.running:
            raise PetriError("step() needs a stopped guest: pause() it or wait for a breakpoint first")
        self._stopped.clear()
        await self.command("-exec-step-instruction")
        return await self.wait_stopped(timeout)

    async def run_until_stop(self, cmd: str, timeout: float = GDB_TIMEOUT) -> dict[str, Any]:
        """Send an execution command (e.g. ``-exec-step-instruction --reverse``) and wait for the stop."""
        if self.running:
            raise PetriError(f"{cmd.split()[0]} needs a stopped guest: pause() it first")
        self._stopped.clear()
        await self.command(cmd)
        return await self.wait_stopped(timeout)

    @contextlib.asynccontextmanager
    async def _stopped_for(self) -> AsyncIterator[None]:
        """gdb (all-stop) changes breakpoints and memory only while the guest is stopped."""
        was_running = self.running
        await self.interrupt()
        try:
            yield
        finally:
            if was_running:
                await self.continue_()

    async def break_at(self, addr: int) -> int:
        if addr in self.breakpoints:
            return self.breakpoints[addr]
        async with self._stopped_for():
            record = await self.command(f"-break-insert *0x{addr:x}")
        number = int(record["payload"]["bkpt"]["number"])
        self.breakpoints[addr] = number
        return number

    async def delete(self, addr: int) -> None:
        number = self.breakpoints.pop(addr, None)
        if number is None:
            have = ", ".join(hex(a) for a in self.breakpoints) or "none"
            raise PetriError(f"no breakpoint at 0x{addr:x}; have {have}")
        async with self._stopped_for():
            await self.command(f"-break-delete {number}")

    async def write_memory(self, addr: int, data: bytes, physical: bool = False) -> None:
        async with self._stopped_for():
            if not physical:
                await self.command(f"-data-write-memory-bytes 0x{addr:x} {data.hex()}")
                return
            await self._phys_mode(1)  # QEMU's gdbstub extension: addresses are guest-physical
            try:
                await self.command(f"-data-write-memory-bytes 0x{addr:x} {data.hex()}")
            finally:
                await self._phys_mode(0)

    async def _phys_mode(self, on: int) -> None:
        await self.command(f'-interpreter-exec console "maintenance packet Qqemu.PhyMemMode:{on}"')

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader


class Debugger:
    """The VM's gdb session, attached on first use; knows only the stub's socket and how to
    ask QEMU's run state, not the runtime."""

    def __init__(self, socket: Path | None, status: Callable[[], Awaitable[str]],
                 registers: Callable[[], Awaitable[list[cpu.Register]]],
                 on_stop: Callable[[dict[str, Any]], None], on_running: Callable[[], None]) -> None:
        self.socket = socket  # the current QEMU's stub (a replacement QEMU has its own)
        self.breakpoints: set[int] = set()  # set again in a QEMU that replaces this one
        self._status = status
        self._registers = registers
        self._on_stop = on_stop
        self._on_running = on_running
        self._gdb: GdbSession | None = None

    def attached(self) -> GdbSession | None:
        gdb = self._gdb
        return gdb if gdb is not None and gdb.proc.returncode is None else None

    async def session(self) -> GdbSession:
        """The gdb session, attaching on first use; the guest keeps the run state it had."""
        if existing := self.attached():
            return existing
        if self.socket is None:
            raise PetriError("this VM has no gdbstub: it was launched with gdb=False; launch it with gdb=True "
                             "to use breakpoints, stepping or write_memory()")
        if not self.socket.exists():
            raise PetriError(f"the gdbstub socket {self.socket} is gone (was the VM's run directory deleted?)")
        was_running = await self._status() == "running"
        gdb = await GdbSession.attach(str(self.socket), self._on_stop, self._on_running)
        gdb.qemu_status = self._status
        self._gdb = gdb
        if was_running:
            await gdb.continue_()
        return gdb

    async def break_at(self, addr: int) -> None:
        await (await self.session()).break_at(addr)
        self.breakpoints.add(addr)

    async def delete(self, addr: int) -> None:
        await (await self.session()).delete(addr)
        self.breakpoints.discard(addr)

    async def rearm(self) -> None:
        """Set the breakpoints again, in a QEMU that replaced the one they were set in."""
        if self.breakpoints:
            session = await self.session()
            for addr in sorted(self.breakpoints):
                await session.break_at(addr)

    async def detach(self) -> None:
        """Kill the gdb session, if any (teardown, or before QEMU is replaced by a restore)."""
        gdb, self._gdb = self._gdb, None
        if gdb is not None:
            await gdb.close()
            self._on_running()  # no debugger, no breakpoint stop pending

    async def step(self) -> int:
        """One instruction on vCPU 0; returns the new program counter.

        A vCPU sitting in ``hlt`` only executes its next instruction once an interrupt
        arrives, so a step there could wait forever: refuse it with the reason instead."""
        debugger = await self.session()
        if debugger.running:
            raise PetriError("step() needs a stopped guest: pause() it or wait for a breakpoint first")
        regs = {r.name: r.value for r in await self._registers() if r.cpu == 0}
        if regs.get("HLT"):
            raise PetriError(
                "cannot step: vCPU 0 is halted in hlt, waiting for an interrupt; set a breakpoint where "
                "it will wake up (e.g. the code that handles the input) and continue_() instead"
            )
        stop = await debugger.step()
        return int(stop.get("frame", {}).get("addr", "0"), 16)
