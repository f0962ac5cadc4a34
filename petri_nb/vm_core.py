"""VmCore: one VM's state, its event sink and the race every runtime call runs in.

Every runtime call is raced against the VM going away, and calls that need a
running guest (console, agent, ``wait_for_halt_or``) are raced against it
halting too, as in petri: a crashed guest gives ``VmHalted: <reason>``, a dead
QEMU gives ``VmGone``, never a hang. The state lives here once (``RunState``,
changed only by ``_transition``); the feature mixins (petri_nb.state,
petri_nb.debug) build on this class, and ``petri_nb.vm.AsyncVm`` puts them together.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pandas as pd
from PIL import Image

from . import live
from .backends.base import Runtime
from .boot import BootEvent
from .console import AsyncConsole
from .diagnosis import Diagnoser
from .errors import BreakpointHit, PetriError, PetriTimeout, VmGone, VmHalted
from .guests import Guest
from .halt import Halt, HaltReason, Stop
from .loop import runs_on_runtime_loop
from .run_state import Fact, RunState, next_state
from .timeline import Timeline

T = TypeVar("T")
V = TypeVar("V", bound="VmCore")
StateObserver = Callable[[RunState, RunState], None]
_log = logging.getLogger(__name__)

#: How long a call may still finish after the VM halted under it (petri waits 5 s;
#: our calls are local, so a short grace suffices to pick up output already sent).
HALT_GRACE = 0.25
#: Default bound on control calls (pause, reset, screenshot...): QEMU answers in
#: milliseconds, so this only fires when QEMU is wedged.
CONTROL_TIMEOUT = 30.0
#: Stop reasons (gdb/MI) that are breakpoint hits rather than steps or our own pauses.
HIT_REASONS = {"breakpoint-hit", "watchpoint-trigger", "access-watchpoint-trigger", "read-watchpoint-trigger"}


class VmCore:
    """A running VM's state and control calls. Methods are coroutines usable from any event loop."""

    def __init__(self, name: str, guest: Guest, runtime: Runtime) -> None:
        self.name = name
        self.guest = guest
        self.runtime = runtime
        self._timeline = Timeline(name)
        self.console = AsyncConsole(self._record, self._call, runtime.write_console)
        self.halts: list[Halt] = []
        self._pending: collections.deque[Halt] = collections.deque()
        self._halt_signal = asyncio.Event()
        # Done once QEMU is gone or torn down: a plain future, awaited by every call's race
        # without a watcher task of its own (control calls are the hot path).
        self._gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.gone_reason: str | None = None
        self._state = RunState.STARTING
        self._state_observers: list[StateObserver] = []
        self.calls_in_flight = 0  # runtime calls awaiting an answer right now
        self._bp_signal = asyncio.Event()
        self._bp_stops: collections.deque[Stop] = collections.deque(maxlen=64)
        self.boot_events: list[BootEvent] = []
        self._boot_unread = 0  # boot events not yet returned by wait_for_boot_event
        self._boot_signal = asyncio.Event()
        self._diagnoser = Diagnoser(runtime.registers, runtime.screenshot, lambda: self.console.text)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} guest={self.guest.name} state={self.state}>"

    @property
    def state(self) -> RunState:
        """What the VM is doing now; changes are pushed to ``observe_state`` subscribers."""
        return self._state

    @property
    def torn_down(self) -> bool:
        return self._state is RunState.TORN_DOWN

    @property
    def pid(self) -> int | None:
        """The backend process id (QEMU's), or None when there is none (yet, or any more)."""
        return self.runtime.pid

    def observe_state(self, callback: StateObserver) -> Callable[[], None]:
        """Call ``callback(old, new)`` on the runtime loop at every state change; returns an unsubscribe."""
        self._state_observers.append(callback)
        return lambda: self._state_observers.remove(callback) if callback in self._state_observers else None

    def _transition(self, fact: Fact) -> None:
        """The one place the state changes: the fact decides it (run_state.next_state)."""
        new = next_state(self._state, fact)
        if new is self._state:
            return
        old, self._state = self._state, new
        for callback in list(self._state_observers):
            try:
                callback(old, new)
            except Exception:  # an observer's bug must not break the VM
                _log.exception("state observer %r failed", callback)

    @property
    def run_id(self) -> str:
        return self._timeline.run

    @property
    def last_halt(self) -> Halt | None:
        return self.halts[-1] if self.halts else None

    @property
    def uptime(self) -> float:
        return self._timeline.now()

    # -- EventSink: the backend reports here, on the runtime loop ------------

    def _record(self, source: str, kind: str, detail: str = "", data: Any = None,
                reason: str | None = None, t: float | None = None) -> None:
        self._timeline.record(source, kind, detail, data, reason, t)

    def record(self, source: str, kind: str, detail: str = "", data: Any = None) -> None:
        self._record(source, kind, detail, data)
        if source == "qmp" and kind in ("STOP", "RESUME") and not self._diagnoser.busy:  # no halt's STOP
            self._transition(Fact.STOPPED if kind == "STOP" else Fact.RESUMED)

    def halted(self, halt: Halt) -> None:
        halt = Halt(halt.reason, halt.detail, self._timeline.now(), halt.data)
        self._diagnoser.then_report(halt, self._report_halt)  # halt.diagnosis first (petri_nb.diagnosis)

    def _report_halt(self, halt: Halt) -> None:
        self.halts.append(halt)
        self._pending.append(halt)
        self._halt_signal.set()
        self._record("halt", "halt", halt.detail, halt.data, reason=halt.reason.name, t=halt.t)
        self._transition(Fact.HALTED)

    def boot_event(self, event: BootEvent) -> None:
        event = BootEvent(event.kind, event.detail, event.firmware, self._timeline.now(), event.data)
        self.boot_events.append(event)
        self._boot_unread += 1
        self._boot_signal.set()
        self._record("boot", event.kind, event.detail, {"firmware": event.firmware, **event.data}, t=event.t)

    def console_data(self, data: bytes) -> None:
        self.console.feed(data)

    def gone(self, reason: str) -> None:
        self.gone_reason = reason
        self._mark_gone()
        self._record("runtime", "gone", reason)
        self._transition(Fact.GONE)
    @property
    def breakpoint_stop(self) -> Stop | None:
        """The breakpoint the guest is stopped at, if any."""
        return self._bp_stops[-1] if self._bp_signal.is_set() else None

    def debug_stopped(self, payload: dict[str, Any]) -> None:
        reason = payload.get("reason", "")
        try:
            addr = int(payload.get("frame", {}).get("addr", "0"), 16)
        except ValueError:
            addr = 0
        if reason in HIT_REASONS:
            stop = Stop(addr, reason, self.uptime, payload)
            self._bp_stops.append(stop)
            self._bp_signal.set()
            self._record("runtime", "breakpoint", f"{reason} at 0x{addr:x}", payload)

    def debug_running(self) -> None:
        self._bp_signal.clear()

    # -- racing ---------------------------------------------------------------

    def _check_usable(self) -> None:
        if self.torn_down:
            raise PetriError(f"VM {self.name} was torn down")
        if self._gone.done():
            raise VmGone(f"VM {self.name} is gone: {self.gone_reason}")

    def _mark_gone(self) -> None:
        if not self._gone.done():
            self._gone.set_result(None)

    async def _call(self, name: str, aw: Awaitable[T], *, halts: bool = False,
                    timeout: float | None = CONTROL_TIMEOUT, what: str = "") -> T:
        """Run one runtime call: raced against VM loss (and halts), bounded, on the timeline."""
        start = self._timeline.now()
        outcome, error = "ok", ""
        self.calls_in_flight += 1
        try:
            self._check_usable()
            return await self._race(aw, name, halts=halts, timeout=timeout, what=what)
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

    async def _race(self, aw: Awaitable[T], name: str, *, halts: bool, timeout: float | None, what: str) -> T:
        task = asyncio.ensure_future(aw)
        watchers: set[asyncio.Future[Any]] = set()
        if halts:
            watchers.add(asyncio.ensure_future(self._halt_signal.wait()))
            watchers.add(asyncio.ensure_future(self._bp_signal.wait()))
        try:
            done, _ = await asyncio.wait({task, self._gone, *watchers}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if task not in done and done:
                # The VM halted or vanished; the call may still finish with what already arrived.
                done, _ = await asyncio.wait({task}, timeout=HALT_GRACE)
            if task in done:
                try:
                    return task.result()
                except PetriError:
                    raise
                except Exception as e:
                    if self._gone.done():
                        raise VmGone(f"VM {self.name} is gone: {self.gone_reason}") from e
                    raise
            if self._gone.done() and not (halts and self._pending):
                raise VmGone(f"VM {self.name} is gone during {name}(): {self.gone_reason}")
            if halts and self._pending:
                raise VmHalted(self._pending[0], f"{name}()")
            if halts and (stop := self.breakpoint_stop):
                raise BreakpointHit(stop, f"{name}()")
            raise PetriTimeout(f"{name}() timed out after {timeout:.3g} s waiting for {what or 'QEMU to answer'}")
        finally:
            for fut in (task, *watchers):
                fut.cancel()

    # -- control calls ----------------------------------------------------------

    @runs_on_runtime_loop
    async def reset(self) -> None:
        """Host reset; also restarts a halted VM. Pending halts are acknowledged."""
        await self._diagnoser.settled()  # a halt being diagnosed is reported before the reset
        await self._call("reset", self.runtime.reset())
        self._acknowledge_halts()
        self._transition(Fact.RESTARTED)

    def _acknowledge_halts(self) -> None:
        self._pending.clear()
        self._halt_signal.clear()

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
            halt = await self._call("wait_for_halt", self._next_halt(), timeout=left,
                                    what="the VM to halt")
            if allow_reset and halt.reason is HaltReason.RESET:
                await self.reset()
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
            aw = asyncio.to_thread(call)
        else:
            raise PetriError(f"wait_for_halt_or() needs a coroutine or a callable, not {type(call).__name__}")
        return await self._call("wait_for_halt_or", aw, halts=True, timeout=timeout, what="the call to finish")

    def timeline(self) -> pd.DataFrame:
        """This run's events, one row each (DESIGN.md timeline schema)."""
        return self._timeline.to_frame()

    @runs_on_runtime_loop
    async def teardown(self) -> None:
        """Stop QEMU and free everything. Idempotent."""
        if self.torn_down:
            return
        start = self._timeline.now()
        self._transition(Fact.TORN_DOWN)
        try:
            await self.runtime.teardown()
        finally:
            self._mark_gone()  # wake any waiter: nothing more will happen
            self.gone_reason = self.gone_reason or "torn down"
            self.console.flush_partial_line()
            self._record("runtime", "teardown()", f"ok in {(self._timeline.now() - start) * 1000:.1f} ms", t=start)
            self._timeline.close()  # final flush of a saved run
            live.release(self.name, self)

    async def __aenter__(self: V) -> V:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.teardown()
