"""QemuRuntime: the Runtime protocol over a QEMU process and its QMP session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image
from qemu.qmp import ExecuteError, QMPClient, QMPError

from ...errors import AgentError, LaunchError, PetriError, PetriTimeout, VmGone
from ...halt import Halt
from ...inspect import InspectNode
from ..base import EventSink, Runtime
from . import agent_port, cpu, display, gdb, migration, relaunch
from .command import QemuConfig, build_command, resolve_accel
from .halts import HaltMapper
from .hotplug import PcieHotplug
from .inspect import QmpInspector
from .instance import QemuInstance
from .process import QemuProcess
from .refused import QemuRefused
from .screen import screendump
from .serial_tap import SerialTap

# qemu.qmp logs connection failures at ERROR; we raise them as exceptions instead.
logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)

START_TIMEOUT = 30.0
QUIT_GRACE = 3.0
#: QEMU run states of a halted VM: only a reset (or restore) makes it run again.
HALTED_STATES = ("shutdown", "guest-panicked", "internal-error")
#: Bound on the query-status the event pump makes after an unexplained STOP.
STATUS_TIMEOUT = 5.0
FIRMWARE_REBOOT_TIMEOUT = 5.0
#: How long a broken QMP call waits for QEMU's exit to be reaped before blaming the link.
LINK_LOST_GRACE = 0.5


class QemuRuntime(Runtime):
    """One QEMU VM: a 0700 run directory with its sockets and logs, the process, one QMP client."""

    backend_name = "QEMU"

    def __init__(self, config: QemuConfig, name: str) -> None:
        self.config = config
        self.name = name
        self.accel = resolve_accel(config.accel)
        self.rundir: Path | None = None
        self.argv: list[str] = []
        self.qmp = QMPClient(name)
        self.proc: QemuProcess | None = None
        self._sink: EventSink | None = None
        self._console: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._exited: asyncio.Task[int] | None = None
        self._torn_down = False
        self._screen_lock = asyncio.Lock()
        self._host_reset = asyncio.Event()
        self._guest_reset = asyncio.Event()
        self._console_seen = asyncio.Event()
        self._halted = False  # a halt was reported and no reset followed
        self._own_stop = False  # the next STOP is our pause(), not a guest or QEMU failure
        self._cpu_log_offset = 0
        self.mapper = HaltMapper(self._read_cpu_log)
        self.hotplug = PcieHotplug(self)
        self.relaunch_pending = False  # update_command_line() was called: reset() starts a new QEMU
        self._gdb: gdb.GdbSession | None = None  # attached on first breakpoint/step/write_memory
        self._instance: QemuInstance | None = None  # the QEMU that is this VM now
        self.serial_tap = SerialTap(self.write_console)  # the live view's serial pane

    @property
    def view_sockets(self) -> dict[str, Path]:
        """The live view's unix sockets ("vnc", "control", "serial") for the server extension."""
        return display.view_sockets(self.rundir)

    # -- start ------------------------------------------------------------

    async def start(self, sink: EventSink) -> None:
        self._sink = sink
        try:
            await self._start()
        except BaseException:
            await self.teardown()
            raise

    async def _start(self) -> None:
        self.rundir = Path(tempfile.mkdtemp(prefix=f"petri_nb-{self.name}-"))  # mode 0700
        await self.serial_tap.start(self.view_sockets["serial"])
        self.argv = build_command(self.config, self.rundir, self.accel)
        inst = await QemuInstance.start(self.qmp, self.argv, self.rundir, failure=LaunchError,
                                        what="QEMU", timeout=START_TIMEOUT)
        await self.attach(inst)
        await self._execute("cont")

    async def attach(self, inst: QemuInstance) -> QemuInstance | None:
        """Make ``inst`` this VM's QEMU and service it; returns the one it replaces (not yet stopped).

        The old QEMU's readers go first, so its exit, which is on purpose, is not reported as VM loss."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        old, self._instance = self._instance, inst
        self.proc, self._exited, self.qmp, self._console = inst.proc, inst.exited, inst.qmp, inst.console_writer
        assert inst.console_reader is not None
        self._tasks = [
            asyncio.ensure_future(self._watch_exit()),
            asyncio.ensure_future(self._pump_console(inst.console_reader)),
            asyncio.ensure_future(self._pump_events()),
        ]
        return old

    # -- background tasks --------------------------------------------------

    async def _watch_exit(self) -> None:
        assert self._exited is not None and self.proc is not None
        await self._exited
        if not self._torn_down and self._sink is not None:
            self._sink.gone(self.proc.exit_description())

    async def _pump_console(self, reader: asyncio.StreamReader) -> None:
        assert self._sink is not None
        while chunk := await reader.read(65536):
            self._console_seen.set()
            self._sink.console_data(chunk)
            self.serial_tap.feed(chunk)

    async def _pump_events(self) -> None:
        assert self._sink is not None
        async for event in self.qmp.events:
            name = event["event"]
            data = event.get("data", {})
            self._sink.record("qmp", name, _event_summary(data), data)
            if name == "RESET":
                (self._guest_reset if data.get("guest") else self._host_reset).set()
                # A RESET (not a SHUTDOWN) means a host reset is under way, ours or the live view's
                # (its control socket): forget the halt and the firmware reboot's evidence.
                self.mapper.restarted()
                self._halted = False
            if name == "RESUME":
                self._own_stop = False  # a stop() that found the VM stopped sent no STOP
            halt = self.mapper.feed(name, data)
            if halt is None and name == "STOP":
                if self._own_stop:  # our pause(): asking QEMU why would only delay the next call
                    self._own_stop = False
                elif not self._halted:  # the STOP that follows a halt needs no explanation
                    halt = await self._halt_from_status()
            if halt is not None:
                self._halted = True
                self._sink.halted(halt)

    async def _halt_from_status(self) -> Halt | None:
        """Why QEMU stopped the CPUs on its own (e.g. a KVM internal error), as a halt if it is one."""
        try:
            status = (await asyncio.wait_for(self._execute("query-status"), STATUS_TIMEOUT))["status"]
        except (PetriError, asyncio.TimeoutError):
            return None  # a lost link is reported by the exit watcher; a wedged QEMU by the calls
        return HaltMapper.from_status(status, list(self.proc.stderr_tail) if self.proc else [])

    def _read_cpu_log(self) -> str:
        if self.rundir is None:
            return ""
        try:
            with open(self.rundir / "cpu.log", "rb") as f:
                f.seek(self._cpu_log_offset)
                data = f.read()
        except FileNotFoundError:
            return ""
        self._cpu_log_offset += len(data)
        return data.decode(errors="replace")

    # -- runtime calls -----------------------------------------------------

    async def _execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        """Every QMP command of this VM goes through here, so QMP failures surface as PetriErrors."""
        try:
            return await self.qmp.execute(cmd, args)
        except ExecuteError as e:
            raise QemuRefused(cmd, e) from e
        except (QMPError, OSError, EOFError) as e:
            raise await self._link_lost(cmd, e) from e

    async def _link_lost(self, cmd: str, error: BaseException) -> VmGone:
        """A QMP call broke off. A killed QEMU drops the socket before its exit is
        reaped, so give the exit a moment to be seen and name it; else the link alone died."""
        if self._exited is not None and self.proc is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exited), LINK_LOST_GRACE)
            if self._exited.done():
                return VmGone(f"VM {self.name} is gone during {cmd}: {self.proc.exit_description()}")
        return VmGone(f"VM {self.name}: lost the QMP connection to QEMU during {cmd} ({error!r}); "
                      f"it can no longer be controlled, tear it down")

    async def reset(self) -> None:
        # Guest resets are halts (-action reboot=shutdown), so a host reset switches
        # the action to a real reset while it runs. SeaBIOS finds its RAM already
        # initialised after any reset and reboots once more itself ("Attempting a
        # hard reboot"); that guest reset belongs to this call, not to the guest.
        if self.relaunch_pending:  # a new kernel command line: only a new QEMU reads it
            await relaunch.relaunch(self)
            self.relaunch_pending = False
            self.mapper.restarted()
            self._halted = False
            return
        self._host_reset.clear()
        self._guest_reset.clear()
        await self._execute("set-action", {"reboot": "reset"})
        try:
            await self._execute("system_reset")
            await self._wait_event(self._host_reset, "QEMU's RESET event", START_TIMEOUT)
            if await self.status() != "running":
                await self._execute("cont")
            with contextlib.suppress(PetriTimeout):
                await self._wait_event(self._guest_reset, "the firmware's reboot", FIRMWARE_REBOOT_TIMEOUT)
                # SeaBIOS's hard reboot fires 0xCF9 and then a triple fault; either may land
                # late, even mid-POST, which starts another hard reboot. Only the guest's own
                # first console output (SeaBIOS prints none on COM1) proves the firmware is done.
                self._console_seen.clear()
                await self._wait_event(self._console_seen, "the guest's console output", FIRMWARE_REBOOT_TIMEOUT)
        finally:
            await self._execute("set-action", {"reboot": "shutdown"})
        self.mapper.restarted()
        self._halted = False

    @staticmethod
    async def _wait_event(event: asyncio.Event, what: str, timeout: float) -> None:
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            raise PetriTimeout(f"timed out after {timeout:g} s waiting for {what}") from None

    async def pause(self) -> None:
        if debugger := gdb.attached(self):
            await debugger.interrupt()  # so gdb knows the guest stopped before anyone resumes it
            return
        self._own_stop = True
        await self._execute("stop")

    async def resume(self) -> None:
        # Only after a halt can `cont` wrongly succeed (a panicked guest would run on), so
        # only then is the extra round trip paid; QEMU itself refuses to cont a shut-down VM.
        if self._halted:
            await self._refuse_if_halted("resume")
        if debugger := gdb.attached(self):
            await debugger.continue_()  # gdb must see the guest run, or it misreads the next stop
            return
        await self._execute("cont")

    async def status(self) -> str:
        return (await self._execute("query-status"))["status"]

    async def screenshot(self) -> Image.Image:
        assert self.rundir is not None
        async with self._screen_lock:
            return await screendump(self._execute, self.rundir / "screen.ppm")

    async def write_console(self, data: bytes) -> None:
        assert self._console is not None
        self._console.write(data)
        await self._console.drain()

    async def save_state(self) -> bytes:
        return await migration.save(self)

    async def restore_state(self, data: bytes) -> str:
        return await migration.restore(self, data)

    async def registers(self) -> list[cpu.Register]:
        return await cpu.registers(self)

    async def read_memory(self, addr: int, size: int, physical: bool = False, cpu_index: int = 0) -> bytes:
        return await cpu.read_memory(self, addr, size, physical, cpu_index)

    async def write_memory(self, addr: int, data: bytes, physical: bool = False) -> None:
        cpu.check_range(addr, len(data))
        await (await gdb.session(self)).write_memory(addr, data, physical)

    async def break_at(self, addr: int) -> None:
        await (await gdb.session(self)).break_at(addr)

    async def remove_breakpoint(self, addr: int) -> None:
        await (await gdb.session(self)).delete(addr)

    async def step(self) -> int:
        await self._refuse_if_halted("step")
        return await gdb.step(self)

    async def continue_(self) -> None:
        await self._refuse_if_halted("continue_")
        await (await gdb.session(self)).continue_()

    async def _refuse_if_halted(self, call: str) -> None:
        status = await self.status()
        if status in HALTED_STATES:
            raise PetriError(f"cannot {call}(): the VM is halted ({status}); reset() it first")

    async def send_input(self, events: list[dict[str, Any]]) -> None:
        await self._execute("input-send-event", {"events": events})

    async def open_agent_channel(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # The guest's config adds the port (guests/linux uses agent_port.chardev_args).
        if self.rundir is None or not agent_port.has_agent_port(self.argv):
            raise AgentError(f"VM {self.name} has no guest agent: its guest was launched without an agent port")
        return await agent_port.accept_connection(self.rundir)

    async def update_command_line(self, command_line: str) -> None:
        relaunch.set_command_line(self, command_line)
        self.relaunch_pending = True

    async def add_pcie_device(self, kind: str, port: str | None = None, **options: Any) -> dict[str, Any]:
        return await self.hotplug.add(kind, port, **options)

    async def remove_pcie_device(self, port: str, timeout: float | None = None) -> dict[str, Any]:
        return await self.hotplug.remove(port, **({} if timeout is None else {"timeout": timeout}))

    async def power_button(self) -> None:
        await self._execute("system_powerdown")

    async def inspect(self, path: str | None = None) -> tuple[InspectNode, dict[str, Any]]:
        return await QmpInspector(self._execute, self.accel).inspect(path)

    # -- teardown ------------------------------------------------------------

    async def teardown(self) -> None:
        if self._torn_down:
            return
        self._torn_down = True
        await gdb.detach(self)
        if self._instance is not None:  # first, so the pumps still record QEMU's last events
            await self._instance.stop(QUIT_GRACE)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.serial_tap.close()
        if self.rundir is not None:
            shutil.rmtree(self.rundir, ignore_errors=True)


def _event_summary(data: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in data.items() if not isinstance(v, (dict, list)))
