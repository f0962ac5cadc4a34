"""Where two features meet: the gestures of issue 22, each proven on real QEMU."""

from __future__ import annotations

import petri_nb
from petri_nb import HaltReason


def test_a_line_typed_right_after_reset_is_heard(fw_vm: petri_nb.Vm) -> None:
    for _ in range(3):
        fw_vm.reset()
        fw_vm.console.write("poweroff\n")
        assert fw_vm.wait_for_halt(timeout=10).reason is HaltReason.POWER_OFF


def test_reset_marks_readiness_on_the_timeline_and_expect_reads_the_new_boot(vm: petri_nb.Vm) -> None:
    vm.console.expect("tmk: ready")
    vm.reset()
    rows = vm.timeline()
    ready = rows[(rows["source"] == "runtime") & (rows["kind"] == "ready")]
    assert ready["detail"].str.contains("after reset").any()
    vm.console.expect("tmk: ready", timeout=5)  # the new boot's banner, not consumed by the reset


def test_reset_without_waiting_still_notes_when_the_guest_is_ready(vm: petri_nb.Vm) -> None:
    vm.reset(wait_ready=False)
    vm.console.expect("tmk: ready", timeout=10)

    def noted() -> bool:
        rows = vm.timeline()
        return bool(((rows["kind"] == "ready") & rows["detail"].str.contains("after reset")).any())
    from conftest import wait_until
    wait_until(noted, timeout=10, what="the ready row after reset(wait_ready=False)")


def test_magic_launch_with_own_kernel_and_no_guest_name_boots_that_kernel(shell, tmp_path) -> None:
    import shutil
    from importlib import resources
    own = tmp_path / "my-kernel.elf"  # the user's own file, not the preset's
    shutil.copy(resources.files("petri_nb.guests.tmk") / "tmk.elf", own)
    vm = shell.run_line_magic("petri", f"launch --kernel {own} --ready 'tmk: ready' --name mine")
    try:
        assert vm.guest.name != "tmk"
        assert vm.guest.kernel == own
    finally:
        vm.teardown()
