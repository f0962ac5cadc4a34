"""AsyncVm (every runtime call, on the runtime loop), Vm (its generated blocking face) and launch.

VmCore holds the state and the race; the feature mixins (save/restore in
petri_nb.vm.save_restore, debugging in petri_nb.vm.debug) build on it; AsyncVm adds the calls
that need the guest agent, hot-plug and introspection, and ``launch`` makes one from
a guest description through the backend registry.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends import create_runtime
from ..errors import LaunchError, NotSupported, PetriError, PetriTimeout
from ..guests import Guest, describe
from ..model.boot_event import BootEvent
from ..model.inspect_node import InspectNode
from ..model.run_state import Fact
from ..records import persist
from ..records.icount import IcountStamps
from ..records.run_meta import describe_run, process_facts
from ..runtime.loop import blocking_twins, run_blocking, runs_on_runtime_loop
from ..runtime.validation import check_arguments
from . import boot_cache, readiness, registry
from .agent import Agent, AsyncAgent, agent_for
from .console import Console
from .debug import DebugMixin
from .keyboard import Keyboard, KeyboardMixin
from .preconditions import refuse_unless_replay
from .save_restore import StateMixin
from .screen_match import ScreenMatchMixin
from .screen_text import ScreenTextMixin
from .time_travel import TimeTravelMixin, start_replay
from .twin_names import VmTwins
from .watchdogs import SCREEN_EVERY, STALL_AFTER, WatchdogsMixin

if TYPE_CHECKING:
    import anywidget

#: Default wait for a guest agent: a Linux guest under TCG boots in ~10 s.
AGENT_TIMEOUT = 120.0
#: Default wait for the firmware's next boot event.
BOOT_EVENT_TIMEOUT = 60.0
#: Bound on one inspect() (a full /machine walk is thousands of QMP round trips).
INSPECT_TIMEOUT = 120.0


def live_view(vm: Vm) -> anywidget.AnyWidget:
    """Made by the notebook layer, which petri_nb's package sets here (vm/ never imports it)."""
    raise NotSupported("the live view needs petri_nb's notebook layer: import petri_nb (not only petri_nb.vm)")


class AsyncVm(StateMixin, DebugMixin, TimeTravelMixin, ScreenTextMixin, WatchdogsMixin, KeyboardMixin,
              ScreenMatchMixin):
    """A running VM. Methods are coroutines usable from any event loop."""

    @property
    def view_sockets(self) -> dict[str, Path]:
        """The live view's side-channel sockets (for petri_nb.server); empty if the backend has none."""
        return dict(self.runtime.view_sockets)

    async def _boot(self, use_cache: bool = False) -> None:
        self._check_usable()
        start = time.monotonic()
        # Not raced against VM loss: start() reports QEMU dying as a LaunchError itself.
        if getattr(self.runtime, "recorder", None) is not None:  # launch(record=True): rows get icounts
            self.icount_stamps = IcountStamps(self.runtime.icount)
            self.runtime.recorder.recording.run = self.run_id  # so its replay can tell its rows from others
        process = asyncio.ensure_future(asyncio.to_thread(process_facts))  # forks git once: not on the loop
        cache = await boot_cache.plan(self.runtime) if use_cache else None
        try:
            restored = False
            if cache is not None and cache.entry is not None:
                boot_cache.replay_output(self._sink, cache.entry)  # what the skipped boot printed, first
                since = readiness.mark(self)  # a refused entry boots normally: ready is judged after this
                restored = await boot_cache.start(self, self._sink, cache)
            else:
                since = readiness.mark(self)
                await self.runtime.start(self._sink)
            self._timeline.meta.update(describe_run(self.guest, self.runtime.facts, await process))
            self._timeline.meta["boot_cache"] = cache.outcome if cache is not None else None
            self._record("runtime", "start()", f"ok in {(time.monotonic() - start) * 1000:.1f} ms", t=0.0)
            self._transition(Fact.STARTED)
            if restored:
                self._record("runtime", "ready", f"guest ready {time.monotonic() - start:.3f} s after launch "
                             "(from boot cache)", {"boot_cache": "hit"})
                if self.guest.agent == "qga":  # siblings from one entry share a clock and an RNG state
                    self._in_background(self._freshen())
                return
            await self._until_ready(since, start)
            if cache is not None and cache.building is not None:
                took = time.monotonic() - start
                size = await boot_cache.store(self, cache, since.console, since.boot_events, took)
                if size is not None:
                    self._record("runtime", "boot cache stored", f"{size} bytes, {took:.3f} s boot skipped next time",
                                 {"bytes": size, "key": cache.key})
        finally:
            if cache is not None:
                cache.release()

    async def _freshen(self) -> None:
        """After a hit, in the background (launch does not wait for the agent): boot_cache.freshen."""
        try:
            agent = await agent_for(self._context, timeout=AGENT_TIMEOUT)
            done = await boot_cache.freshen(agent.transport)
        except PetriError as e:
            self._record("runtime", "boot cache not freshened", str(e))
            return
        self._record("runtime", "boot cache freshened", "; ".join(done) or "nothing the agent allows")

    async def _until_ready(self, since: readiness.Mark, start: float) -> None:
        if self.guest.ready is not None:
            try:
                await readiness.until_ready(self, since)
            except PetriTimeout as e:
                raise LaunchError(str(e)) from e
        self._record("runtime", "ready", f"guest ready {time.monotonic() - start:.3f} s after launch")

    @runs_on_runtime_loop
    async def send_shutdown(self, kind: str = "poweroff") -> None:
        """Ask the guest to shut down (ACPI power button); a guest without a handler ignores it."""
        if kind == "reboot":
            # No ACPI reboot button exists: ask the guest agent (AgentError on a VM without one).
            agent = await agent_for(self._context, timeout=AGENT_TIMEOUT)
            await agent.reboot()
            return
        if kind != "poweroff":
            raise PetriError(f"send_shutdown() kind must be 'poweroff' or 'reboot', not {kind!r}")
        await self._call("send_shutdown", self.runtime.power_button())

    @runs_on_runtime_loop
    async def wait_for_agent(self, timeout: float = AGENT_TIMEOUT) -> AsyncAgent:
        """The guest agent, once it answers (petri_nb.vm.agent); AgentError if the guest has none."""
        return await agent_for(self._context, timeout)

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
    async def wait_for_boot_event(self, timeout: float | None = BOOT_EVENT_TIMEOUT) -> BootEvent:
        """The next boot event not yet returned (boot attempt, success, failure, no boot device),
        from the firmware's debug console; all of them are also on the timeline (source ``boot``)."""
        return await self._call("wait_for_boot_event", self._next_boot_event(), timeout=timeout,
                                what="the firmware's next boot event")

    async def _next_boot_event(self) -> BootEvent:
        while not self._boot_unread:
            self._boot_signal.clear()
            await self._boot_signal.wait()
        self._boot_unread -= 1
        return self.boot_events[-1 - self._boot_unread]

    @runs_on_runtime_loop
    async def firmware_vars(self) -> bytes:
        """The UEFI variable store (boot entries, keys) as it is now: save it to start a later VM
        from it (``Guest(firmware_vars=path)``), as petri keeps a VMGS file."""
        return await self._call("firmware_vars", self.runtime.firmware_vars())

    @runs_on_runtime_loop
    async def replay(self, name: str | None = None) -> AsyncVm:
        """Finish this recorded run (its QEMU quits: QEMU completes the log only then) and return a
        replay of it, paused at instruction 0 with gdb attached (petri_nb.vm.time_travel)."""
        if getattr(self.runtime, "recorder", None) is None:
            refuse_unless_replay(self, "replay")  # NotSupported, saying how to record
        await self.teardown()
        return await start_replay(type(self), self.recording, name)  # type: ignore[arg-type]


#: launch() options that are the VM's rather than its guest's (a Guest has no such field).
VM_OPTIONS = ("accel", "boot_cache", "screen_watchdog", "console_stall")


async def _launch(guest: str | Guest | None, name: str | None, accel: str, screen_watchdog: float | None = SCREEN_EVERY,
                  console_stall: float | None = STALL_AFTER, boot_cache: bool = False, **options: Any) -> AsyncVm:
    _check_vm_options(screen_watchdog, console_stall, boot_cache)
    # Describing a preset may fetch and build (the Linux guest's kernel and initramfs):
    # off the runtime loop, so running VMs stay serviced meanwhile.
    spec = await asyncio.to_thread(describe, guest, **options)
    name = registry.claim_name(name, spec.name)
    try:
        vm = AsyncVm(name, spec, create_runtime(spec, name, accel))
    except BaseException:
        registry.release(name)
        raise
    registry.register(name, vm)
    try:
        await vm._boot(boot_cache)
        await vm.watch_screen(screen_watchdog)
        await vm.watch_console(console_stall)
    except BaseException:
        await vm.teardown()
        raise
    return vm


@runs_on_runtime_loop
async def launch_async(guest: str | Guest | None = None, *, name: str | None = None, accel: str = "tcg",
                       **options: Any) -> AsyncVm:
    """Boot ``guest`` (a preset name, a Guest, or Guest fields as keywords: ``kernel=``, ``disks=``...)
    and return once it is ready. ``screen_watchdog`` (seconds) and ``console_stall`` (seconds) start
    the watchdogs (``watch_screen``, ``watch_console``); None leaves one off. ``boot_cache=True``
    starts from the state this guest had when it was last ready (petri_nb.vm.boot_cache), or boots
    and stores that state for next time."""
    return await _launch(guest, name, accel, **options)


#: Plain (not coroutine) members of AsyncVm that Vm reads straight through.
_FORWARDED = ("name", "guest", "state", "torn_down", "pid", "last_halt", "halts", "uptime", "run_id", "run_meta",
              "gone_reason", "breakpoint_stop", "timeline", "checkpoints", "symbols", "observe_state", "view_sockets",
              "boot_events", "recording")


def _check_vm_options(screen_watchdog: float | None, console_stall: float | None, boot_cache: bool) -> None:
    """launch()'s own options, checked before the boot: a wrong one must not cost a whole boot first."""
    check_arguments(_check_vm_options, (screen_watchdog, console_stall, boot_cache), {}, called="launch")


def _as_vm(aio: AsyncVm) -> Vm:
    return Vm(aio)


_as_vm.__name__ = "Vm"  # the twin's return annotation


@blocking_twins(AsyncVm, wraps={"wait_for_agent": Agent, "replay": _as_vm}, forward=_FORWARDED)
class Vm(VmTwins):
    """Blocking handle over an AsyncVm; ``vm.aio`` is the async one. Displays as the live view.

    Its methods are generated from AsyncVm's coroutines (petri_nb.runtime.loop.blocking_twins), so the two
    cannot drift. There is one Vm per AsyncVm: ``Vm(aio)`` returns the existing handle,
    so every cell that shows the VM shares one live view."""

    aio: AsyncVm
    console: Console

    def __new__(cls, aio: AsyncVm) -> Vm:
        handle = aio.__dict__.get("_blocking_handle")
        if handle is None:
            handle = super().__new__(cls)
            handle.aio = aio
            handle.console = Console(aio.console)
            handle._keyboard = Keyboard(aio.keyboard)
            handle._view = None
            aio.__dict__["_blocking_handle"] = handle
        return handle

    def __repr__(self) -> str:
        halt = f" last_halt={self.last_halt}" if self.last_halt else ""
        return f"<Vm {self.name} guest={self.aio.guest.name} state={self.state}{halt}>"

    @property
    def keyboard(self) -> Keyboard:
        """Type, press keys and click (petri_nb.vm.keyboard): ``vm.keyboard.type("echo hi\\n")``."""
        return self._keyboard

    @property
    def agent(self) -> Agent:
        """The guest agent (``wait_for_agent()`` with its default timeout): ``vm.agent.run("uname -a")``."""
        return self.wait_for_agent()

    def view(self) -> anywidget.AnyWidget:
        """The live view widget (petri_nb.notebook.widget.VmView; one per Vm, shared by every display of it)."""
        if self._view is None or self._view._closed:
            self._view = live_view(self)
        return self._view

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.view())

    def __enter__(self) -> Vm:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.teardown()


def launch(guest: str | Guest | None = None, *, name: str | None = None, accel: str = "tcg", **options: Any) -> Vm:
    """Boot ``guest`` and return a blocking ``Vm`` once it is ready (see ``launch_async``)."""
    return Vm(run_blocking(_launch(guest, name, accel, **options), discard=_abandoned))


@runs_on_runtime_loop
async def replay_async(path: str | os.PathLike[str], *, name: str | None = None) -> AsyncVm:
    """Replay a saved recording (a recorded run's ``vm.recording`` directory), paused at its start."""
    return await start_replay(AsyncVm, path, name)


def replay(path: str | os.PathLike[str], *, name: str | None = None) -> Vm:
    """Blocking ``replay_async``: a colleague's recording, replayed here."""
    return Vm(run_blocking(start_replay(AsyncVm, path, name), discard=_abandoned))


async def _abandoned(vm: AsyncVm) -> None:
    """A VM whose launch ended just as Ctrl-C came: nobody holds it, so it goes."""
    await vm.teardown()


def live_vms() -> list[AsyncVm]:
    return registry.live_vms()


def _teardown_all_at_exit() -> None:
    vms = live_vms()
    if not vms:
        return

    async def all_down() -> None:
        await asyncio.wait_for(asyncio.gather(*(vm.teardown() for vm in vms), return_exceptions=True), 10)

    try:
        run_blocking(all_down())
    except BaseException:
        pass  # the parent-death signal still takes QEMU down


atexit.register(_teardown_all_at_exit)
