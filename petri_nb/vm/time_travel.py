"""Time travel in a replayed recording: seek to an instruction count, step and continue backwards.

A run launched with ``record=True`` is recorded by the backend (QEMU's deterministic
record/replay); ``vm.replay()`` finishes the recording and opens a replay of it, paused
at instruction 0. In the replay every instruction count names one exact machine state,
so ``seek(n)`` twice gives the same registers twice, and a halt's timeline row (which
carries the instruction count it happened at) can be sought to directly.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pandas as pd

from ..backends import open_replay
from ..errors import PetriError
from ..model.run_state import Fact
from ..runtime.loop import runs_on_runtime_loop
from . import registry
from .core import VmCore
from .preconditions import requires_replay

#: Bound on one seek, reverse step or reverse continue: QEMU replays from the nearest snapshot,
#: about as long as the recording took (~10 s for 10 s of tmk under TCG), and QEMU 7.2 sometimes
#: deadlocks in reverse execution; then the call fails instead of hanging.
REVERSE_TIMEOUT = 600.0

V = TypeVar("V", bound=VmCore)


class ReplayControl(Protocol):
    """What a backend's replay runtime offers (petri_nb.backends.qemu.replay.ReplayRuntime)."""

    end_icount: int | None
    recorded_run: str | None

    async def icount(self) -> int: ...

    async def seek(self, icount: int) -> int: ...

    async def reverse_step(self) -> int: ...

    async def reverse_continue(self) -> dict[str, Any]: ...


def instruction_count(where: Any, end: int | None) -> int:
    """An instruction count from an int, ``"end"``, or a timeline row (a Series or dict whose
    ``data`` JSON, or ``icount`` field, holds one)."""
    if isinstance(where, str):
        if where != "end":
            raise PetriError(f"seek() takes an instruction count, 'end' or a timeline row, not {where!r}")
        if end is None:
            raise PetriError("this recording does not know where it ends; seek to an instruction count")
        return end
    if isinstance(where, int) and not isinstance(where, bool):
        return where
    if hasattr(where, "get") or isinstance(where, Mapping):
        icount = where.get("icount")
        if icount is None or (isinstance(icount, float) and math.isnan(icount)):
            data = where.get("data") or ""
            try:
                icount = (json.loads(data) if isinstance(data, str) and data else data or {}).get("icount")
            except (ValueError, AttributeError):
                icount = None
        if icount is None:
            raise PetriError("this timeline row carries no instruction count (only the rows of a recorded "
                             "run do)")
        try:
            icount = int(icount)
        except (TypeError, ValueError, OverflowError):
            raise PetriError(f"this timeline row's instruction count {icount!r:.40} is not a number") from None
        # A halt's count is where the recording stopped; the last state before it is one earlier.
        return icount if end is None else min(icount, end)
    raise PetriError(f"seek() takes an instruction count, 'end' or a timeline row, not {where!r:.80}")


def _check_row_is_ours(where: Any, recorded: str | None, replay: str) -> None:
    """A timeline row names its run: one of another recording would seek to a count that means nothing here."""
    run = where.get("run") if hasattr(where, "get") and not isinstance(where, str) else None
    if run is None or (isinstance(run, float) and math.isnan(run)) or recorded is None:
        return
    if str(run) not in (recorded, replay):
        raise PetriError(f"this row is from run {str(run)[:8]}, not from the recorded run {recorded[:8]} this "
                         "replay replays: seek to rows of its own recording")


def console_at(frame: pd.DataFrame, icount: int | Mapping[str, Any] | pd.Series) -> str:
    """What a recorded run's console showed at an instruction count (or a timeline row's): its
    console lines stamped at or before it. A replay's own console cannot say this: replaying
    from a snapshot prints part of the text again."""
    target = instruction_count(icount, None)
    lines = frame[(frame["source"] == "console") & (frame["kind"] == "line")]
    counts = lines["data"].map(lambda d: (json.loads(d) if d else {}).get("icount"))
    shown = lines[counts.notna() & (counts.astype("float64") <= target)]
    return "\n".join(shown["detail"].astype(str))


class TimeTravelMixin(VmCore):
    """recording / icount / seek / reverse_step / reverse_continue for AsyncVm."""

    @property
    def recording(self) -> Path | None:
        """The directory a recorded run records into (or a replay replays), else None."""
        recorder = getattr(self.runtime, "recorder", None)
        if recorder is not None:
            return Path(recorder.path)
        recording = getattr(self.runtime, "recording", None)
        return None if recording is None else Path(recording.path)

    @property
    def _replay(self) -> ReplayControl:
        """The backend's replay calls (for the ``@requires_replay`` methods, which run only in a replay)."""
        return self.runtime  # type: ignore[return-value]

    @runs_on_runtime_loop
    async def teardown(self) -> None:
        """Stop QEMU and free everything. Idempotent. A finished recording of a run whose timeline is
        saved (``save_timeline``) moves into the run directory (``<run dir>/recording``), so the saved
        run can be replayed elsewhere: ``petri_nb.replay(run_dir / "recording")``."""
        await super().teardown()
        recorder = getattr(self.runtime, "recorder", None)
        directory = getattr(self._timeline.writer, "directory", None)
        if recorder is None or directory is None or recorder.path.parent == Path(directory):
            return
        target = Path(directory) / "recording"
        if not target.exists():
            await asyncio.to_thread(recorder.move_to, target)

    @runs_on_runtime_loop
    @requires_replay
    async def icount(self) -> int:
        """The replay's current instruction count."""
        return await self._call("icount", self._replay.icount())

    @runs_on_runtime_loop
    @requires_replay
    async def seek(self, where: int | str | Mapping[str, Any] | pd.Series) -> int:
        """Go to an instruction count, ``"end"`` (the last state before the recording ended) or a
        timeline row of the recorded run; returns the instruction count reached."""
        control = self._replay
        _check_row_is_ours(where, control.recorded_run, self.run_id)
        icount = instruction_count(where, control.end_icount)
        got = await self._call("seek", control.seek(icount), timeout=REVERSE_TIMEOUT)
        self._acknowledge_halts()  # a seek is a restore: a halt later in the recording is undone
        self._transition(Fact.RESTORED_PAUSED)
        self._record("runtime", "seek", f"at instruction {got}", {"icount": got})
        return got

    def _went_back(self) -> None:
        """Back before a halt the replay ran into: that halt is undone, the replay is paused."""
        self._on_debug_run()
        self._acknowledge_halts()
        self._transition(Fact.RESTORED_PAUSED)

    @runs_on_runtime_loop
    @requires_replay
    async def reverse_step(self) -> int:
        """One instruction backwards; returns the program counter there."""
        pc = await self._call("reverse_step", self._replay.reverse_step(), timeout=REVERSE_TIMEOUT)
        self._went_back()
        return pc

    @runs_on_runtime_loop
    @requires_replay
    async def reverse_continue(self) -> int:
        """Backwards to the previous breakpoint hit (or the start of the recording); returns the program counter."""
        stop = await self._call("reverse_continue", self._replay.reverse_continue(), timeout=REVERSE_TIMEOUT)
        self._went_back()
        try:
            return int(stop.get("frame", {}).get("addr", "0"), 16)
        except ValueError:
            return 0


async def start_replay(cls: type[V], path: str | Path, name: str | None = None) -> V:
    """A ``cls`` VM replaying the recording in ``path``, paused at instruction 0 with gdb attached."""
    guest, replay_runtime = await asyncio.to_thread(open_replay, Path(path))
    name = registry.claim_name(name, f"{guest}-replay")
    try:
        runtime = replay_runtime(name)
        vm = cls(name, runtime.guest, runtime)
    except BaseException:
        registry.release(name)
        raise
    registry.register(name, vm)
    try:
        await vm._boot()  # type: ignore[attr-defined]
    except BaseException:
        await vm.teardown()
        raise
    vm._transition(Fact.STOPPED)
    return vm
