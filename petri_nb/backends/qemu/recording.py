"""Deterministic record/replay on QEMU 7.2: the recording's files and the command lines for both.

QEMU records every non-deterministic input of a TCG run with one vCPU
(``-icount shift=auto,rr=record,rrfile=...``); replaying needs the identical machine
(the argv) and the log. Reverse execution needs a VM snapshot to start from
(``rrsnapshot=init``), which lives in an unattached qcow2 drive. QEMU writes the log's
header only when it exits, so a recording is finished by quitting its QEMU.

A recording is a self-contained directory (``recording.json``, ``replay.bin``,
``snap.qcow2``, copies of the kernel and initrd), so it can be replayed on another machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import NotSupported, PetriError
from ...guests.description import Guest
from ...halt import Halt
from ..base import EventSink
from .command import qemu_path

META = "recording.json"
LOG = "replay.bin"
SNAPSHOT = "snap.qcow2"
#: Placeholders in the saved argv: the run dir differs between record and replay.
RUNDIR, RECDIR = "{rundir}", "{recording}"
Execute = Callable[..., Awaitable[Any]]


def check_supported(guest: Guest, accel: str) -> None:
    """Refuse what QEMU 7.2's record/replay cannot do, saying why."""
    if accel != "tcg":
        raise NotSupported(f"record/replay needs accel='tcg', not {accel!r}: QEMU 7.2 runs -icount (which "
                           "record/replay is built on) only under TCG (\"-icount is not allowed with "
                           "hardware virtualization\")")
    if guest.cpus != 1:
        raise NotSupported(f"record/replay in QEMU 7.2 supports one vCPU; this guest has cpus={guest.cpus}")
    if guest.tpm:
        raise NotSupported("record/replay cannot replay the TPM emulator (swtpm runs outside QEMU's log)")


def with_blkreplay(argv: list[str]) -> list[str]:
    """Every ``-blockdev node-name=X`` moved to ``X-image`` under a blkreplay node named ``X``
    (QEMU replays disk requests in the recorded order only through blkreplay)."""
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        out.append(arg)
        if arg != "-blockdev":
            continue
        spec = next(it)
        opts = spec.split(",")
        node = next((o.split("=", 1)[1] for o in opts if o.startswith("node-name=")), None)
        if node is None:
            out.append(spec)
            continue
        out.append(spec.replace(f"node-name={node}", f"node-name={node}-image", 1))
        out += ["-blockdev", f"driver=blkreplay,node-name={node},image={node}-image"]
    return out


def icount_args(mode: str, recdir: str, snapshots: str) -> list[str]:
    log = qemu_path("recording", Path(recdir) / LOG, option=True)
    return ["-icount", f"shift=auto,rr={mode},rrfile={log},rrsnapshot=init",
            "-drive", f"file={qemu_path('recording snapshot', snapshots, option=True)},if=none,id=rrsnap"]


@dataclass
class Recording:
    """A recording directory and what is known about it."""

    path: Path
    guest: str
    argv: list[str]
    kernel: str | None = None
    #: The instruction count where the recording ends (at its halt, or when its QEMU quit).
    end_icount: int | None = None
    halts: list[dict[str, Any]] | None = None

    @classmethod
    def load(cls, path: str | Path) -> Recording:
        try:
            path = Path(path).expanduser().absolute()  # QEMU runs in another directory
            meta = json.loads((path / META).read_text())
            if not (path / LOG).is_file():
                raise PetriError(f"recording {path} has no {LOG}")
            return cls(path, str(meta["guest"]), [str(a) for a in meta["argv"]], meta.get("kernel"),
                       meta.get("end_icount"), meta.get("halts") or [])
        except (OSError, ValueError, TypeError, KeyError) as e:  # ValueError: bad JSON or a NUL in the path
            raise PetriError(f"{str(path)!r} is no readable recording (a directory with {META}): "
                             f"{type(e).__name__}: {e}") from None

    def save(self) -> None:
        meta = {"guest": self.guest, "argv": self.argv, "kernel": self.kernel, "end_icount": self.end_icount,
                "halts": self.halts or []}
        tmp = self.path / f".{META}.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(self.path / META)

    def replay_argv(self, rundir: Path) -> list[str]:
        """The recorded machine's argv for a replay whose sockets live in ``rundir``. The snapshot
        drive is copied there: a replay saves snapshots as it seeks, and must not grow (or need
        write access to) a recording someone shared."""
        argv = [a.replace(RECDIR, str(self.path)).replace(RUNDIR, str(rundir)) for a in self.argv]
        shutil.copyfile(self.path / SNAPSHOT, rundir / SNAPSHOT)
        return argv + icount_args("replay", str(self.path), str(rundir / SNAPSHOT))


class Recorder:
    """Makes the recording directory of one recorded VM and keeps its end up to date."""

    def __init__(self, guest: Guest, name: str, accel: str) -> None:
        check_supported(guest, accel)
        self.recording = Recording(Path(tempfile.mkdtemp(prefix=f"petri_nb-rec-{name}-")), guest.name, [],
                                   halts=[])
        self.finished = False

    @property
    def path(self) -> Path:
        return self.recording.path

    def command(self, argv: list[str], rundir: Path) -> list[str]:
        """The recording QEMU's argv; saves the machine's argv (without the record options) to replay."""
        rec = self.recording
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(rec.path / SNAPSHOT), "64M"], check=True)
        argv = with_blkreplay(argv)
        for flag, name in (("-kernel", "kernel"), ("-initrd", "initrd")):
            if flag in argv:  # copied, so the recording replays where the guest's files are not
                i = argv.index(flag) + 1
                shutil.copyfile(argv[i], rec.path / name)
                argv[i] = str(rec.path / name)
                if name == "kernel":
                    rec.kernel = name
        rec.argv = [a.replace(str(rec.path), RECDIR).replace(str(rundir), RUNDIR) for a in argv]
        rec.save()
        return argv + icount_args("record", str(rec.path), str(rec.path / SNAPSHOT))

    def refuse(self, call: str) -> None:
        """Calls QEMU 7.2 cannot record: a host system_reset hung the recording QEMU, and migrating
        out of it aborted it ("replay_save_clock: assertion failed: (replay_mutex_locked())")."""
        raise NotSupported(f"{call}() is not supported while recording (QEMU 7.2's record/replay hangs or "
                           "aborts on it); replay() the recording, or launch without record=True")

    async def mark_end(self, execute: Execute, halt: Halt | None = None) -> int | None:
        """Note where the recording is now (at a halt: where the guest halted)."""
        if self.finished:
            return self.recording.end_icount
        try:
            icount = int((await execute("query-replay"))["icount"])
        except (PetriError, KeyError, TypeError):
            return None
        self.recording.end_icount = icount
        if halt is not None and self.recording.halts is not None:
            self.recording.halts.append({"reason": halt.reason.name, "detail": halt.detail, "icount": icount})
        await asyncio.to_thread(self.recording.save)
        return icount

    def sink(self, sink: EventSink, execute: Execute) -> EventSink:
        """``sink`` with each halt carrying the instruction count it happened at (``data["icount"]``)."""
        return _RecordingSink(sink, self, execute)  # type: ignore[return-value]


class _RecordingSink:
    """Forwards everything; a halt goes on once QEMU said the instruction count (one QMP round trip)."""

    def __init__(self, sink: EventSink, recorder: Recorder, execute: Execute) -> None:
        self._sink = sink
        self._recorder = recorder
        self._execute = execute
        self._tasks: set[asyncio.Task[None]] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)

    def halted(self, halt: Halt) -> None:
        task = asyncio.ensure_future(self._halted(halt))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _halted(self, halt: Halt) -> None:
        icount = None
        with contextlib.suppress(Exception):
            icount = await self._recorder.mark_end(self._execute, halt)
        data = {**halt.data, "icount": icount} if icount is not None else halt.data
        self._sink.halted(Halt(halt.reason, halt.detail, halt.t, data))
