"""VmEvents: one VM's state, told by the backend (through its ``BackendSink``) and decided in one place.

Backends report facts here, on the runtime loop: QMP events, halts, console bytes, boot
events, debugger stops, QEMU's loss. They report them to the VM's ``BackendSink``, not to
the user's AsyncVm, so the callbacks are no part of the VM's API. The run state lives here
once (``RunState``, changed only by ``_transition``) and observers are told of each change.
``VmCore`` builds the runtime calls on top.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from ..backends.base import Runtime
from ..errors import PetriError, VmGone
from ..guests import Guest
from ..model.boot_event import BootEvent
from ..model.halt import Halt, Stop
from ..model.run_state import Fact, RunState, next_state
from ..records.icount import IcountStamps
from ..records.timeline import Timeline
from ..runtime.validation import checked
from . import readiness
from .console import AsyncConsole
from .diagnoser import Diagnoser

StateObserver = Callable[[RunState, RunState], None]
_log = logging.getLogger(__name__)
#: Stop reasons (gdb/MI) that are breakpoint hits rather than steps or our own pauses.
HIT_REASONS = {"breakpoint-hit", "watchpoint-trigger", "access-watchpoint-trigger", "read-watchpoint-trigger"}


class VmEvents:
    """What the backend tells us about one VM, and the state that follows from it."""

    console: AsyncConsole  # made by VmCore, on the VM's call context

    def __init__(self, name: str, guest: Guest, runtime: Runtime) -> None:
        self.name = name
        self.guest = guest
        self.runtime = runtime
        self._timeline = Timeline(name)
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
        self._view_resets = 0  # presses of the view's reset button whose RESET has not come yet
        self._background: set[asyncio.Task[None]] = set()  # readiness notes, a hit's freshen, watchdogs
        self._bp_signal = asyncio.Event()
        self._bp_stops: collections.deque[Stop] = collections.deque(maxlen=64)
        self.boot_events: list[BootEvent] = []
        self._boot_unread = 0  # boot events not yet returned by wait_for_boot_event
        self._boot_signal = asyncio.Event()
        self._boot_grew = asyncio.Event()  # set at every boot event (readiness waits on it)
        #: Set while recording (petri_nb.vm.time_travel.IcountStamps): rows get instruction counts.
        self.icount_stamps: IcountStamps | None = None
        self._diagnoser = Diagnoser(runtime.registers, runtime.screenshot, lambda: self.console.text,
                                    runtime.read_memory)
        #: What the backend reports to (``runtime.start(vm._sink)``).
        self._sink = BackendSink(self)

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

    @checked
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
    def run_meta(self) -> dict[str, Any]:
        """What this run runs on (host, QEMU version, accel, firmware, guest hash...; petri_nb.records.run_meta)."""
        return dict(self._timeline.meta)

    @property
    def last_halt(self) -> Halt | None:
        return self.halts[-1] if self.halts else None

    @property
    def uptime(self) -> float:
        return self._timeline.now()

    def _record(self, source: str, kind: str, detail: str = "", data: Any = None,
                reason: str | None = None, t: float | None = None) -> None:
        if self.icount_stamps is not None and source != "halt" and (data is None or isinstance(data, dict)):
            data = self.icount_stamps.stamp(data)  # a recorded run: every row can be seeked to
        self._timeline.record(source, kind, detail, data, reason, t)

    def _on_record(self, source: str, kind: str, detail: str = "", data: Any = None) -> None:
        self._record(source, kind, detail, data)
        if source == "runtime" and kind == "view reset":  # noted by the view server just before it acts
            self._view_resets += 1
        if source == "qmp" and kind in ("STOP", "RESUME") and not self._diagnoser.busy:  # no halt's STOP
            self._transition(Fact.STOPPED if kind == "STOP" else Fact.RESUMED)
        elif source == "qmp" and kind == "RESET" and not (data or {}).get("guest"):
            # A host reset: ours, or the live view's button on its own monitor. The halts
            # before it are answered, and a halted VM runs again.
            self._acknowledge_halts(len(self.halts))
            self._transition(Fact.RESTARTED)
            if self._view_resets:  # the view's, not reset()'s: nobody waits, so the timeline notes it
                self._view_resets -= 1
                since = readiness.mark(self)  # type: ignore[arg-type]
                self.console.skip_to(since.console)
                self._note_ready_later(since, "a reset from the view")

    def _note_ready_later(self, since: readiness.Mark, after: str) -> None:
        """Put ``ready`` on the timeline once the guest is ready again after ``after``, with no one
        waiting for it (a reset from the view, ``reset(wait_ready=False)``)."""
        if self.guest.ready is None:
            return

        async def note() -> None:
            start = self._timeline.now()
            try:
                await readiness.until_ready(self, since)  # type: ignore[arg-type]
            except PetriError as e:  # halted, gone or timed out: the timeline says so, nobody raises
                self._record("runtime", "not ready", f"after {after}: {e}")
                return
            self._record("runtime", "ready", f"guest ready {self._timeline.now() - start:.3f} s after {after}")

        self._in_background(note())

    def _in_background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` beside the caller; teardown cancels it if it is still running."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _on_halt(self, halt: Halt) -> None:
        halt = Halt(halt.reason, halt.detail, self._timeline.now(), halt.data)
        self._diagnoser.then_report(halt, self._report_halt)  # halt.diagnosis first (petri_nb.model.diagnosis)

    def _report_halt(self, halt: Halt) -> None:
        self.halts.append(halt)
        self._pending.append(halt)
        self._halt_signal.set()
        self._record("halt", "halt", halt.detail, halt.data, reason=halt.reason.name, t=halt.t)
        self._transition(Fact.HALTED)

    def _on_boot_event(self, event: BootEvent) -> None:
        event = dataclasses.replace(event, t=self._timeline.now())
        self.boot_events.append(event)
        self._boot_unread += 1
        self._boot_signal.set()
        self._boot_grew.set()
        self._record("boot", event.kind, event.detail, {"firmware": event.firmware, "line": event.line}, t=event.t)

    def _on_gone(self, reason: str) -> None:
        self.gone_reason = reason
        self._mark_gone()
        self._record("runtime", "gone", reason)
        self._transition(Fact.GONE)

    @property
    def breakpoint_stop(self) -> Stop | None:
        """The breakpoint the guest is stopped at, if any."""
        return self._bp_stops[-1] if self._bp_signal.is_set() else None

    def _on_debug_stop(self, payload: dict[str, Any]) -> None:
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

    def _on_debug_run(self) -> None:
        self._bp_signal.clear()

    def _check_usable(self) -> None:
        if self.torn_down:
            raise PetriError(f"VM {self.name} was torn down")
        if self._gone.done():
            raise self._gone_error()

    def _gone_error(self) -> VmGone:
        """What a call raises when the VM went away (before it or under it)."""
        return VmGone(f"VM {self.name} is gone: {self.gone_reason}")

    def _mark_gone(self) -> None:
        if not self._gone.done():
            self._gone.set_result(None)

    def _acknowledge_halts(self, upto: int | None = None) -> None:
        """Drop pending halts (only the first ``upto`` of ``self.halts``, if given)."""
        older = {id(h) for h in self.halts[:upto]}
        self._pending = collections.deque(h for h in self._pending if id(h) not in older)
        if not self._pending:
            self._halt_signal.clear()


class BackendSink:
    """The EventSink (petri_nb.backends.base) a VM hands its backend: the backend's callbacks,
    kept off the user's AsyncVm so that ``vm.`` completes to the VM's API only and no cell can
    report a halt or a lost QEMU by mistake. Each call goes to the VM's own handler."""

    __slots__ = ("_vm",)

    def __init__(self, vm: VmEvents) -> None:
        self._vm = vm

    def record(self, source: str, kind: str, detail: str = "", data: Any = None) -> None:
        self._vm._on_record(source, kind, detail, data)

    def halted(self, halt: Halt) -> None:
        self._vm._on_halt(halt)

    def console_data(self, data: bytes) -> None:
        self._vm.console.feed(data)

    def boot_event(self, event: BootEvent) -> None:
        self._vm._on_boot_event(event)

    def gone(self, reason: str) -> None:
        self._vm._on_gone(reason)

    def debug_stopped(self, payload: dict[str, Any]) -> None:
        self._vm._on_debug_stop(payload)

    def debug_running(self) -> None:
        self._vm._on_debug_run()
