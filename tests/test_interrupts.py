"""Ctrl-C during a launch, at any moment: the KeyboardInterrupt surfaces within a second and
leaves nothing behind (no QEMU, no run dir, the name free again), with no asyncio noise.

Both ways a Ctrl-C arrives are soaked: a real SIGINT (which wakes a thread asleep in a lock)
and ``_thread.interrupt_main()`` (what Jupyter's interrupt and a timer do: only a flag)."""

from __future__ import annotations

import _thread
import gc
import random
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import our_qemus
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import petri_nb
from petri_nb.backends.qemu.rundirs import PREFIX
from petri_nb.vm import registry
from petri_nb.vm.facade import live_vms

NOISE = ("Task exception was never retrieved", "Task was destroyed but it is pending", "Exception in thread",
         "coroutine ignored GeneratorExit")
#: How soon an interrupted launch must have surfaced and cleaned up.
WITHIN = 1.0
SOAK = 50


@pytest.fixture(autouse=True)
def quiet_stderr(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield
    gc.collect()  # asyncio reports an unretrieved task exception (or a pending one) when it is collected
    said = capfd.readouterr().err + "\n".join(r.getMessage() for r in caplog.records)
    noise = [n for n in NOISE if n in said]
    assert not noise, f"stderr noise: {noise}: {said[-2000:]}"


def _real_sigint() -> Callable[[], None]:
    main = threading.get_ident()
    return lambda: signal.pthread_kill(main, signal.SIGINT)


def _run_dirs(name: str) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"{PREFIX}{name}-*"))


def _absorb(timer: threading.Timer) -> None:
    """Take the interrupt of a timer that fired after what it meant to interrupt."""
    try:
        timer.join()
        for _ in range(100_000):  # a loop's backward jumps are where a pending interrupt is raised
            pass
    except KeyboardInterrupt:
        pass


def _launch_time() -> float:
    """How long a tmk launch takes here (the interrupts are spread over it)."""
    start = time.monotonic()
    petri_nb.launch("tmk", name="timing").teardown()
    return time.monotonic() - start


def _interrupted_launch(name: str, fire: Callable[[], None], after: float, launch: Callable[[], object]) -> bool:
    """Interrupt ``launch`` ``after`` seconds in; True if the interrupt hit it, and then check it left nothing."""
    timer = threading.Timer(after, fire)
    fired = time.monotonic() + after
    timer.start()
    try:
        vm = launch()
    except KeyboardInterrupt:
        surfaced = time.monotonic() - fired
    else:  # the launch won: the interrupt lands after it
        _absorb(timer)
        vm.teardown()  # type: ignore[attr-defined]
        return False
    assert surfaced < WITHIN, f"the interrupt {after * 1000:.0f} ms in surfaced {surfaced:.2f} s later"
    # Gone at once (within the second), not eventually.
    assert not our_qemus(), f"a QEMU outlived a launch interrupted {after * 1000:.0f} ms in"
    assert not _run_dirs(name), f"run dir left by a launch interrupted {after * 1000:.0f} ms in"
    assert name not in registry._live, "the interrupted launch kept its name"
    return True


@pytest.mark.slow
@pytest.mark.parametrize("how", ["interrupt_main", "sigint"])
def test_interrupted_launches_leave_nothing_behind(how: str):
    span = _launch_time()
    fire = _thread.interrupt_main if how == "interrupt_main" else _real_sigint()
    rng = random.Random(27)
    hits = tries = 0
    while hits < SOAK // 2:  # 25 each way: 50 in all
        tries += 1
        assert tries < SOAK * 4, f"only {hits} of {tries} interrupts hit the launch"
        hits += _interrupted_launch("soak", fire, rng.uniform(0.0, span * 1.2),
                                    lambda: petri_nb.launch("tmk", name="soak"))
    print(f"{hits} of {tries} interrupts hit the launch ({how})")
    # And the name launches again.
    with petri_nb.launch("tmk", name="soak") as vm:
        assert vm.state == "running"


def test_a_launch_that_ended_as_ctrl_c_came_is_torn_down():
    # The interrupt lands after the VM is up but before launch() returns it: nobody holds it.
    from petri_nb.runtime import loop

    real = loop._BlockingCall.result

    def interrupted(self: loop._BlockingCall) -> object:
        _thread.interrupt_main()
        return real(self)

    loop._BlockingCall.result = interrupted  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            petri_nb.launch("tmk", name="late")
    finally:
        loop._BlockingCall.result = real  # type: ignore[method-assign]
    assert not our_qemus() and not _run_dirs("late") and "late" not in registry._live


@pytest.mark.slow
def test_ctrl_c_during_the_launch_magic_says_one_line(shell: InteractiveShell,
                                                      capfd: pytest.CaptureFixture[str]):
    span = _launch_time()
    rng = random.Random(7)
    hits = 0
    for _ in range(40):
        after = rng.uniform(0.0, span)
        timer = threading.Timer(after, _thread.interrupt_main)
        timer.start()
        started = time.monotonic()
        result = shell.run_cell("%petri launch tmk --name magic")
        _absorb(timer)
        if not isinstance(result.error_in_exec, UsageError):  # the launch won; the interrupt came after it
            for aio in live_vms():
                petri_nb.Vm(aio).teardown()
            capfd.readouterr()
            continue
        hits += 1
        assert time.monotonic() - started - after < WITHIN
        shown = capfd.readouterr()
        assert shown.err.strip() == "UsageError: %petri launch: interrupted while launching tmk", shown
        assert "Traceback" not in shown.out
        assert not our_qemus() and not _run_dirs("magic") and "magic" not in registry._live
        if hits == 10:
            break
    assert hits >= 5, f"only {hits} interrupts hit the launch"
    print(f"{hits} interrupted magic launches")
