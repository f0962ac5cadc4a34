"""QEMU's events to typed halts: the mapping, the CPU log behind it, and the pump that feeds it.

QMP alone cannot tell a triple fault from a guest reset (both are
``SHUTDOWN reason=guest-reset`` under ``-action reboot=shutdown``), so the mapper
also reads QEMU's CPU log since the last halt: TCG writes "Triple fault" there
under ``-d cpu_reset``, KVM's ``kvm_run_exit`` trace shows exit reason 8
(KVM_EXIT_SHUTDOWN).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO

from qemu.qmp import QMPClient

from ...errors import PetriError
from ...model.halt import Halt, HaltReason
from ..base import EventSink

_KVM_SHUTDOWN_EXIT = re.compile(r"kvm_run_exit\b.*\breason 8\b")
# Host-side shutdown causes that are our own doing, not a guest halt.
_HOST_CAUSES_WE_SEND = {"host-qmp-quit"}


def triple_fault_in_log(text: str) -> str | None:
    """The evidence of a triple fault in a chunk of QEMU's CPU log, if any."""
    if "Triple fault" in text:
        return "triple fault (TCG cpu_reset log)"
    if _KVM_SHUTDOWN_EXIT.search(text):
        return "triple fault (KVM_EXIT_SHUTDOWN)"
    return None


class HaltMapper:
    """Feed it QMP events in order; it returns a Halt when one completes."""

    def __init__(self, read_cpu_log: Callable[[], str]) -> None:
        self._read_cpu_log = read_cpu_log
        self._suspend_disk = False
        self._panicked = False

    def restarted(self) -> None:
        """The VM was reset or restored: forget half-seen halts."""
        self._suspend_disk = False
        self._panicked = False
        self._read_cpu_log()  # skip evidence from before the restart

    def feed(self, name: str, data: dict[str, Any]) -> Halt | None:
        if name == "SUSPEND_DISK":
            self._suspend_disk = True
            return None
        if name == "GUEST_PANICKED":
            self._panicked = True
            action = data.get("action", "?")
            info = data.get("info")
            detail = f"guest-panicked: {action}" + (f" {info}" if info else "")
            return Halt(HaltReason.PANIC, detail, data={"event": name, **data})
        if name == "SUSPEND":
            return Halt(HaltReason.OTHER, "guest suspended to RAM (ACPI S3)", data={"event": name})
        if name == "SHUTDOWN":
            return self._shutdown(data)
        return None

    def _shutdown(self, data: dict[str, Any]) -> Halt | None:
        cause = str(data.get("reason", "unknown"))
        raw = {"event": "SHUTDOWN", **data}
        if cause == "guest-panic" and self._panicked:
            return None  # already reported by GUEST_PANICKED
        if cause == "guest-shutdown":
            if self._suspend_disk:
                self._suspend_disk = False
                return Halt(HaltReason.HIBERNATE, "ACPI S4 (SUSPEND_DISK, then guest-shutdown)", data=raw)
            return Halt(HaltReason.POWER_OFF, "ACPI S5 guest-shutdown", data=raw)
        if cause == "guest-reset":
            evidence = triple_fault_in_log(self._read_cpu_log())
            if evidence:
                return Halt(HaltReason.TRIPLE_FAULT, evidence, data=raw)
            return Halt(HaltReason.RESET, "guest-reset", data=raw)
        if cause in _HOST_CAUSES_WE_SEND:
            return None
        return Halt(HaltReason.OTHER, f"shutdown: {cause}", data=raw)

    @staticmethod
    def from_status(status: str, stderr_tail: list[str]) -> Halt | None:
        """Run states that stop the guest without a SHUTDOWN event (e.g. a KVM internal error)."""
        if status == "internal-error":
            errors = [ln for ln in stderr_tail if "error" in ln.lower() or "failure" in ln.lower()]
            detail = "internal-error: " + (" | ".join(errors)[:300] or "no message from QEMU")
            return Halt(HaltReason.OTHER, detail, data={"status": status, "stderr": " | ".join(stderr_tail)})
        if status == "io-error":
            return Halt(HaltReason.OTHER, "io-error: a disk request failed", data={"status": status})
        return None


#: Bound on the query-status the pump makes after an unexplained STOP.
STATUS_TIMEOUT = 5.0


class CpuLog:
    """QEMU's ``-D`` CPU log, read incrementally: the evidence of triple faults.

    The file stays open once read, so the evidence is still there if the run directory
    is deleted under a running VM."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None

    def read_new(self) -> str:
        if self._file is None:
            try:
                self._file = open(self.path, "rb")  # noqa: SIM115 - kept open on purpose, closed in close()
            except FileNotFoundError:
                return ""
        return self._file.read().decode(errors="replace")

    def reopen(self) -> None:
        """A new QEMU started over the file (it truncates it): read it from its end, holding it open."""
        self.close()
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - kept open on purpose, closed in close()
        except FileNotFoundError:
            return
        self._file.seek(0, 2)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class EventPump:
    """Reads one QMP session's events; ``halted`` stays true from a halt until ``restarted()``."""

    def __init__(self, sink: EventSink, cpu_log: CpuLog, status: Callable[[], Awaitable[str]],
                 stderr_tail: Callable[[], list[str]],
                 view_presses: Callable[[], list[dict[str, Any]]] = lambda: []) -> None:
        self._sink = sink
        self._view_presses = view_presses
        self._status = status
        self._stderr_tail = stderr_tail
        self.mapper = HaltMapper(cpu_log.read_new)
        self.halted = False  # a halt was reported and no reset followed
        self._own_stop = False  # the next STOP is our pause(), not a guest or QEMU failure

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
            for press in self._view_presses():  # noted just before the view acted: its events follow
                self._sink.record("runtime", f"view {press['action']}", "a live view button", press)
            self._sink.record("qmp", name, _event_summary(data), data)
            if name == "RESET":
                # A host reset under way (ours, or the live view's on its own monitor): the halt
                # and the firmware reboot's evidence are history.
                self.restarted()
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
        except (TimeoutError, PetriError):
            return None  # a lost link is reported by the exit watcher; a wedged QEMU by the calls
        return HaltMapper.from_status(status, self._stderr_tail())


def _event_summary(data: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in data.items() if not isinstance(v, (dict, list)))
