"""VmCore: the race every runtime call runs in, and the control calls.

Every runtime call is raced against the VM going away, and calls that need a
running guest (console, agent, ``wait_for_halt_or``) are raced against it
halting too, as in petri: a crashed guest gives ``VmHalted: <reason>``, a dead
QEMU gives ``VmGone``, never a hang. The state these races read lives in
``VmEvents`` (events.py); the feature mixins (petri_nb.vm.save_restore, petri_nb.vm.debug)
build on this class, and ``petri_nb.vm.facade.AsyncVm`` puts them together.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import pandas as pd
from PIL import Image

from ..backends.base import Runtime
from ..errors import BreakpointHit, PetriError, PetriTimeout, VmGone, VmHalted
from ..guests import Guest
from ..model.halt import Halt, HaltReason
from ..model.run_state import Fact
from ..runtime.abandon import abandon
from ..runtime.isolation import in_own_thread
from ..runtime.loop import CANCEL_SETTLE, on_runtime_loop, runs_on_runtime_loop
from . import readiness, registry
from .console import AsyncConsole
from .context import CallContext
from .events import VmEvents

T = TypeVar("T")
V = TypeVar("V", bound="VmCore")
_log = logging.getLogger(__name__)

#: How long a call may still finish after the VM halted under it (petri waits 5 s;
#: our calls are local, so a short grace suffices to pick up output already sent).
HALT_GRACE = 0.25
#: Default bound on control calls (pause, reset, screenshot...): QEMU answers in
#: milliseconds, so this only fires when QEMU is wedged.
CONTROL_TIMEOUT = 30.0
#: Longest a recorded run's timeline() waits for its newest rows' instruction counts.
STAMP_WAIT = 2.0


class VmCore(VmEvents):
    """A running VM's runtime calls, each raced against VM loss (and halts). Methods are
    coroutines usable from any event loop."""

    def __init__(self, name: str, guest: Guest, runtime: Runtime) -> None:
        super().__init__(name, guest, runtime)
        #: What the VM's features beside it get instead of the VM: its race, timeline and facts.
        self._context = CallContext(self, self._call, self._record, self._boot_grew)
        self.console = AsyncConsole(self._context, runtime.write_console)

    # -- racing ---------------------------------------------------------------

    async def _call(self, name: str, aw: Awaitable[T], *, halts: bool = False, breakpoints: bool = False,
                    timeout: float | None = CONTROL_TIMEOUT, what: str = "") -> T:
        """Run one runtime call: raced against VM loss (and halts), bounded, on the timeline."""
        start = self._timeline.now()
        outcome, error = "ok", ""
        self.calls_in_flight += 1
        try:
            self._check_usable()
            if self.icount_stamps is not None:  # a recorded run: earlier rows get their counts first
                await self.icount_stamps.flush()
            return await self._race(aw, name, halts=halts, breakpoints=breakpoints or halts, timeout=timeout,
                                    what=what)
        except BaseException as e:
            outcome, error = "error", f"{type(e).__name__}: {e}"
            raise
        finally:
            self.calls_in_flight -= 1
            if inspect.iscoroutine(aw) and inspect.getcoroutinestate(aw) == inspect.CORO_CREATED:
                aw.close()
            duration = self._timeline.now() - start
            detail = f"{outcome} in {duration * 1000:.1f} ms" + (f": {error}" if error else "")
            self._record("runtime", f"{name}()", detail,
                         {"duration_s": duration, "outcome": outcome, "error": error or None}, t=start)

    async def _race(self, aw: Awaitable[T], name: str, *, halts: bool, breakpoints: bool, timeout: float | None,
                    what: str) -> T:
        if not halts and not breakpoints:
            return await self._race_gone(aw, name, timeout, what)
        task = asyncio.ensure_future(aw)
        watchers: set[asyncio.Future[Any]] = set()
        if halts:
            watchers.add(asyncio.ensure_future(self._halt_signal.wait()))
        if breakpoints:
            watchers.add(asyncio.ensure_future(self._bp_signal.wait()))
        try:
            done, _ = await asyncio.wait({task, self._gone, *watchers}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if task not in done and done:
                # The VM halted or vanished; the call may still finish with what already arrived.
                done, _ = await asyncio.wait({task}, timeout=HALT_GRACE)
            if task in done:
                with self._gone_explains():
                    return task.result()
            if self._gone.done() and not (halts and self._pending):
                raise self._gone_during(name)
            if halts and self._pending:
                raise VmHalted(self._pending[0], f"{name}()")
            if breakpoints and (stop := self.breakpoint_stop):
                raise BreakpointHit(stop, f"{name}()")
            raise self._timed_out(name, timeout, what)
        finally:
            for fut in watchers:
                fut.cancel()
            if not task.done():
                # Give up on the call, but let its cleanup run (a save resumes the guest it paused)
                # before answering, so what the caller sees next is the VM as it is.
                abandon(task)
                await asyncio.wait({task}, timeout=CANCEL_SETTLE)

    @contextlib.contextmanager
    def _gone_explains(self) -> Iterator[None]:
        """A call's error that came from losing the VM becomes VmGone; PetriErrors pass as they are."""
        try:
            yield
        except PetriError:
            raise
        except Exception as e:
            if self._gone.done():
                raise self._gone_error() from e
            raise

    def _gone_during(self, name: str) -> VmGone:
        return VmGone(f"VM {self.name} is gone during {name}(): {self.gone_reason}")

    @staticmethod
    def _timed_out(name: str, timeout: float | None, what: str) -> PetriTimeout:
        return PetriTimeout(f"{name}() timed out after {timeout:.3g} s waiting for {what or 'QEMU to answer'}")

    async def _race_gone(self, aw: Awaitable[T], name: str, timeout: float | None, what: str) -> T:
        """The control-call race (VM loss and a timeout only), run in the caller's own task.

        Same outcomes as the general race, but with no task, watcher or ``asyncio.wait`` per
        call (control calls are the hot path): VM loss cancels the call after HALT_GRACE, the
        timeout cancels it at once, and the cancellation becomes VmGone or PetriTimeout."""
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
        why: list[str] = []  # set once: by the callback that cancels the call, or "finished"
        grace: list[asyncio.TimerHandle] = []

        def interrupt(reason: str) -> None:
            if not why:
                why.append(reason)
                task.cancel()

        def on_gone(_: object) -> None:  # may run after the call ended (already scheduled)
            if not why:
                grace.append(loop.call_later(HALT_GRACE, interrupt, "gone"))

        timer = None if timeout is None else loop.call_later(timeout, interrupt, "timeout")
        self._gone.add_done_callback(on_gone)
        try:
            with self._gone_explains():
                return await aw
        except asyncio.CancelledError:
            if not why or task.uncancel() > 0:  # not ours, or cancelled from outside as well
                raise
            if self._gone.done():
                raise self._gone_during(name) from None
            raise self._timed_out(name, timeout, what) from None
        finally:
            if not why:
                why.append("finished")  # a late on_gone or timer must not cancel the caller's next work
            if timer is not None:
                timer.cancel()
            for handle in grace:
                handle.cancel()
            self._gone.remove_done_callback(on_gone)

    # -- control calls ----------------------------------------------------------

    @runs_on_runtime_loop
    async def reset(self, wait_ready: bool = True) -> None:
        """Host reset; also restarts a halted VM. Pending halts are acknowledged. Returns once the
        guest is ready again, by the rule ``launch`` waits for (``Guest.ready``: so a line typed
        next is heard); ``wait_ready=False`` returns as soon as QEMU has reset."""
        await self._diagnoser.settled()  # a halt being diagnosed is reported before the reset
        before, since = len(self.halts), readiness.mark(self)
        # From here expect() reads the new boot, not the last one (before QMP's RESET can make the
        # state "running": whoever sees that and expects the banner must not find the old one).
        self.console.skip_to(since.console)
        await self._call("reset", self.runtime.reset())
        self._acknowledge_halts(before)  # a halt during the reset (a guest crashing at once) stays pending
        self._transition(Fact.RESTARTED)
        if not wait_ready:
            self._note_ready_later(since, "reset()")
        elif self.guest.ready is not None:
            start = self._timeline.now()
            await readiness.until_ready(self, since)  # type: ignore[arg-type]
            self._record("runtime", "ready", f"guest ready {self._timeline.now() - start:.3f} s after reset()")

    @runs_on_runtime_loop
    async def pause(self) -> None:
        await self._call("pause", self.runtime.pause())
        self._transition(Fact.STOPPED)

    @runs_on_runtime_loop
    async def resume(self) -> None:
        await self._call("resume", self.runtime.resume())
        self._transition(Fact.RESUMED)

    @runs_on_runtime_loop
    async def status(self) -> str:
        """The backend's own run state (QEMU's ``query-status``)."""
        return await self._call("status", self.runtime.status())

    @runs_on_runtime_loop
    async def screenshot(self) -> Image.Image:
        return await self._call("screenshot", self.runtime.screenshot())

    @runs_on_runtime_loop
    async def send_input(self, events: list[dict[str, Any]]) -> None:
        """Keyboard/pointer events in QMP ``input-send-event`` form (the live view's input path)."""
        await self._call("send_input", self.runtime.send_input(events))

    @runs_on_runtime_loop
    async def wait_for_halt(self, allow_reset: bool = False, timeout: float | None = None) -> Halt:
        """The next halt. With ``allow_reset``, guest resets are recorded, the VM is
        restarted and waiting goes on, as in petri."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            halt = await self._call("wait_for_halt", self._next_halt(), timeout=left, breakpoints=True,
                                    what="the VM to halt")
            if allow_reset and halt.reason is HaltReason.RESET:
                await self.reset(wait_ready=False)  # the wait goes on for halts, not for readiness
                continue
            return halt

    async def _next_halt(self) -> Halt:
        while not self._pending:
            signal = asyncio.ensure_future(self._halt_signal.wait())
            try:
                await asyncio.wait({self._gone, signal}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                signal.cancel()
            if not self._pending and self._gone.done():
                raise VmGone(f"VM {self.name} is gone while waiting for a halt: {self.gone_reason}")
        halt = self._pending.popleft()
        if not self._pending:
            self._halt_signal.clear()
        return halt

    @runs_on_runtime_loop
    async def wait_for_halt_or(self, call: Any, timeout: float | None = None) -> Any:
        """Run ``call`` (a coroutine, an async callable or a plain callable, run in a
        thread); if the VM halts first raise VmHalted. The halt stays pending for
        ``wait_for_halt``."""
        if inspect.iscoroutinefunction(call):
            call = call()
        if inspect.isawaitable(call):
            aw = call  # this method already runs on the runtime loop
        elif callable(call):
            aw = in_own_thread(call)
        else:
            raise PetriError(f"wait_for_halt_or() needs a coroutine or a callable, not {type(call).__name__}")
        return await self._call("wait_for_halt_or", aw, halts=True, timeout=timeout, what="the call to finish")

    def timeline(self) -> pd.DataFrame:
        """This run's events, one row each (the README's timeline schema)."""
        if self.icount_stamps is not None and not on_runtime_loop():  # a recorded run: rows wait for
            self.icount_stamps.settled.wait(STAMP_WAIT)  # their instruction counts (one QMP round trip)
        return self._timeline.to_frame()

    @runs_on_runtime_loop
    async def teardown(self) -> None:
        """Stop QEMU and free everything. Idempotent."""
        if self.torn_down:
            return
        start = self._timeline.now()
        self._transition(Fact.TORN_DOWN)
        for note in list(self._background):
            note.cancel()
        try:
            await self.runtime.teardown()
        finally:
            self._mark_gone()  # wake any waiter: nothing more will happen
            self.gone_reason = self.gone_reason or "torn down"
            self.console.flush_partial_line()
            self._record("runtime", "teardown()", f"ok in {(self._timeline.now() - start) * 1000:.1f} ms", t=start)
            self._timeline.close()  # final flush of a saved run
            registry.release(self.name, self)

    async def __aenter__(self: V) -> V:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.teardown()
