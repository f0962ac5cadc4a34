"""Mapping QMP events to typed halts.

QMP alone cannot tell a triple fault from a guest reset (both are
``SHUTDOWN reason=guest-reset`` under ``-action reboot=shutdown``), so the mapper
also reads QEMU's CPU log since the last halt: TCG writes "Triple fault" there
under ``-d cpu_reset``, KVM's ``kvm_run_exit`` trace shows exit reason 8
(KVM_EXIT_SHUTDOWN).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ...halt import Halt, HaltReason

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
