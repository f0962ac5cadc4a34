"""Faults and bad input: every public call rejects bad values with a PetriError and leaves the VM
answering; nothing a user passes stalls the loop; interrupted saves and restores leave the guest
running; a teardown at any moment of a restore leaves no QEMU behind."""

from __future__ import annotations

import asyncio
import inspect
import math
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import our_qemus, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import petri_nb
from petri_nb import PetriError
from petri_nb.fleet import read_fleet
from petri_nb.records.persist import read_snapshots
from petri_nb.runtime.loop import run_blocking
from petri_nb.vm.agent import Agent
from petri_nb.vm.console import Console
from petri_nb.vm.facade import Vm

#: What an abandoned task or a dying thread prints on the user's stderr (in a notebook: into the cell).
NOISE = ("Task exception was never retrieved", "Exception in thread", "Task was destroyed but it is pending")


@pytest.fixture(autouse=True)
def quiet_stderr(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A fault test fails if asyncio or a thread printed a traceback: the user would see it."""
    yield
    import gc
    gc.collect()  # asyncio reports an unretrieved task exception when the task is collected
    said = capfd.readouterr().err + "\n".join(r.getMessage() for r in caplog.records)
    noise = [n for n in NOISE if n in said]
    assert not noise, f"stderr noise: {noise}: {said[-2000:]}"


VM_SHARED_ACROSS_TESTS = True  # the fuzz shares one VM; the fixture checks for leftovers at its end

BAD = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -1, -1.5, -(2**70), 2**70, "", "\0", "\udc80", "x" * 100_000,
                     b"\0", [], {}, object(), True, ["a"], ("x",), 1j]),
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not math.isfinite(f) or f < 0),
    st.text(alphabet=st.characters(categories=["Cs", "Cc"]), min_size=1, max_size=8),
)
#: Calls that would end or change the shared VM if a value happened to be valid: only bad values reach them.
DESTRUCTIVE = {"teardown", "reset", "send_shutdown", "restore_state", "rewind", "write_memory", "send_input",
               "update_command_line", "add_pcie_device", "remove_pcie_device", "step", "continue_", "break_at",
               "remove_breakpoint", "pause", "resume", "auto_checkpoint", "save_timeline", "checkpoint",
               "wait_for_halt", "wait_for_halt_or", "wait_for_agent", "wait_for_boot_event", "verify_save_restore",
               "restart_openhcl", "save_openhcl", "restore_openhcl", "set_vtl2_settings", "firmware_vars"}
#: Valid values for the parameters a call needs besides the one under test.
VALID = {"addr": 0x100000, "size": 16, "data": b"\0", "where": 0x100000, "name": "x", "kind": "poweroff",
         "events": [], "command_line": "quiet", "pattern": "tmk", "text": "", "command": "true", "path": "/tmp/x",
         "lines": 5, "call": lambda: None, "port": "rp1", "settings": None, "count": 1}


def public_calls(cls: type) -> list[tuple[str, str]]:
    """(method, parameter) for every parameter of every public method of a blocking face."""
    calls = []
    for name, member in inspect.getmembers(cls, callable):
        if name.startswith("_") or isinstance(inspect.getattr_static(cls, name), (property, type)):
            continue
        for param in list(inspect.signature(member).parameters.values())[1:]:
            if param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                calls.append((name, param.name))
    return calls


VM_CALLS = public_calls(Vm)
CONSOLE_CALLS = public_calls(Console)


@pytest.fixture(scope="module")
def shared_vm() -> Iterator[petri_nb.Vm]:
    vm = petri_nb.launch("tmk", name="fuzz")
    try:
        yield vm
    finally:
        vm.teardown()
        wait_until(lambda: not our_qemus(), timeout=5, what="QEMU processes to exit")


def call_with(target: object, method: str, param: str, value: object) -> None:
    sig = inspect.signature(getattr(type(target), method))
    kwargs = {}
    for p in list(sig.parameters.values())[1:]:
        if p.name == param:
            kwargs[p.name] = value
        elif p.name == "timeout":
            kwargs[p.name] = 0.1  # a value that is valid by accident is not waited on for long
        elif p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            kwargs[p.name] = VALID[p.name]
    getattr(target, method)(**kwargs)


def assert_rejected_or_harmless(target: object, vm: petri_nb.Vm, method: str, param: str, value: object) -> None:
    from petri_nb.runtime.validation import BadArgument, check_arguments

    original = getattr(type(getattr(target, "aio", target)), method, None)
    if method in DESTRUCTIVE and original is not None:
        try:
            check_arguments(original, (None,), {param: value})
        except BadArgument:
            pass
        else:
            return  # a value this call takes: it would change the shared VM, so it is not sent
    try:
        call_with(target, method, param, value)
    except PetriError:
        pass
    start = time.monotonic()
    assert vm.status() in ("running", "debug", "paused")
    assert time.monotonic() - start < 1.0, "the VM did not answer status() within 1 s after a bad call"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=st.sampled_from(VM_CALLS), value=BAD)
def test_every_vm_call_rejects_bad_values_with_a_petri_error(shared_vm: petri_nb.Vm, call, value) -> None:  # noqa: ANN001
    assert_rejected_or_harmless(shared_vm, shared_vm, *call, value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(call=st.sampled_from(CONSOLE_CALLS), value=BAD)
def test_every_console_call_rejects_bad_values_with_a_petri_error(shared_vm: petri_nb.Vm, call, value) -> None:  # noqa: ANN001
    method, param = call
    if method == "write" and isinstance(value, (str, bytes)) and value not in ("\0", "\udc80"):
        return  # text the guest may be sent: harmless, and not the point here
    assert_rejected_or_harmless(shared_vm.console, shared_vm, method, param, value)


@pytest.mark.parametrize("value", [None, 42, [None], "/nonexistent/run", b"bytes"])
def test_the_readers_reject_bad_input_with_a_petri_error(value: object, tmp_path: Path) -> None:
    for reader in (petri_nb.read_timelines, read_snapshots, read_fleet):
        with pytest.raises(PetriError):
            reader(value)  # type: ignore[arg-type]


def test_a_foreign_or_damaged_parquet_file_is_refused_by_name(tmp_path: Path) -> None:
    import pandas as pd

    foreign = tmp_path / "foreign.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(foreign)
    with pytest.raises(PetriError, match="foreign.parquet is not a petri_nb timeline"):
        petri_nb.read_timelines(foreign)
    damaged = tmp_path / "damaged.parquet"
    damaged.write_bytes(b"PAR1 not really")
    with pytest.raises(PetriError, match="damaged.parquet"):
        petri_nb.read_timelines(damaged)


def test_agent_calls_check_their_arguments_too() -> None:
    assert {m for m, _ in public_calls(Agent)} >= {"run", "read_file", "write_file"}


def test_stuck_user_callables_and_nan_waits_on_one_vm_leave_another_vm_answering() -> None:
    with petri_nb.launch("tmk", name="stuck") as stuck, petri_nb.launch("tmk", name="healthy") as healthy:
        release = threading.Event()
        for _ in range(12):  # more than the default thread pool of a 2-core machine holds
            with pytest.raises(petri_nb.PetriTimeout):
                stuck.wait_for_halt_or(release.wait, timeout=0.05)
        for bad in (math.nan, math.inf):
            with pytest.raises(PetriError):
                stuck.console.expect("NEVER", timeout=bad)
        start = time.monotonic()
        assert healthy.status() == "running"
        healthy.save_state()
        assert healthy.screenshot().size[0] > 0
        assert time.monotonic() - start < 1.0
        release.set()


@pytest.mark.slow
def test_interrupting_saves_restores_and_checkpoints_200_times_leaves_the_guest_running() -> None:
    with petri_nb.launch("tmk", name="interrupted") as vm:
        aio = vm.aio
        saved = vm.save_state()
        vm.checkpoint("base")
        rng = random.Random(1234)

        async def soak() -> list[str]:
            outcomes = []
            operations = {
                "save_state": lambda: aio.save_state(),
                "restore_state": lambda: aio.restore_state(saved),
                "checkpoint": lambda: aio.checkpoint(),
                "rewind": lambda: aio.rewind("base"),
                "auto_checkpoint": lambda: aio.auto_checkpoint(every=0.01, keep=2),
            }
            for i in range(200):
                name = rng.choice(list(operations))
                task = asyncio.ensure_future(operations[name]())
                await asyncio.sleep(rng.uniform(0, 0.04))  # a random moment to interrupt at, not a sync
                task.cancel()
                try:
                    await task
                    outcomes.append("finished")
                except asyncio.CancelledError:
                    outcomes.append("cancelled")
                if name == "auto_checkpoint":
                    await asyncio.sleep(rng.uniform(0, 0.03))
                    await aio.auto_checkpoint(None)  # stop it, maybe in the middle of a save
                assert await aio.status() == "running", f"round {i}: {name} left QEMU {await aio.status()}"
                assert aio.state == "running", f"round {i}: {name} left state {aio.state}"
                await aio.console.write(f"echo live {i}\n")
                await aio.console.expect(f"live {i}", timeout=10)
            return outcomes

        outcomes = run_blocking(soak())
        assert outcomes.count("cancelled") > 20  # the interrupts did land mid-operation


@pytest.mark.slow
def test_teardown_at_random_points_of_restore_and_rewind_leaves_no_qemu() -> None:
    rng = random.Random(99)
    before = {p.pid for p in our_qemus()}  # the module's shared VM may be running
    for i in range(50):
        vm = petri_nb.launch("tmk", name=f"torn-{i}")
        vm.checkpoint("base")

        async def race(aio: petri_nb.AsyncVm = vm.aio, rewind: bool = bool(i % 2)) -> None:
            task = asyncio.ensure_future(aio.rewind("base") if rewind else aio.restore_state(aio.checkpoints()[0].data))
            await asyncio.sleep(rng.uniform(0, 0.08))
            await aio.teardown()
            await asyncio.gather(task, return_exceptions=True)

        run_blocking(race())
        wait_until(lambda: {p.pid for p in our_qemus()} <= before, timeout=5, what=f"no QEMU after teardown {i}")


def test_qemu_dying_under_a_console_write_is_vm_gone() -> None:
    import signal

    with petri_nb.launch("tmk", name="dies") as vm:
        os.kill(vm.pid, signal.SIGKILL)
        wait_until(lambda: vm.state == "gone", timeout=10, what="the VM to be gone")
        with pytest.raises(petri_nb.VmGone):
            vm.console.write("echo x\n")


def test_a_deleted_run_dir_gives_petri_errors_and_a_triple_fault_is_still_one() -> None:
    import shutil

    with petri_nb.launch("tmk", name="no-rundir") as vm:
        vm.checkpoint("base")
        vm.console.write("count\n")
        vm.console.expect("count=", timeout=10)  # the CPU log is open from here on
        shutil.rmtree(vm.aio.runtime.rundir)
        with pytest.raises(PetriError, match="run directory .* was deleted"):
            vm.rewind("base")
        with pytest.raises(PetriError, match="gdbstub socket .* is gone"):
            vm.break_at("run_command")
        vm.console.write("triplefault\n")
        assert vm.wait_for_halt(timeout=30).reason is petri_nb.HaltReason.TRIPLE_FAULT


def test_wait_for_halt_notices_a_breakpoint_stop() -> None:
    with petri_nb.launch("tmk", name="bp-wait") as vm:
        vm.break_at("run_command")
        vm.console.write("count\n")
        with pytest.raises(petri_nb.BreakpointHit):
            vm.wait_for_halt(timeout=30)


def test_saved_runs_are_private_and_stay_where_they_were_first_saved(tmp_path: Path) -> None:
    with petri_nb.launch("tmk", name="private") as vm:
        run = vm.save_timeline(tmp_path / "runs")
        assert run.stat().st_mode & 0o077 == 0
        assert all(f.stat().st_mode & 0o077 == 0 for f in run.iterdir())
        with pytest.raises(PetriError, match="already saved to"):
            vm.save_timeline(tmp_path / "elsewhere")


def test_run_dirs_of_a_dead_process_are_reaped_and_live_ones_kept(tmp_path: Path) -> None:
    import subprocess
    import sys

    from petri_nb.backends.qemu import rundirs

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / "petri_nb-orphan-x"
    orphan.mkdir(mode=0o700)
    (orphan / "owner").write_text(f"{dead.stdout.strip()} 1\n")
    (orphan / "console.log").write_text("secret")
    ours = tmp_path / "petri_nb-ours-y"
    ours.mkdir(mode=0o700)
    (ours / "owner").write_text(f"{os.getpid()} {rundirs._start_time(os.getpid())}\n")
    assert rundirs.reap_orphans(tmp_path) == [orphan]
    assert not orphan.exists() and ours.exists()
