"""Save/restore, checkpoints and rewind: whole-VM state as bytes.

A checkpoint is a save state kept in memory under a name; rewinding restores it
into the same VM (same name, timeline and console), so after a crash you can go
back to just before it and look again. Mixed into AsyncVm / Vm so that vm.py
only names the mixins.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadArgument, PetriError
from ..model.run_state import Fact, RunState
from ..runtime.isolation import finish_even_if_cancelled
from ..runtime.loop import runs_on_runtime_loop
from .core import VmCore

#: Generous bound on one save or restore (tmk takes well under a second).
STATE_TIMEOUT = 120.0


@dataclass(frozen=True)
class Checkpoint:
    """One in-memory save state."""

    name: str
    t: float  # VM uptime when taken
    data: bytes = field(repr=False)
    save_s: float = 0.0

    @property
    def size(self) -> int:
        return len(self.data)


class StateMixin(VmCore):
    """save_state / restore_state / verify_save_restore / checkpoint / rewind for AsyncVm."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._checkpoints: dict[str, Checkpoint] = {}
        self._checkpoint_names = itertools.count(1)
        self._state_lock = asyncio.Lock()
        self._auto_task: asyncio.Task[None] | None = None

    async def _save(self, call: str) -> tuple[bytes, float]:
        """(state, seconds taken): the one way save_state() and checkpoint() take a state."""
        async with self._state_lock:
            start = time.monotonic()
            data = await finish_even_if_cancelled(self._call(call, self.runtime.save_state(), timeout=STATE_TIMEOUT))
            return data, time.monotonic() - start

    async def _restore(self, call: str, data: bytes, resume: bool) -> None:
        """The one way restore_state() and rewind() load a state; pending halts are dropped."""
        async with self._state_lock:
            await finish_even_if_cancelled(self._restore_now(call, data, resume))

    async def _restore_now(self, call: str, data: bytes, resume: bool) -> None:
        status = await self._call(call, self.runtime.restore_state(data), timeout=STATE_TIMEOUT)
        self._acknowledge_halts()
        # A state saved from a halted VM restores halted.
        self._transition(Fact.RESTORED_PAUSED if status == "paused" else Fact.RESTORED_HALTED)
        if resume and status == "paused":
            await self._call("resume", self.runtime.resume())
            self._transition(Fact.RESUMED)

    @runs_on_runtime_loop
    async def save_state(self) -> bytes:
        """The whole VM state (QEMU migration stream); a running VM is paused for it and resumed."""
        data, took = await self._save("save_state")
        self._record("runtime", "state saved", f"{len(data)} bytes in {took * 1000:.1f} ms",
                     {"bytes": len(data), "duration_s": took})
        return data

    @runs_on_runtime_loop
    async def restore_state(self, data: bytes, resume: bool = True) -> None:
        """Load ``data`` from save_state() into this VM (a fresh QEMU replaces the old one).

        Pending halts are dropped: the restored machine has not halted. Bad bytes
        raise PetriError and leave the VM as it was."""
        await self._restore("restore_state", data, resume)

    @runs_on_runtime_loop
    async def verify_save_restore(self, rounds: int = 2) -> dict[str, Any]:
        """As petri: pause, save, restore, resume, ``rounds`` times; then check the guest still runs.

        On tmk the ``count`` command must continue from where it was. Returns sizes and times."""
        probe = self.guest.liveness_probe
        before = await probe(self.console) if probe else None
        sizes, saves, restores = [], [], []
        for _ in range(rounds):
            await self.pause()
            start = time.monotonic()
            data = await self.save_state()
            saves.append(time.monotonic() - start)
            sizes.append(len(data))
            start = time.monotonic()
            await self.restore_state(data, resume=False)
            restores.append(time.monotonic() - start)
            await self.resume()
        status = await self.status()
        if status != "running":
            raise PetriError(f"verify_save_restore: the VM is {status} after restoring, not running")
        if probe:
            after = await probe(self.console)
            if after != before + 1:
                raise PetriError(f"verify_save_restore: the guest counter went {before} -> {after}, not +1")
        result = {"rounds": rounds, "bytes": sizes, "save_s": saves, "restore_s": restores}
        self._record("runtime", "save/restore verified", f"{rounds} rounds, {max(sizes)} bytes", result)
        return result

    @runs_on_runtime_loop
    async def checkpoint(self, name: str | None = None) -> Checkpoint:
        """Keep the current state in memory under ``name`` (default ``cp-N``); on the timeline."""
        if name is None:
            name = f"cp-{next(self._checkpoint_names)}"
        elif not isinstance(name, str) or not name:
            raise PetriError(f"checkpoint name must be a non-empty string, not {name!r}")
        t = self.uptime
        data, took = await self._save("checkpoint")
        cp = Checkpoint(name, t, data, took)
        self._checkpoints[name] = cp
        self._record("runtime", "checkpoint", f"{name}: {cp.size} bytes in {cp.save_s * 1000:.1f} ms",
                     {"name": name, "bytes": cp.size, "duration_s": cp.save_s, "uptime": t})
        return cp

    def checkpoints(self) -> list[Checkpoint]:
        """Checkpoints taken so far, oldest first."""
        return list(self._checkpoints.values())

    @runs_on_runtime_loop
    async def rewind(self, name: str | None = None, resume: bool = True) -> Checkpoint:
        """Go back to checkpoint ``name`` (default: the latest); the console and timeline go on."""
        if not self._checkpoints:
            raise PetriError("rewind(): no checkpoint taken yet; call checkpoint() first")
        if name is None:
            name = next(reversed(self._checkpoints))
        cp = self._checkpoints.get(name)
        if cp is None:
            raise PetriError(f"rewind(): no checkpoint named {name!r}; have {', '.join(self._checkpoints)}")
        start = time.monotonic()
        await self._restore("rewind", cp.data, resume)
        took = time.monotonic() - start
        self._record("runtime", "rewind", f"to {name} (uptime {cp.t:.3f} s) in {took * 1000:.1f} ms",
                     {"name": name, "bytes": cp.size, "duration_s": took, "uptime": cp.t})
        return cp

    @runs_on_runtime_loop
    async def auto_checkpoint(self, every: float | None = 5.0, keep: int = 5) -> None:
        """Take a checkpoint ``auto-N`` every ``every`` seconds while running, keeping the last ``keep``;
        ``every=None`` stops."""
        if every is not None and keep < 1:  # before the running one stops: bad input loses nothing
            raise BadArgument(f"auto_checkpoint(): keep must be at least 1, not {keep!r}")
        if self._auto_task is not None:
            self._auto_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._auto_task
            self._auto_task = None
        if every is None:
            return
        self._auto_task = asyncio.ensure_future(self._auto_loop(every, keep))

    async def _auto_loop(self, every: float, keep: int) -> None:
        for n in itertools.count(1):
            await asyncio.sleep(every)  # a period, not a synchronisation
            if self.state in (RunState.GONE, RunState.TORN_DOWN):
                return
            if self.state is not RunState.RUNNING:
                continue
            with contextlib.suppress(PetriError):
                await self.checkpoint(f"auto-{n}")
            autos = [k for k in self._checkpoints if k.startswith("auto-")]
            for old in autos[:-keep]:
                del self._checkpoints[old]
