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
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import LaunchError, NotSupported, PetriError
from ...guests.description import Guest, Nic
from ...model.halt import Halt
from ..base import EventSink
from . import rundirs
from .command import build_command, qemu_path
from .firmware import firmware_args
from .screen import Execute

META = "recording.json"
#: A recording's temporary directory is ``petri_nb-rec-NAME-*``, next to the run dirs.
RECORDING_PREFIX = "rec-"
LOG = "replay.bin"
SNAPSHOT = "snap.qcow2"
#: recording.json's format: 2 keeps the guest's description (1 kept a QEMU argv, never run again).
FORMAT = 2
#: Guest fields a recording keeps besides kernel, initrd and nics: the replay rebuilds the machine from them.
DESCRIBED = ("name", "append", "firmware", "memory_mib", "cpus", "sockets", "cores", "threads", "agent",
             "pcie_root_ports")


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
    if guest.kernel is None or guest.disks or guest.cdrom is not None or guest.firmware_vars is not None:
        raise NotSupported("record=True needs a direct-boot guest (kernel=...) without disks, CD-ROM or saved "
                           "firmware variables: a recording carries copies of the kernel and initrd only")
    if guest.extra_args:
        raise NotSupported("record=True with extra_args: a recording is replayed from its description, and "
                           "extra QEMU arguments from a shared file could open or write any file")


def describe(guest: Guest) -> dict[str, Any]:
    """The plain Guest fields that make the recorded machine; kernel and initrd name their copies."""
    return {**{f: getattr(guest, f) for f in DESCRIBED}, "nics": [dict(n.forward) for n in guest.nics],
            "kernel": "kernel", "initrd": None if guest.initrd is None else "initrd"}


def _inside(recording: Path, name: object, what: str) -> Path:
    """A file of the recording, named relative to it; nothing outside it (no absolute path, no '..')."""
    if not isinstance(name, str) or not name or Path(name).is_absolute():
        raise PetriError(f"recording {recording}: its {what} must name a file inside the recording, not {name!r}")
    target = (recording / name).resolve()
    if not target.is_relative_to(recording.resolve()) or not target.is_file():
        raise PetriError(f"recording {recording}: its {what} {name!r} is not a file inside the recording")
    return target


def replay_guest(recording: Path, desc: object) -> Guest:
    """The recorded machine as a Guest, validated as launch validates one (the binary is petri_nb's own)."""
    if not isinstance(desc, dict):
        raise PetriError(f"recording {recording}: its description must be a mapping, not {desc!r:.40}")
    if unknown := sorted(map(str, set(desc) - {*DESCRIBED, "nics", "kernel", "initrd"})):
        raise PetriError(f"recording {recording}: its description has fields petri_nb does not replay: "
                         f"{', '.join(unknown)}"[:300])
    try:
        nics = tuple(Nic({int(h): int(g) for h, g in n.items()}) for n in desc.get("nics", []))
        initrd = desc.get("initrd")
        guest = Guest(**{f: desc[f] for f in DESCRIBED if f in desc}, nics=nics, gdb=True,
                      kernel=_inside(recording, desc.get("kernel"), "kernel"),
                      initrd=None if initrd is None else _inside(recording, initrd, "initrd"))
    except (LaunchError, TypeError, ValueError, AttributeError) as e:
        raise PetriError(f"recording {recording} describes no guest petri_nb can launch: {e}") from None
    check_supported(guest, "tcg")
    return guest


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
    description: dict[str, Any]
    #: The instruction count where the recording ends (at its halt, or when its QEMU quit).
    end_icount: int | None = None
    halts: list[dict[str, Any]] | None = None
    #: The recorded run's id (its timeline's ``run``), so a replay can refuse another run's rows.
    run: str | None = None
    #: The log's size when its QEMU quit: a shorter log was cut short on the way (a copy, a full disk).
    log_bytes: int | None = None

    @classmethod
    def load(cls, path: str | Path) -> Recording:
        """Read a recording as data: its machine is rebuilt from the description, never run from the file."""
        try:
            path = Path(path).expanduser().absolute()  # QEMU runs in another directory
            meta = json.loads((path / META).read_text())
            for needed in (LOG, SNAPSHOT):  # the log, and the snapshot reverse execution starts from
                if not (path / needed).is_file():
                    raise PetriError(f"recording {path} has no {needed}: copy the whole recording directory")
        except (OSError, ValueError) as e:  # ValueError: bad JSON or a NUL in the path
            raise PetriError(f"{str(path)!r} is no readable recording (a directory with {META}): "
                             f"{type(e).__name__}: {e}") from None
        if not isinstance(meta, dict):
            raise PetriError(f"recording {path}: {META} holds no recording")
        if "description" not in meta:
            raise PetriError(f"recording {path} is from an older petri_nb (it keeps a QEMU command line, which "
                             "petri_nb no longer runs from a file); record it again")
        end, halts = meta.get("end_icount"), meta.get("halts") or []
        if end is not None and (isinstance(end, bool) or not isinstance(end, int) or end < 0):
            raise PetriError(f"recording {path}: end_icount must be an instruction count, not {end!r:.40}")
        if meta.get("accel") != "tcg":
            raise PetriError(f"recording {path}: accel must be 'tcg', not {meta.get('accel')!r:.40}")
        if not isinstance(halts, list) or not all(isinstance(h, dict) for h in halts):
            raise PetriError(f"recording {path}: halts must be a list of halt records")
        run, size = meta.get("run"), meta.get("log_bytes")
        if run is not None and not isinstance(run, str):
            raise PetriError(f"recording {path}: run must be a run id, not {run!r:.40}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
            raise PetriError(f"recording {path}: log_bytes must be a size in bytes, not {size!r:.40}")
        if size is not None and (have := (path / LOG).stat().st_size) < size:
            warnings.warn(f"recording {path}: {LOG} has {have} of the {size} bytes its QEMU wrote (cut short on "
                          "the way?); the replay stops where the log does", RuntimeWarning, stacklevel=3)
        guest = replay_guest(path, meta["description"])
        return cls(path, guest.name, meta["description"], end, halts, run, size)

    def save(self) -> None:
        meta = {"format": FORMAT, "guest": self.guest, "description": self.description, "accel": "tcg",
                "end_icount": self.end_icount, "halts": self.halts or [], "run": self.run,
                "log_bytes": self.log_bytes}
        tmp = self.path / f".{META}.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(self.path / META)

    def replay_guest(self) -> Guest:
        return replay_guest(self.path, self.description)

    def replay_argv(self, guest: Guest, rundir: Path) -> list[str]:
        """The recorded machine's argv, built from ``guest`` as a launch builds it, for a replay whose
        sockets live in ``rundir``. The snapshot drive is copied there: a replay saves snapshots as
        it seeks, and must not grow (or need write access to) a recording someone shared."""
        argv = with_blkreplay(build_command(guest, rundir, "tcg", (), firmware_args(guest.firmware, rundir)))
        shutil.copyfile(self.path / SNAPSHOT, rundir / SNAPSHOT)
        return argv + icount_args("replay", str(self.path), str(rundir / SNAPSHOT))


class Recorder:
    """Makes the recording directory of one recorded VM and keeps its end up to date."""

    def __init__(self, guest: Guest, name: str, accel: str) -> None:
        check_supported(guest, accel)
        # A temporary dir like a run dir (reaped once this process is gone): save_timeline() keeps it.
        self.recording = Recording(rundirs.make(f"{RECORDING_PREFIX}{name}"), guest.name,
                                   describe(guest), halts=[])
        self.finished = False

    @property
    def path(self) -> Path:
        return self.recording.path

    def move_to(self, target: Path) -> None:
        """Keep the finished recording at ``target`` (a saved run's dir): no longer temporary, never reaped."""
        shutil.move(str(self.path), str(target))
        rundirs.unmark(target)
        self.recording.path = target

    def command(self, argv: list[str], rundir: Path) -> list[str]:
        """The recording QEMU's argv, reading copies of the kernel and initrd that the recording keeps
        (so it replays where the guest's files are not); saves the description to replay."""
        rec = self.recording
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(rec.path / SNAPSHOT), "64M"], check=True)
        argv = with_blkreplay(argv)
        for flag, name in (("-kernel", "kernel"), ("-initrd", "initrd")):
            if flag in argv:
                i = argv.index(flag) + 1
                shutil.copyfile(argv[i], rec.path / name)
                argv[i] = qemu_path(name, rec.path / name)
        rec.save()
        return argv + icount_args("record", str(rec.path), str(rec.path / SNAPSHOT))

    def refuse(self, call: str) -> None:
        """Calls QEMU 7.2 cannot record: a host system_reset hung the recording QEMU, and migrating
        out of it aborted it ("replay_save_clock: assertion failed: (replay_mutex_locked())")."""
        raise NotSupported(f"{call}() is not supported while recording (QEMU 7.2's record/replay hangs or "
                           "aborts on it); replay() the recording, or launch without record=True")

    def finish(self) -> None:
        """Its QEMU has quit, so the log is whole: keep its size (a later copy cut short is then told)."""
        self.finished = True
        with contextlib.suppress(OSError):
            self.recording.log_bytes = (self.path / LOG).stat().st_size
            self.recording.save()

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
