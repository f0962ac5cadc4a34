"""QEMU's QMP events to the EventSink: every event recorded, halts mapped, resets signalled.

One pump per QEMU (a restore or relaunch starts a new one over the new session); the
halt bookkeeping (``halted``, the CPU-log offset, half-seen halts) belongs to the VM and
survives the swap, so it lives here and not in the session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

from ...errors import PetriError
from ...halt import Halt
from ..base import EventSink
from .halts import HaltMapper

#: Bound on the query-status the pump makes after an unexplained STOP.
STATUS_TIMEOUT = 5.0


class CpuLog:
    """QEMU's ``-D`` CPU log, read incrementally: the evidence of triple faults."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def read_new(self) -> str:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return ""
        self._offset += len(data)
        return data.decode(errors="replace")

    def truncated(self) -> None:
        """A new QEMU started over the same file (it truncates it)."""
        self._offset = 0


class EventPump:
    """Reads one QMP session's events; ``halted`` stays true from a halt until ``restarted()``."""

    def __init__(self, sink: EventSink, cpu_log: CpuLog, status: Callable[[], Awaitable[str]],
                 stderr_tail: Callable[[], list[str]]) -> None:
        self._sink = sink
        self._status = status
        self._stderr_tail = stderr_tail
        self.mapper = HaltMapper(cpu_log.read_new)
        self.halted = False  # a halt was reported and no reset followed
        self._own_stop = False  # the next STOP is our pause(), not a guest or QEMU failure
        self.host_reset = asyncio.Event()
        self.guest_reset = asyncio.Event()

    def expect_own_stop(self) -> None:
        """The next STOP is our own pause(): asking QEMU why would only delay the next call."""
        self._own_stop = True

    def restarted(self) -> None:
        """The VM was reset, restored or relaunched: forget halts and half-seen halts."""
        self.mapper.restarted()
        self.halted = False

    async def run(self, qmp: QMPClient) -> None:
        async for event in qmp.events:
            name = event["event"]
            data = event.get("data", {})
            self._sink.record("qmp", name, _event_summary(data), data)
            if name == "RESET":
                (self.guest_reset if data.get("guest") else self.host_reset).set()
            if name == "RESUME":
                self._own_stop = False  # a stop() that found the VM stopped sent no STOP
            halt = self.mapper.feed(name, data)
            if halt is None and name == "STOP":
                if self._own_stop:
                    self._own_stop = False
                elif not self.halted:  # the STOP that follows a halt needs no explanation
                    halt = await self._halt_from_status()
            if halt is not None:
                self.halted = True
                self._sink.halted(halt)

    async def _halt_from_status(self) -> Halt | None:
        """Why QEMU stopped the CPUs on its own (e.g. a KVM internal error), as a halt if it is one."""
        try:
            status = await asyncio.wait_for(self._status(), STATUS_TIMEOUT)
        except (PetriError, asyncio.TimeoutError):
            return None  # a lost link is reported by the exit watcher; a wedged QEMU by the calls
        return HaltMapper.from_status(status, self._stderr_tail())


def _event_summary(data: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in data.items() if not isinstance(v, (dict, list)))
