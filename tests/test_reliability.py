"""Faults under real QEMU: a killed QEMU, a dropped QMP link, a hung guest, a killed host process.

Each must end in a clear PetriError quickly (VmGone within a second of the kill),
and no QEMU may outlive the Python process or Jupyter kernel that started it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import psutil
import pytest
from conftest import wait_until

import petri_nb
from petri_nb import PetriError, PetriTimeout, VmGone
from petri_nb.guests.tmk import READY
from petri_nb.runtime.loop import run_blocking

CALLS: dict[str, Callable[[petri_nb.Vm], object]] = {
    "reset": lambda vm: vm.reset(),
    "pause": lambda vm: vm.pause(),
    "screenshot": lambda vm: vm.screenshot(),
    "console.expect": lambda vm: vm.console.expect("never printed", timeout=30),
    "wait_for_halt": lambda vm: vm.wait_for_halt(timeout=30),
    "wait_for_halt_or": lambda vm: vm.wait_for_halt_or(asyncio.sleep(30)),
}


def _call_in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, dict[str, object]]:
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except BaseException as e:  # noqa: B902 - the test inspects whatever came out
            out["error"] = e
        out["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _pending(vm: petri_nb.Vm) -> bool:
    """A runtime call is in flight: every call races against the VM going away."""
    return vm.aio.calls_in_flight > 0


@pytest.mark.parametrize("call", list(CALLS))
def test_sigkill_of_qemu_during_each_runtime_call_gives_vm_gone_within_a_second(vm: petri_nb.Vm, call: str):
    pid = vm.aio.runtime.proc.pid
    os.kill(pid, signal.SIGSTOP)  # QEMU cannot answer: the call stays pending
    thread, out = _call_in_thread(lambda: CALLS[call](vm))
    wait_until(lambda: _pending(vm), timeout=5, what=f"{call}() to be pending")
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    thread.join(5)
    assert not thread.is_alive(), f"{call}() still blocked 5 s after QEMU was killed"
    assert isinstance(out.get("error"), VmGone), out
    assert out["at"] - killed < 1.0, f"{call}() took {out['at'] - killed:.2f} s to report VmGone"
    assert "SIGKILL" in str(out["error"])


def test_qmp_connection_dropped_under_a_pending_call_is_a_petri_error(vm: petri_nb.Vm):
    pid = vm.aio.runtime.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        thread, out = _call_in_thread(vm.status)
        wait_until(lambda: _pending(vm), timeout=5, what="status() to be pending")

        async def drop() -> None:
            vm.aio.runtime.qmp._writer.transport.abort()  # the link breaks, QEMU lives on

        run_blocking(drop())
        thread.join(5)
        assert not thread.is_alive(), "status() hangs after the QMP connection dropped"
        assert isinstance(out.get("error"), PetriError), repr(out.get("error"))
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_hung_guest_gives_timeouts_naming_what_was_awaited(vm: petri_nb.Vm):
    vm.console.write("hang\n")
    vm.console.expect("tmk: hang", timeout=10)
    vm.console.write("count\n")  # nobody reads it any more
    with pytest.raises(PetriTimeout, match=r"timed out after 0\.3 s waiting for console output matching 'count='"):
        vm.console.expect("count=", timeout=0.3)
    with pytest.raises(PetriTimeout, match="waiting for the VM to halt"):
        vm.wait_for_halt(timeout=0.3)
    with pytest.raises(PetriTimeout, match="waiting for the call to finish"):
        vm.wait_for_halt_or(asyncio.sleep(5), timeout=0.3)
    vm.reset()  # a host reset still recovers it
    vm.console.expect(READY, timeout=20)


def test_many_host_resets_never_report_the_firmwares_own_reboots_as_halts(fw_vm: petri_nb.Vm):
    vm = fw_vm
    # SeaBIOS answers a host reset with a hard reboot of its own (0xCF9 then a triple
    # fault); those used to surface now and then as RESET or TRIPLE_FAULT halts.
    for _ in range(40):
        vm.reset()
        vm.console.expect(READY, timeout=20)
    assert vm.halts == []
    assert vm.status() == "running"


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    """Pids still alive (zombies count as dead) after waiting up to ``seconds``."""
    def alive() -> list[int]:
        out = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    out.append(pid)
            except psutil.NoSuchProcess:
                pass
        return out

    deadline = time.monotonic() + seconds
    while (left := alive()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


CHILD = """
import sys, petri_nb
vms = [petri_nb.launch("tmk") for _ in range(2)]
print(" ".join(str(vm.aio.runtime.proc.pid) for vm in vms), flush=True)
sys.stdin.read()
"""


def test_sigkill_of_the_python_process_leaves_no_qemu_within_two_seconds():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
        proc.kill()
        proc.wait(5)
        assert _gone_within(pids, 2.0) == []
    finally:
        proc.kill()
        proc.wait()


def test_sigkill_of_a_jupyter_kernel_leaves_no_qemu_within_two_seconds():
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        lines: list[str] = []
        reply = kc.execute_interactive(
            "import petri_nb\nvm = petri_nb.launch('tmk')\nprint(vm.aio.runtime.proc.pid)",
            timeout=60,
            output_hook=lambda msg: lines.append(msg["content"].get("text", "")),
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        pid = int("".join(lines).split()[0])
        assert psutil.pid_exists(pid)
        os.kill(km.provisioner.pid if hasattr(km.provisioner, "pid") else km.kernel.pid, signal.SIGKILL)
        assert _gone_within([pid], 2.0) == []
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_resume_after_a_guest_panic_still_says_to_reset_first(vm: petri_nb.Vm):
    # resume() skips its status round trip unless a halt was seen; a panicked guest
    # must still not be resumed (QEMU itself would let it run on).
    vm.console.write("panic\n")
    assert vm.wait_for_halt(timeout=20).reason is petri_nb.HaltReason.PANIC
    with pytest.raises(PetriError, match="reset"):
        vm.resume()
    vm.reset()
    vm.console.expect(READY, timeout=20)
    vm.pause()
    vm.pause()  # a no-op stop sends no STOP event: nothing may be left expecting one
    vm.resume()
    vm.console.write("count\n")
    assert vm.console.expect(r"count=(\d+)", timeout=10).group(1) == "1"
    assert vm.status() == "running"
    assert vm.halts[1:] == []


def test_a_qboot_reset_does_not_wait_for_a_firmware_reboot(vm: petri_nb.Vm):
    # qboot does not reboot itself after a host reset, so reset() must not wait out the
    # bounded SeaBIOS wait (5 s): ten resets to the banner take well under one such wait.
    assert vm.guest.firmware == "qboot"
    t0 = time.monotonic()
    for _ in range(10):
        vm.reset()
        vm.console.expect(READY, timeout=20)
    assert time.monotonic() - t0 < 4.0
    assert vm.halts == []
