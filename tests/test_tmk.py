"""The shipped tiny test kernel: reproducible from source, boots fast, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

import petri_nb
from petri_nb.backends.qemu.command import kvm_usable
from petri_nb.guests import tmk
from tests.conftest import wait_until


def test_rebuilding_tmk_gives_the_shipped_binary_and_it_boots(tmp_path: Path):
    rebuilt = tmk.build(tmp_path / "tmk.elf")
    assert rebuilt.read_bytes() == tmk.KERNEL.read_bytes()
    assert rebuilt.stat().st_size < 16 * 1024
    with petri_nb.launch("tmk", kernel=rebuilt) as vm:
        vm.console.write("echo rebuilt\n")
        vm.console.expect("rebuilt")


def test_tmk_reaches_ready_well_under_a_second_under_tcg(vm: petri_nb.Vm):
    ready = vm.timeline().query("kind == 'ready'")
    assert len(ready) == 1
    assert ready["t"].iloc[0] < 1.0


def test_the_readme_one_liner_prints_power_off():
    code = (
        "import petri_nb; vm = petri_nb.launch('tmk'); vm.console.write('poweroff\\n'); "
        "print(vm.wait_for_halt().reason.name)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "POWER_OFF"


def test_sigkill_of_python_leaves_no_qemu_behind():
    code = (
        "import sys, petri_nb; vm = petri_nb.launch('tmk'); "
        "print(vm.aio.runtime.proc.pid, flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        qemu_pid = int(child.stdout.readline())
        assert psutil.pid_exists(qemu_pid)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        wait_until(lambda: not _alive(qemu_pid), timeout=2, what=f"QEMU {qemu_pid} to die with its parent")
    finally:
        child.kill()
        child.wait()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.skipif(not kvm_usable(), reason="needs read-write /dev/kvm")
def test_kvm_launch_never_hangs_on_a_halt():
    """Under KVM every halt is reported: a typed one, or OTHER with QEMU's message when
    KVM itself fails (seen with nested KVM: an emulation failure on iret)."""
    with petri_nb.launch("tmk", accel="kvm") as vm:
        vm.console.write("triplefault\n")
        halt = vm.wait_for_halt(timeout=60)
        assert halt.reason in (petri_nb.HaltReason.TRIPLE_FAULT, petri_nb.HaltReason.OTHER)
        if halt.reason is petri_nb.HaltReason.OTHER:
            assert "internal-error" in halt.detail


def test_the_shipped_font_is_the_one_tools_tmk_font_makes():
    import hashlib
    import importlib.util

    spec = importlib.util.spec_from_file_location("tmk_font", Path(__file__).parent.parent / "tools" / "tmk_font.py")
    assert spec is not None and spec.loader is not None
    tmk_font = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tmk_font)
    font = (Path(tmk.__file__).parent / "font8x16.bin").read_bytes()
    assert len(font) == 256 * 16
    assert hashlib.sha256(font).hexdigest() == tmk_font.SHA256
    assert font[0xDB * 16:0xDC * 16] == b"\xff" * 16  # the full block `draw N` fills the screen with
