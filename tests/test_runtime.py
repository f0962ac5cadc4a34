"""Runtime calls on a real tmk VM: pause/resume, screenshots, console, timeline."""

from __future__ import annotations

import stat

import pandas as pd
import pytest

import petri_nb
from petri_nb.runtime.loop import runtime_loop

# The 16 text colours as QEMU's VGA renders SeaBIOS's default palette (measured); tmk
# loads the same EGA palette itself, so qboot gives the same pixels.
_LEVEL = {0: 0, 1: 87, 2: 168, 3: 255}
VGA_PALETTE = [
    tuple(_LEVEL[c] for c in rgb)
    for rgb in [
        (0, 0, 0), (0, 0, 2), (0, 2, 0), (0, 2, 2), (2, 0, 0), (2, 0, 2), (2, 1, 0), (2, 2, 2),
        (1, 1, 1), (1, 1, 3), (1, 3, 1), (1, 3, 3), (3, 1, 1), (3, 1, 3), (3, 3, 1), (3, 3, 3),
    ]
]


def test_screenshot_after_draw_shows_the_pattern(fw_vm: petri_nb.Vm):
    vm = fw_vm
    vm.console.write("draw 3\n")
    vm.console.expect("drawn 3")
    img = vm.screenshot()
    assert img.mode == "RGB"
    assert img.size == (720, 400)
    for row in range(25):
        expected = VGA_PALETTE[(3 + row) % 16]
        for x in (4, 360, 715):
            assert img.getpixel((x, row * 16 + 8)) == expected, (row, x)


def test_pause_stops_the_guest_and_resume_continues_it(vm: petri_nb.Vm):
    vm.pause()
    assert vm.status() == "paused"
    assert vm.state == "paused"
    vm.console.write("count\n")  # queued in the UART while paused
    with pytest.raises(petri_nb.PetriTimeout, match="count="):
        vm.console.expect(r"count=\d+", timeout=0.5)
    vm.resume()
    assert vm.console.expect(r"count=(\d+)", timeout=10).group(1) == "1"
    assert vm.status() == "running"


def test_resume_of_a_halted_vm_says_to_reset_first(vm: petri_nb.Vm):
    vm.console.write("poweroff\n")
    vm.wait_for_halt(timeout=20)
    with pytest.raises(petri_nb.PetriError, match="reset"):
        vm.resume()


def test_console_keeps_everything_and_expect_consumes(vm: petri_nb.Vm):
    vm.console.write("echo one\n")
    vm.console.write("echo two\n")
    assert vm.console.expect("one|two").group(0) == "one"
    assert vm.console.expect("one|two").group(0) == "two"
    assert "tmk: ready" in vm.console.text


def test_timeline_has_the_declared_schema_and_records_calls(vm: petri_nb.Vm):
    vm.pause()
    vm.resume()
    df = vm.timeline()
    assert list(df.columns) == ["vm", "run", "t", "wall", "source", "kind", "reason", "detail", "data"]
    assert df["t"].dtype == "float64"
    assert str(df["wall"].dtype) == "datetime64[ns, UTC]"
    assert isinstance(df["source"].dtype, pd.CategoricalDtype)
    for col in ("vm", "run", "kind", "reason", "detail", "data"):
        assert df[col].dtype == "string", col
    assert df["t"].is_monotonic_increasing
    kinds = df["kind"].tolist()
    assert {"pause()", "resume()", "STOP", "RESUME", "ready"} <= set(kinds)
    assert (df["vm"] == vm.name).all()


def test_qmp_and_console_sockets_are_in_a_private_directory(vm: petri_nb.Vm):
    rundir = vm.aio.runtime.rundir
    assert stat.S_IMODE(rundir.stat().st_mode) == 0o700
    assert stat.S_ISSOCK((rundir / "qmp.sock").stat().st_mode)
    assert "tcp" not in " ".join(vm.aio.runtime.argv)


def test_openhcl_only_calls_raise_not_supported_naming_why(vm: petri_nb.Vm):
    with pytest.raises(petri_nb.NotSupported, match="OpenHCL"):
        vm.restart_openhcl()
    with pytest.raises(petri_nb.NotSupported, match="OpenHCL"):
        vm.set_vtl2_settings({})


def test_two_vms_run_side_by_side_with_unique_names():
    a = petri_nb.launch("tmk")
    try:
        b = petri_nb.launch("tmk")
        try:
            assert a.name != b.name
            b.console.write("poweroff\n")
            assert b.wait_for_halt(timeout=20).reason is petri_nb.HaltReason.POWER_OFF
            a.console.write("count\n")
            assert a.console.expect(r"count=1", timeout=10)
            with pytest.raises(petri_nb.PetriError, match="already running"):
                petri_nb.launch("tmk", name=a.name)
        finally:
            b.teardown()
    finally:
        a.teardown()


def test_a_console_line_without_newline_reaches_the_timeline_at_teardown():
    vm = petri_nb.launch("tmk")
    vm.console.write("draw 1\n")
    vm.console.expect(r"drawn 1\r?\n")  # a complete line: a row of its own
    # As if the guest printed a prompt; fed on the runtime loop like real output,
    # which runs it before the teardown queued after it.
    runtime_loop().call_soon_threadsafe(vm.aio.console.feed, b"partial prompt> ")
    vm.teardown()
    lines = vm.timeline().query("source == 'console'")["detail"].tolist()
    assert lines[-1] == "partial prompt> "


def test_console_last_line_is_the_newest_line_complete_or_not(vm: petri_nb.Vm):
    vm.console.write("echo first\n")
    vm.console.expect(r"first\r?\n")
    assert vm.console.last_line == "first"
    runtime_loop().call_soon_threadsafe(vm.aio.console.feed, b"half a li")
    vm.console.write("count\n")  # queued behind the feed on the runtime loop
    assert vm.console.aio.last_line.startswith("half a li")
