"""ReplayRuntime: a QEMU replaying a recording, paused, with gdb attached for reverse execution.

Seeking goes through QMP (``replay-seek``: QEMU loads the nearest snapshot and runs to the
instruction count), and so does a reverse step (a seek one instruction back, as gdb's
``reverse-stepi`` asks the stub); a reverse continue goes through gdb (``reverse-continue``).

Two things in QEMU 7.2 abort or fail at the very end of a recording that ends in a halt:
reversing from the ``shutdown`` run state aborts QEMU ("invalid runstate transition:
'shutdown' -> 'running'"), and stepping back from the instruction that requested the
shutdown gives gdb ``E14``. So the end of a recording is the instruction count one
before the one the recording stopped at (its halt): there the guest sits on the faulting
instruction, still paused, and reverse steps work. A replay that ran into the recorded
shutdown is restarted (a fresh replay QEMU) before it seeks back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qemu.qmp import EventListener

from ...errors import NotSupported, PetriError, PetriTimeout
from ...model.halt import Halt, HaltReason
from .debug_calls import HALTED_STATES
from .recording import Recording
from .runtime import OLD_QEMU_GRACE, QemuRuntime

#: Bound on one seek or reverse step: QEMU re-executes from the snapshot before the target.
REPLAY_TIMEOUT = 300.0
#: Instructions between the snapshots a long seek leaves (tmk under TCG replays ~7 M per second).
SNAPSHOT_EVERY = 5_000_000
#: A running replay whose instruction count stands still this long is stuck, not slow.
STALL_AFTER = 10.0
#: How often a seek looks at the replay's progress.
PROGRESS_POLL = 1.0
#: Bound on a reverse continue (QEMU replays the recording up to here twice at most).
REVERSE_CONTINUE_TIMEOUT = 120.0


class ReplayRuntime(QemuRuntime):
    """One replay of ``recording``; starts paused at instruction 0."""

    backend_name = "QEMU replay"

    def __init__(self, recording: Recording, name: str) -> None:
        super().__init__(recording.replay_guest(), name, "tcg")  # its kernel copy gives the symbols
        self.recording = recording
        #: Instruction counts with a snapshot: the recording's initial one, and those seeks left.
        self._snapshots = {0}
        self._snapshots_failed = False

    @property
    def recorded_run(self) -> str | None:
        """The run id of the recorded run (None for a recording made before petri_nb kept it)."""
        return self.recording.run

    @property
    def end_icount(self) -> int | None:
        """The last instruction count a replay can stop at safely (one before the recording's end)."""
        end = self.recording.end_icount
        return None if end is None else max(0, end - 1)

    def _prepare(self, rundir: Path) -> list[str]:
        return self.recording.replay_argv(self.guest, rundir)

    async def _begin(self) -> None:
        await self.debugger.session()  # paused at instruction 0 with the gdbstub attached

    async def reset(self) -> None:
        raise NotSupported("reset() in a replay: the replay follows the recording; seek(0) goes back to its start")

    async def save_state(self) -> bytes:
        raise NotSupported("save_state() in a replay: every instruction count is already a state; seek() to it")

    async def restore_state(self, data: bytes) -> str:
        raise NotSupported("restore_state() in a replay: the replay follows the recording; seek() instead")

    async def seek(self, icount: int) -> int:
        """Run the replay to ``icount`` (clamped to the safe end); returns where it stopped.

        A long run forward leaves snapshots behind every ``SNAPSHOT_EVERY`` instructions (QEMU's
        ``replay-seek`` starts from the nearest snapshot before its target), so stepping back
        later replays a stretch of at most that length instead of the whole recording."""
        end = self.end_icount
        if end is not None:
            icount = min(icount, end)
        if icount < 0:
            raise PetriError(f"an instruction count is >= 0, not {icount}")
        await self.debugger.detach()  # gdb would not expect the stop; it re-attaches on next use
        if await self.status() in HALTED_STATES:  # QEMU 7.2 aborts leaving 'shutdown' for 'running'
            await self._restart_replay()
        here = await self.icount()
        start = max((s for s in self._snapshots if s <= icount), default=0)
        if start < here <= icount:
            start = here  # going on forward from here is shorter than from a snapshot
        for waypoint in range(start + SNAPSHOT_EVERY, icount - SNAPSHOT_EVERY // 2, SNAPSHOT_EVERY):
            await self._run_to(waypoint)
            await self._snapshot(waypoint)
        return await self._run_to(icount)

    async def _run_to(self, icount: int) -> int:
        """Replay to ``icount``. Bounded by progress, not only by time: a replay whose count stands still
        for STALL_AFTER seconds while it runs is stuck (QEMU 7.2 then waits forever for an input it has no
        record of), so it is restarted, still usable, and the seek fails saying where it stopped."""
        stops = EventListener(("STOP",))
        with self.qmp.listen(stops):
            self._pump.expect_own_stop()
            await self._execute("replay-seek", {"icount": icount})
            deadline = time.monotonic() + REPLAY_TIMEOUT
            seen, since = -1, time.monotonic()
            while True:
                running, here = await self.status() == "running", await self.icount()
                if not running and here == icount:
                    return here
                now = time.monotonic()
                if here != seen:
                    seen, since = here, now
                elif now - since > STALL_AFTER:
                    await self._restart_replay()
                    raise PetriError(f"the replay stopped making progress at instruction {here} on its way to "
                                     f"{icount}: QEMU 7.2 waits there for an input its log cannot give back "
                                     "(a guest agent or other socket channel, for one); the replay restarted "
                                     "at instruction 0: seek to a count before it")
                if now > deadline:
                    raise PetriTimeout(f"the replay did not reach instruction {icount} within {REPLAY_TIMEOUT:g} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stops.get(), min(PROGRESS_POLL, max(0.0, deadline - now)))

    async def _snapshot(self, icount: int) -> None:
        """A snapshot here (on the recording's snapshot drive) for later seeks; a failure only costs speed."""
        if self._snapshots_failed:
            return
        said = await self._execute("human-monitor-command", {"command-line": f"savevm petri-{icount}"})
        if said.strip():  # HMP reports errors as text
            self._snapshots_failed = True
            logging.getLogger(__name__).warning("replay snapshot at %d failed: %s", icount, said.strip())
            return
        self._snapshots.add(icount)

    async def _restart_replay(self) -> None:
        """A fresh replay QEMU from the start; the old one goes first (both would lock the snapshot drive)."""
        for task in self._tasks:  # so the old QEMU's exit is not reported as VM loss
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._instance is not None:
            await self._instance.stop(OLD_QEMU_GRACE)
            self._instance = None
        await self._attach(await self._start_replacement((), "replay restart"))  # reopens the CPU log
        self._pump.restarted()

    async def continue_(self) -> None:
        """Run on, to a breakpoint or to the end: a replay stops at the last instruction before the
        recording's halt (a ``replay-break`` there), where it can still run backwards, and reports
        the recorded halt as this replay's halt."""
        end = self.end_icount
        if end is None:
            return await super().continue_()
        if await self.status() in HALTED_STATES or await self.icount() >= end:
            raise PetriError(f"the replay is at the end of the recording (instruction {end}): there is nothing "
                             "more to run; reverse_step(), reverse_continue() or seek() back")
        await self._execute("replay-break", {"icount": end})
        stops = EventListener(("STOP",))
        self.qmp.register_listener(stops)  # removed by the watcher below, whatever happens
        self._tasks.append(asyncio.ensure_future(self._report_end(stops, end)))
        await super().continue_()

    async def _report_end(self, stops: EventListener, end: int) -> None:
        """When the replay stops at ``end``, the recorded halt there becomes this replay's halt."""
        try:
            async for _ in stops:
                if await self.icount() == end:
                    break
            recorded = next((h for h in self.recording.halts or [] if h.get("icount") == end + 1), None)
            if recorded is not None and recorded.get("reason") in HaltReason.__members__:
                self._sink.halted(Halt(HaltReason[recorded["reason"]],
                                       f"{recorded.get('detail', '')} (replayed: stopped at instruction {end}, "
                                       "the last before it)", data={"icount": end, "replayed": True}))
        finally:
            self.qmp.remove_listener(stops)

    async def reverse_step(self) -> int:
        """One instruction back; returns the program counter there.

        A seek to the previous instruction count, which is what gdb's ``reverse-stepi`` asks QEMU
        for too (replay_seek to icount - 1); through QMP it needs no gdb round trips. From the
        recorded halt itself (a replay that ran into it) one step back is the recording's end."""
        end = self.end_icount
        if await self.status() in HALTED_STATES and end is not None:
            await self.seek(end)
        else:
            here = await self.icount()
            if here == 0:
                raise PetriError("the replay is at instruction 0, the start of the recording: there is no step back")
            await self.seek(here - 1)
        regs = {r.name: r.value for r in await self.registers() if r.cpu == 0}
        ip = regs["RIP"] if "RIP" in regs else regs["EIP"]
        return (regs.get("CS.base", 0) + ip) & ((1 << 64) - 1)

    async def reverse_continue(self) -> dict[str, Any]:
        """Back to the previous breakpoint hit (or the start of the recording); gdb's stop record."""
        return await self._reverse("-exec-continue --reverse")

    async def _reverse(self, cmd: str) -> dict[str, Any]:
        if await self.status() in HALTED_STATES:  # QEMU 7.2 aborts leaving 'shutdown' for 'running':
            await self.seek(self.end_icount or 0)  # go back to the recording's last reversible state
        gdb = await self.debugger.session()
        try:
            return await gdb.run_until_stop(cmd, REVERSE_CONTINUE_TIMEOUT)
        except PetriTimeout:
            raise PetriTimeout(f"the replay did not stop within {REVERSE_CONTINUE_TIMEOUT:g} s of gdb's reverse "
                               "continue: QEMU 7.2 sometimes deadlocks there on a loaded host (QMP stops answering "
                               "too); tear this replay down and open the recording again") from None


def open_recording(path: Path) -> tuple[str, Callable[[str], ReplayRuntime]]:
    """The recording in ``path`` (validated: a recording is data, never a command), as the guest it
    recorded and a maker of its replay (backends.open_replay)."""
    recording = Recording.load(path)
    return recording.guest, lambda name: ReplayRuntime(recording, name)
