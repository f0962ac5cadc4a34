"""AsyncVm (the logic, on the runtime loop) and Vm (its thin blocking face).

Every runtime call is raced against the VM going away, and calls that need a
running guest (console, agent, ``wait_for_halt_or``) are raced against it
halting too, as in petri: a crashed guest gives ``VmHalted: <reason>``, a dead
QEMU gives ``VmGone``, never a hang.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import inspect
import itertools
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
from PIL import Image

from . import persist
from .agent import Agent, AsyncAgent, agent_for
from .backends.base import Runtime
from .backends.qemu import QemuRuntime
from .console import AsyncConsole, Console
from .debug import BreakpointHit, DebugFacade, DebugMixin
from .errors import PetriError, PetriTimeout, VmGone, VmHalted
from .guests import Guest, get_guest
from .halt import Halt, HaltReason
from .inspect import InspectNode
from .loop import hop, run_sync, runs_on_runtime_loop
from .state import StateFacade, StateMixin
from .timeline import Timeline

if TYPE_CHECKING:
    from .widget import VmView

T = TypeVar("T")

#: How long a call may still finish after the VM halted under it (petri waits 5 s;
#: our calls are local, so a short grace suffices to pick up output already sent).
HALT_GRACE = 0.25
#: Default bound on control calls (pause, reset, screenshot...): QEMU answers in
#: milliseconds, so this only fires when QEMU is wedged.
CONTROL_TIMEOUT = 30.0
#: Default wait for a guest agent: a Linux guest under TCG boots in ~10 s.
AGENT_TIMEOUT = 120.0
#: Bound on one inspect() (a full /machine walk is thousands of QMP round trips).
INSPECT_TIMEOUT = 120.0

_live: dict[str, AsyncVm] = {}
_live_lock = threading.Lock()
_counters: collections.defaultdict[str, itertools.count[int]] = collections.defaultdict(lambda: itertools.count(1))


def _claim_name(name: str | None, guest: str) -> str:
    with _live_lock:
        if name is None:
            while (name := f"{guest}-{next(_counters[guest])}") in _live:
                pass
        elif not isinstance(name, str) or not name:
            raise PetriError(f"VM name must be a non-empty string, not {name!r}")
        elif name in _live:
            raise PetriError(f"a VM named {name!r} is already running; tear it down or pick another name")
        _live[name] = None  # type: ignore[assignment]  # reserved until launched
        return name


class AsyncVm(StateMixin, DebugMixin):
    """A running VM. Methods are coroutines usable from any event loop."""

    def __init__(self, name: str, guest: Guest, runtime: Runtime) -> None:
        self.name = name
        self.guest = guest
        self.runtime = runtime
        self._timeline = Timeline(name)
        self.console = AsyncConsole(self)
        self.halts: list[Halt] = []
        self._pending: collections.deque[Halt] = collections.deque()
        self._halt_signal = asyncio.Event()
        # Done once QEMU is gone or torn down: a plain future, awaited by every call's race
        # without a watcher task of its own (control calls are the hot path).
        self._gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.gone_reason: str | None = None
        self.state = "starting"
        self.torn_down = False
        self.calls_in_flight = 0  # runtime calls awaiting an answer right now
        self._own_resets = 0  # reset() calls under way (a RESUME then is theirs, not the view's)
        self._init_state()
        self._init_debug()

    def __repr__(self) -> str:
        return f"<AsyncVm {self.name} guest={self.guest.name} state={self.state}>"

    @property
    def run_id(self) -> str:
        return self._timeline.run

    @property
    def last_halt(self) -> Halt | None:
        return self.halts[-1] if self.halts else None

    @property
    def uptime(self) -> float:
        return self._timeline.now()

    @property
    def view_sockets(self) -> dict[str, Path]:
        """The live view's side-channel sockets (petri_nb.server); empty if the backend has none."""
        return dict(getattr(self.runtime, "view_sockets", {}))

    # -- EventSink: the backend reports here, on the runtime loop ------------

    def _record(self, source: str, kind: str, detail: str = "", data: Any = None,
                reason: str | None = None, t: float | None = None) -> None:
        self._timeline.record(source, kind, detail, data, reason, t)

    def record(self, source: str, kind: str, detail: str = "", data: Any = None) -> None:
        self._record(source, kind, detail, data)
        if source == "qmp" and self.state != "gone":
            if kind == "STOP" and self.state != "halted":
                self.state = "paused"
            elif kind == "RESUME" and (self.state != "halted" or not self._own_resets):
                self.state = "running"  # after a halt only a reset runs it: here the live view's button

    def halted(self, halt: Halt) -> None:
        halt = Halt(halt.reason, halt.detail, self._timeline.now(), halt.data)
        self.halts.append(halt)
        self._pending.append(halt)
        self._halt_signal.set()
        self.state = "halted"
        self._record("halt", "halt", halt.detail, halt.data, reason=halt.reason.name, t=halt.t)

    def console_data(self, data: bytes) -> None:
        self.console.feed(data)

    def gone(self, reason: str) -> None:
        self.gone_reason = reason
        self.state = "gone"
        self._mark_gone()
        self._record("runtime", "gone", reason)

    # -- racing ----------------------------------------------------------------

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
            if halts and (stop := self._breakpoint_stop()):
                raise BreakpointHit(stop, f"{name}()")
            raise PetriTimeout(f"{name}() timed out after {timeout:.3g} s waiting for {what or 'QEMU to answer'}")
        finally:
            for fut in (task, *watchers):
                fut.cancel()

    # -- runtime calls ---------------------------------------------------------

    async def _boot(self) -> None:
        self._check_usable()
        start = time.monotonic()
        # Not raced against VM loss: start() reports QEMU dying as a LaunchError itself.
        await self.runtime.start(self)
        self._record("runtime", "start()", f"ok in {(time.monotonic() - start) * 1000:.1f} ms", t=0.0)
        self.state = "running"
        if self.guest.ready:
            await self.console.expect(self.guest.ready, timeout=self.guest.ready_timeout)
        self._record("runtime", "ready", f"guest ready {time.monotonic() - start:.3f} s after launch")

    @runs_on_runtime_loop
    async def reset(self) -> None:
        """Host reset; also restarts a halted VM. Pending halts are acknowledged."""
        self._own_resets += 1  # until it returns, its RESUME leaves a halted VM's state alone
        try:
            await self._call("reset", self.runtime.reset())
        finally:
            self._own_resets -= 1
        self._acknowledge_halts()
        self.state = "running"

    def _acknowledge_halts(self) -> None:
        self._pending.clear()
        self._halt_signal.clear()

    @runs_on_runtime_loop
    async def pause(self) -> None:
        await self._call("pause", self.runtime.pause())
        if self.state == "running":
            self.state = "paused"

    @runs_on_runtime_loop
    async def resume(self) -> None:
        await self._call("resume", self.runtime.resume())
        self.state = "running"

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
    async def send_shutdown(self, kind: str = "poweroff") -> None:
        """Ask the guest to shut down (ACPI power button); a guest without a handler ignores it."""
        if kind == "reboot":
            # No ACPI reboot button exists: ask the guest agent (AgentError on a VM without one).
            agent = await agent_for(self, timeout=AGENT_TIMEOUT)
            await agent.reboot()
            return
        if kind != "poweroff":
            raise PetriError(f"send_shutdown() kind must be 'poweroff' or 'reboot', not {kind!r}")
        await self._call("send_shutdown", self.runtime.power_button())

    @runs_on_runtime_loop
    async def wait_for_agent(self, timeout: float = AGENT_TIMEOUT) -> AsyncAgent:
        """The guest agent, once it answers (petri_nb.agent); AgentError if the guest has none."""
        return await agent_for(self, timeout)

    @runs_on_runtime_loop
    async def update_command_line(self, command_line: str) -> None:
        """The kernel command line for the next reset(), as in petri (QEMU: reset() then starts a new QEMU)."""
        await self._call("update_command_line", self.runtime.update_command_line(command_line))
        self._record("runtime", "command line", command_line, {"command_line": command_line})

    @runs_on_runtime_loop
    async def add_pcie_device(self, kind: str, port: str | None = None, **options: Any) -> dict[str, Any]:
        """Hot-plug ``kind`` ("virtio-blk" with a scratch or given image, "virtio-net") into a root port."""
        info = await self._call("add_pcie_device", self.runtime.add_pcie_device(kind, port, **options))
        self._record("runtime", "pcie plugged", f"{info['kind']} {info['id']} on {info['port']}", info)
        return info

    @runs_on_runtime_loop
    async def remove_pcie_device(self, port: str, timeout: float | None = None) -> dict[str, Any]:
        """Hot-unplug the device in ``port``; returns once the guest has let it go."""
        info = await self._call("remove_pcie_device", self.runtime.remove_pcie_device(port, timeout), halts=True,
                                timeout=None)
        self._record("runtime", "pcie unplugged", f"{info['kind']} {info['id']} from {info['port']}", info)
        return info

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
    async def inspect(self, path: str | None = None) -> InspectNode:
        """The VM's state as an InspectNode tree (only the branch at ``path`` if given); also a timeline row."""
        node, stats = await self._call("inspect", self.runtime.inspect(path), timeout=INSPECT_TIMEOUT)
        self._timeline.snapshot(node, path, stats)
        return node

    @runs_on_runtime_loop
    async def save_timeline(self, runs_dir: str | os.PathLike[str] | None = None,
                            interval: float = persist.FLUSH_INTERVAL) -> Path:
        """Save this run to Parquet in ``<runs_dir>/<vm>-<run>/`` now, then new rows every ``interval``
        seconds and at teardown. Returns the run directory (for ``petri_nb.read_timelines``)."""
        return persist.save_timeline(self._timeline, runs_dir, interval)

    @runs_on_runtime_loop
    async def restart_openhcl(self, *args: Any, **kwargs: Any) -> None:
        await self._call("restart_openhcl", self.runtime.restart_openhcl(*args, **kwargs))

    @runs_on_runtime_loop
    async def save_openhcl(self, *args: Any, **kwargs: Any) -> None:
        await self._call("save_openhcl", self.runtime.save_openhcl(*args, **kwargs))

    @runs_on_runtime_loop
    async def restore_openhcl(self) -> None:
        await self._call("restore_openhcl", self.runtime.restore_openhcl())

    @runs_on_runtime_loop
    async def set_vtl2_settings(self, settings: Any) -> None:
        await self._call("set_vtl2_settings", self.runtime.set_vtl2_settings(settings))

    @runs_on_runtime_loop
    async def wait_for_boot_event(self) -> Any:
        return await self._call("wait_for_boot_event", self.runtime.wait_for_boot_event())

    @runs_on_runtime_loop
    async def teardown(self) -> None:
        """Stop QEMU and free everything. Idempotent."""
        if self.torn_down:
            return
        self.torn_down = True
        start = self._timeline.now()
        try:
            await self.runtime.teardown()
        finally:
            if self.state != "gone":
                self.state = "torn down"
            self._mark_gone()  # wake any waiter: nothing more will happen
            self.gone_reason = self.gone_reason or "torn down"
            self.console.flush_partial_line()
            self._record("runtime", "teardown()", f"ok in {(self._timeline.now() - start) * 1000:.1f} ms", t=start)
            self._timeline.close()  # final flush of a saved run
            with _live_lock:
                if _live.get(self.name) is self:
                    del _live[self.name]

    async def __aenter__(self) -> AsyncVm:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.teardown()


async def _launch(guest: str, name: str | None, accel: str, **options: Any) -> AsyncVm:
    spec = get_guest(guest)
    # Building a guest's config may fetch and build (the Linux guest's kernel and initramfs):
    # off the runtime loop, so running VMs stay serviced meanwhile.
    config = await asyncio.to_thread(spec.config, accel=accel, **options)
    name = _claim_name(name, spec.name)
    try:
        vm = AsyncVm(name, spec, QemuRuntime(config, name))
    except BaseException:
        with _live_lock:
            _live.pop(name, None)
        raise
    with _live_lock:
        _live[name] = vm
    try:
        await vm._boot()
    except BaseException:
        await vm.teardown()
        raise
    return vm


async def launch_async(guest: str = "tmk", *, name: str | None = None, accel: str = "tcg", **options: Any) -> AsyncVm:
    """Boot ``guest`` and return once it is ready (its banner seen on the console)."""
    return await hop(_launch(guest, name, accel, **options))


class Vm(StateFacade, DebugFacade):
    """Blocking handle over an AsyncVm; ``vm.aio`` is the async one. Displays as the live view."""

    def __init__(self, aio: AsyncVm) -> None:
        self.aio = aio
        self.console = Console(aio.console)

    def __repr__(self) -> str:
        halt = f" last_halt={self.last_halt}" if self.last_halt else ""
        return f"<Vm {self.name} guest={self.aio.guest.name} state={self.state}{halt}>"

    @property
    def name(self) -> str:
        return self.aio.name

    @property
    def state(self) -> str:
        return self.aio.state

    @property
    def last_halt(self) -> Halt | None:
        return self.aio.last_halt

    @property
    def halts(self) -> list[Halt]:
        return list(self.aio.halts)

    def reset(self) -> None:
        run_sync(self.aio.reset())

    def pause(self) -> None:
        run_sync(self.aio.pause())

    def resume(self) -> None:
        run_sync(self.aio.resume())

    def status(self) -> str:
        return run_sync(self.aio.status())

    def screenshot(self) -> Image.Image:
        return run_sync(self.aio.screenshot())

    def send_input(self, events: list[dict[str, Any]]) -> None:
        run_sync(self.aio.send_input(events))

    def send_shutdown(self, kind: str = "poweroff") -> None:
        run_sync(self.aio.send_shutdown(kind))

    def view(self) -> VmView:
        """The live view widget (one per Vm, shared by every display of it)."""
        from .widget import VmView

        if getattr(self, "_view", None) is None or self._view._closed:
            self._view = VmView(self)
        return self._view

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.view())

    def wait_for_agent(self, timeout: float = AGENT_TIMEOUT) -> Agent:
        return Agent(run_sync(self.aio.wait_for_agent(timeout)))

    def update_command_line(self, command_line: str) -> None:
        run_sync(self.aio.update_command_line(command_line))

    def add_pcie_device(self, kind: str, port: str | None = None, **options: Any) -> dict[str, Any]:
        return run_sync(self.aio.add_pcie_device(kind, port, **options))

    def remove_pcie_device(self, port: str, timeout: float | None = None) -> dict[str, Any]:
        return run_sync(self.aio.remove_pcie_device(port, timeout))

    def wait_for_halt(self, allow_reset: bool = False, timeout: float | None = None) -> Halt:
        return run_sync(self.aio.wait_for_halt(allow_reset, timeout))

    def wait_for_halt_or(self, call: Callable[[], Any] | Awaitable[Any], timeout: float | None = None) -> Any:
        return run_sync(self.aio.wait_for_halt_or(call, timeout))

    def timeline(self) -> pd.DataFrame:
        return self.aio.timeline()

    def inspect(self, path: str | None = None) -> InspectNode:
        return run_sync(self.aio.inspect(path))

    def save_timeline(self, runs_dir: str | os.PathLike[str] | None = None,
                      interval: float = persist.FLUSH_INTERVAL) -> Path:
        return run_sync(self.aio.save_timeline(runs_dir, interval))

    def restart_openhcl(self, *args: Any, **kwargs: Any) -> None:
        run_sync(self.aio.restart_openhcl(*args, **kwargs))

    def save_openhcl(self, *args: Any, **kwargs: Any) -> None:
        run_sync(self.aio.save_openhcl(*args, **kwargs))

    def restore_openhcl(self) -> None:
        run_sync(self.aio.restore_openhcl())

    def set_vtl2_settings(self, settings: Any) -> None:
        run_sync(self.aio.set_vtl2_settings(settings))

    def teardown(self) -> None:
        run_sync(self.aio.teardown())

    def __enter__(self) -> Vm:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.teardown()


def launch(guest: str = "tmk", *, name: str | None = None, accel: str = "tcg", **options: Any) -> Vm:
    """Boot ``guest`` and return a blocking ``Vm`` once it is ready."""
    return Vm(run_sync(_launch(guest, name, accel, **options)))


def live_vms() -> list[AsyncVm]:
    with _live_lock:
        return [vm for vm in _live.values() if vm is not None]


def _teardown_all_at_exit() -> None:
    vms = live_vms()
    if not vms:
        return

    async def all_down() -> None:
        await asyncio.wait_for(asyncio.gather(*(vm.teardown() for vm in vms), return_exceptions=True), 10)

    try:
        run_sync(all_down())
    except BaseException:
        pass  # the parent-death signal still takes QEMU down


atexit.register(_teardown_all_at_exit)
