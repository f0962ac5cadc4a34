"""The QMP-event-to-halt mapping, on canned event sequences (pure logic)."""

from __future__ import annotations

from petri_nb.backends.qemu.halts import HaltMapper, triple_fault_in_log
from petri_nb.model.halt import HaltReason


def feed(events, log=""):
    logs = [log]
    mapper = HaltMapper(lambda: logs.pop() if logs else "")
    return [h for name, data in events if (h := mapper.feed(name, data))]


def test_suspend_disk_then_shutdown_is_hibernate():
    halts = feed([("SUSPEND_DISK", {}), ("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"})])
    assert [h.reason for h in halts] == [HaltReason.HIBERNATE]


def test_panic_is_reported_once_with_its_action():
    halts = feed([("GUEST_PANICKED", {"action": "pause"}), ("STOP", {}),
                  ("SHUTDOWN", {"guest": True, "reason": "guest-panic"})])
    assert [(h.reason, h.detail) for h in halts] == [(HaltReason.PANIC, "guest-panicked: pause")]


def test_guest_reset_is_a_triple_fault_only_with_log_evidence():
    reset = [("SHUTDOWN", {"guest": True, "reason": "guest-reset"})]
    assert feed(reset)[0].reason is HaltReason.RESET
    assert feed(reset, "CPU Reset (CPU 0)\nTriple fault\n")[0].reason is HaltReason.TRIPLE_FAULT
    assert triple_fault_in_log("1234@1.5:kvm_run_exit cpu_index 0, reason 8\n")
    assert not triple_fault_in_log("kvm_run_exit cpu_index 0, reason 2\n")


def test_our_own_quit_is_not_a_halt_but_other_host_causes_are():
    assert feed([("SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"})]) == []
    (halt,) = feed([("SHUTDOWN", {"guest": False, "reason": "host-signal"})])
    assert halt.reason is HaltReason.OTHER and "host-signal" in halt.detail


def test_kvm_internal_error_status_is_other_with_qemus_message():
    halt = HaltMapper.from_status("internal-error", ["warning: x", "KVM internal error. Suberror: 1", "junk"])
    assert halt.reason is HaltReason.OTHER
    assert halt.detail == "internal-error: KVM internal error. Suberror: 1"
    assert HaltMapper.from_status("paused", []) is None
