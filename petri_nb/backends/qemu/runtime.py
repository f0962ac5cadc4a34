"""QemuRuntime: the Runtime protocol over a QEMU process and its QMP session."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
from pathlib import Path
from typing import Any

from PIL import Image
from qemu.qmp import ExecuteError, QMPClient, QMPError

from ...errors import AgentError, LaunchError, NotSupported, PetriError, QemuRefused, VmGone
from ...guests.description import Guest
from ...model.inspect_node import InspectNode
from .. import view
from ..base import EventSink, Runtime
from . import agent_port, command, disks, display, migration, ready_state, rundirs
from .boot_events import BootWatcher
from .debug_calls import GuestDebugCalls
from .firmware import VARS_FILE, firmware_args, has_variable_store, reboots_itself_after_reset
from .gdb import Debugger
from .halts import CpuLog, EventPump
from .host_reset import host_reset
from .hotplug import PcieHotplug
from .instance import QemuInstance, qemu_version
from .introspect import QmpInspector
from .process import QemuProcess
from .recording import Recorder
from .screen import screendump
from .serial_tap import SerialTap
from .tpm import Swtpm

# qemu.qmp logs connection failures at ERROR; we raise them as exceptions instead.
logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)

START_TIMEOUT = 30.0
QUIT_GRACE = 3.0
#: Bound on starting a replacement QEMU (restore, relaunch) and loading a state into it.
REPLACE_TIMEOUT = migration.MIGRATE_TIMEOUT
#: How long the QEMU a restore or relaunch replaces gets to quit before it is killed.
OLD_QEMU_GRACE = 3.0
#: Sockets QEMU serves in the run dir: a replacement QEMU serves them at the same paths.
SERVED_SOCKETS = (command.GDB_SOCKET, *display.QEMU_VIEW_SOCKETS)
#: How long a broken QMP call waits for QEMU's exit to be reaped before blaming the link.
LINK_LOST_GRACE = 0.5


class QemuRuntime(GuestDebugCalls, Runtime):
    """One QEMU VM: a 0700 run directory with its sockets and logs, the process, one QMP client."""

    backend_name = "QEMU"

    def __init__(self, guest: Guest, name: str, accel: str = "tcg") -> None:
        self.guest = guest
        self.name = name
        self.accel = command.resolve_accel(accel)
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
        self._console_seen = asyncio.Event()
        self.relaunch_pending = False  # update_command_line() was called: reset() starts a new QEMU
        self._firmware_reboots = reboots_itself_after_reset(guest.firmware)
        self._instance: QemuInstance | None = None  # the QEMU that is this VM now
        self._tpm: Swtpm | None = None
        self._spares: set[QemuInstance] = set()  # replacement QEMUs not (yet) the VM's: discarded at teardown
        self._disks: list[disks.PreparedDisk] = []
        self._ready_state: Path | None = None  # start_from(): the boot cache entry this VM starts from
        self.recorder = Recorder(guest, name, self.accel) if guest.record else None  # launch(record=True)
        # Made in _start, once the run dir and the command line exist.
        self._pump: EventPump
        self._cpu_log: CpuLog
        self.debugger: Debugger
        self.hotplug: PcieHotplug
        self.serial_tap = SerialTap(self.write_console)  # the live view's serial pane

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def view_sockets(self) -> dict[str, Path]:
        return view.view_sockets(self.rundir)

    @property
    def facts(self) -> dict[str, Any]:
        return {"backend": "qemu", "qemu_version": qemu_version(self.qmp), "accel": self.accel,
                "binary": self.guest.binary}

    # -- start ------------------------------------------------------------

    async def start(self, sink: EventSink) -> None:
        self._sink = sink if self.recorder is None else self.recorder.sink(sink, self._execute)
        try:
            await self._start()
        except BaseException:
            await self.teardown()
            raise

    async def _start(self) -> None:
        assert self._sink is not None
        sink = self._sink
        self.rundir = rundirs.make(self.name)
        await self.serial_tap.start(self.view_sockets["serial"])
        view.write_facts(self.rundir, "qemu", firmware_reboots_after_reset=self._firmware_reboots)
        self.argv = await asyncio.to_thread(self._prepare, self.rundir)  # qemu-img and file copies: off the loop
        if self.guest.tpm:
            self._tpm = await Swtpm.start(self.rundir)
            self.argv[1:1] = self._tpm.qemu_args()
        self._cpu_log = CpuLog(self.rundir / "cpu.log")
        self._boot = BootWatcher(sink.boot_event)
        self._pump = EventPump(sink, self._cpu_log, self.status, lambda: list(self.proc.stderr_tail) if self.proc
                               else [], view.ViewActions(self.rundir).new)
        self.debugger = Debugger(self.rundir / command.GDB_SOCKET if self.guest.gdb else None, self.status,
                                 self.registers, sink.debug_stopped, sink.debug_running)
        self.hotplug = PcieHotplug(self._execute, lambda listener: self.qmp.listen(listener), self.rundir,
                                   self.argv)
        await self._attach(await self._first_qemu())
        await self._begin()

    async def _first_qemu(self) -> QemuInstance:
        """The VM's first QEMU: from start_from()'s state if QEMU takes it, else booting normally."""
        if self._ready_state is None:
            return await self._spawn(self.argv)
        inst = await self._spawn([*self.argv, "-incoming", "defer"])
        try:
            ready_state.check_loaded(await ready_state.load(inst, self._ready_state))
            return inst
        except PetriError as e:  # a state this QEMU cannot take: boot normally, the caller discards it
            await inst.discard()
            assert self._sink is not None and self.rundir is not None
            self._sink.record("runtime", "boot cache refused", str(e))
            self._ready_state = None
            self.argv = await asyncio.to_thread(self._prepare, self.rundir)  # fresh overlays and variables
            return await self._spawn(self.argv)

    async def _spawn(self, argv: list[str]) -> QemuInstance:
        assert self.rundir is not None
        try:
            return await QemuInstance.start(QMPClient(self.name), argv, self.rundir, failure=LaunchError,
                                            what="QEMU", timeout=START_TIMEOUT)
        except LaunchError as e:
            if (better := disks.explain_lock(self._disks, e)) is e:
                raise
            raise better from e

    async def _begin(self) -> None:
        """Let the guest run (a replay stays paused instead)."""
        await self._execute("cont")

    def _prepare(self, rundir: Path) -> list[str]:
        """Disk overlays, the variable store (start_from()'s when given) and the command line that uses them."""
        if self._ready_state is None:
            self._disks, vars_from = disks.prepare_all(self.guest.disks, rundir), self.guest.firmware_vars
        else:
            self._disks, vars_from = ready_state.restore_files(self._ready_state, rundir, self.guest)
        device_args = firmware_args(self.guest.firmware, rundir, vars_from)
        argv = command.build_command(self.guest, rundir, self.accel, self._disks, device_args)
        return argv if self.recorder is None else self.recorder.command(argv, rundir)

    async def _attach(self, inst: QemuInstance) -> QemuInstance | None:
        """Make ``inst`` this VM's QEMU and service it; returns the one it replaces (not yet stopped).

        The old QEMU's readers go first, so its exit, which is on purpose, is not reported as VM loss."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        old, self._instance = self._instance, inst
        self._cpu_log.reopen()  # this QEMU's log, open from now on (it survives a deleted run dir)
        self.proc, self._exited, self.qmp, self._console = inst.proc, inst.exited, inst.qmp, inst.console_writer
        assert inst.console_reader is not None
        self._tasks = [
            asyncio.ensure_future(self._watch_exit()),
            asyncio.ensure_future(self._pump_console(inst.console_reader)),
            asyncio.ensure_future(self._pump.run(inst.qmp)),
        ]
        read_ring = functools.partial(inst.qmp.execute, "ringbuf-read",
                                      {"device": command.DEBUG_PORT_RING, "size": command.DEBUG_PORT_RING_SIZE,
                                       "format": "base64"})
        self._tasks.append(asyncio.ensure_future(self._boot.pump_debug_port(read_ring)))
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
            self._boot.console(chunk)
            self.serial_tap.feed(chunk)

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
        if self.recorder is not None:
            self.recorder.refuse("reset")
        if self.relaunch_pending:  # a new kernel command line: only a new QEMU reads it
            await self._relaunch()
            self.relaunch_pending = False
            return
        self._boot.restarted()
        await host_reset(self._execute, lambda listener: self.qmp.listen(listener), self.status, self._console_seen,
                         self._firmware_reboots)
        self._pump.restarted()

    async def _relaunch(self) -> None:
        """A fresh QEMU from the updated argv replaces this one and runs (the guest boots from scratch)."""
        await self._replace(await self._start_replacement((), "relaunch"))
        self.hotplug.forget_all()  # the new QEMU has only the command line's devices
        await self.resume()  # through gdb when breakpoints were set again

    async def _start_replacement(self, extra_args: tuple[str, ...], what: str) -> QemuInstance:
        """A second QEMU from this VM's command line (plus ``extra_args``) that may become the VM."""
        assert self.rundir is not None
        if not self.rundir.is_dir():
            raise PetriError(f"cannot {what}: VM {self.name}'s run directory {self.rundir} was deleted "
                             "(it holds QEMU's sockets); tear the VM down and launch it again")
        return await QemuInstance.start(QMPClient(self.name), [*self.argv, *extra_args], self.rundir,
                                        failure=PetriError, what=what, timeout=REPLACE_TIMEOUT, track=self._spares)

    async def _replace(self, new: QemuInstance) -> None:
        """Make ``new`` this VM's QEMU; the old one is quit without a ``gone`` report; breakpoints
        are set again in the new one (they are the debugger's, not part of the saved state)."""
        if self._torn_down:  # torn down while the new QEMU started or loaded: it must not outlive the VM
            await new.discard()
            raise PetriError(f"VM {self.name} was torn down while its QEMU was being replaced")
        await self.debugger.detach()
        old = await self._attach(new)
        self._spares.discard(new)
        self._pump.restarted()
        self._boot.restarted()
        if old is not None:  # it would unlink the sockets the new QEMU now serves at the same paths
            with display.sockets_kept(self.rundir, SERVED_SOCKETS):
                await old.stop(OLD_QEMU_GRACE)
        await self.debugger.rearm()

    async def pause(self) -> None:
        if debugger := self.debugger.attached():
            await debugger.interrupt()  # so gdb knows the guest stopped before anyone resumes it
            return
        self._pump.expect_own_stop()
        await self._execute("stop")

    async def resume(self) -> None:
        # Only after a halt can `cont` wrongly succeed (a panicked guest would run on), so
        # only then is the extra round trip paid; QEMU itself refuses to cont a shut-down VM.
        if self._pump.halted:
            await self._refuse_if_halted("resume")
        if debugger := self.debugger.attached():
            await debugger.continue_()  # gdb must see the guest run, or it misreads the next stop
            return
        await self._execute("cont")

    async def status(self) -> str:
        return (await self._execute("query-status"))["status"]

    async def icount(self) -> int:
        """Instructions executed so far (a recording or a replay: QEMU counts them only under -icount)."""
        return int((await self._execute("query-replay"))["icount"])

    async def screenshot(self) -> Image.Image:
        assert self.rundir is not None
        async with self._screen_lock:
            return await screendump(self._execute, self.rundir / "screen.ppm")

    async def write_console(self, data: bytes) -> None:
        assert self._console is not None
        try:
            self._console.write(data)
            await self._console.drain()
        except OSError as e:  # QEMU died under the write: say so, as every QMP call does
            raise await self._link_lost("a console write", e) from e

    async def save_state(self) -> bytes:
        if self.recorder is not None:
            self.recorder.refuse("save_state")
        return await migration.save(self._execute, self.qmp.send_fd_scm, self.status, self.pause, self.resume)

    async def restore_state(self, data: bytes) -> str:
        """Replace the running QEMU by one loaded from ``data``; returns its run state (not resumed)."""
        if self.recorder is not None:
            self.recorder.refuse("restore_state")
        data = migration.check_stream(data)
        incoming = await self._start_replacement(("-incoming", "defer"), "restore")
        try:
            status = await migration.load(incoming, data)
        except BaseException:
            await incoming.discard()
            raise
        await self._replace(incoming)
        return status

    def boot_identity(self) -> dict[str, Any]:
        return ready_state.identity(self.guest, self.accel)

    async def save_ready_state(self, folder: Path) -> None:
        assert self.rundir is not None
        await ready_state.save(folder, self._execute, self.qmp.send_fd_scm, self.status, self.pause, self.resume,
                               ready_state.saved_files(self._disks, self.rundir))

    async def start_from(self, sink: EventSink, folder: Path) -> bool:
        self._ready_state = folder
        await self.start(sink)
        return self._ready_state is not None

    async def send_input(self, events: list[dict[str, Any]]) -> None:
        await self._execute("input-send-event", {"events": events})

    async def open_agent_channel(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.rundir is None or self.guest.agent is None:
            raise AgentError(f"VM {self.name} has no guest agent: its guest was launched without one (agent=None)")
        return await agent_port.accept_connection(self.rundir)

    async def update_command_line(self, command_line: str) -> None:
        self.argv = command.with_command_line(self.argv, command_line)
        self.relaunch_pending = True

    async def add_pcie_device(self, kind: str, port: str | None = None, **options: Any) -> dict[str, Any]:
        if self.recorder is not None:
            self.recorder.refuse("add_pcie_device")
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
        for spare in list(self._spares):  # a restore or relaunch under way
            await spare.discard()
        if self._instance is not None:
            await self.debugger.detach()
            if self.recorder is not None:  # where the recording ends
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.recorder.mark_end(self._execute), QUIT_GRACE)
            await self._instance.stop(QUIT_GRACE)  # first, so the pumps still record QEMU's last events
            if self.recorder is not None:  # QEMU has written the whole log now
                await asyncio.to_thread(self.recorder.finish)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tpm is not None:  # after QEMU, which holds its socket
            await self._tpm.stop()
        if self._instance is not None:
            self._cpu_log.close()
        self.serial_tap.close()
        if self.rundir is not None:
            shutil.rmtree(self.rundir, ignore_errors=True)

    async def firmware_vars(self) -> bytes:
        if self.rundir is None or not has_variable_store(self.guest.firmware):
            raise NotSupported(f"VM {self.name} has no UEFI variable store: "
                               f"it boots with firmware={self.guest.firmware!r}")
        return await asyncio.to_thread((self.rundir / VARS_FILE).read_bytes)
