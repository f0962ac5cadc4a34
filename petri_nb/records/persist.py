"""Run directories: a VM run's timeline (and inspect snapshots) as Parquet files on disk.

Layout of one run directory (``<runs dir>/<vm>-<run id>/``)::

    meta.json              vm, run, start time, and what the run ran on (petri_nb.records.run_meta)
    part-000000.parquet    timeline rows, in the order they were recorded, one file per flush
    part-000001.parquet    ...
    part-000000-000255.parquet   parts 0..255 compacted into one (the originals are then removed)
    inspect-0001.parquet   one file per inspect() snapshot (path, name, value, type + t)

Why part files rather than one growing file: Parquet cannot be appended to, and
a run whose Python process is killed must stay readable up to its last flush.
Every file is written to a hidden temp name and ``os.replace``-d into place, so a
crash (or a full disk) mid-write never leaves a truncated file behind; readers
only look at complete ``part-*.parquet`` files. Flushing every second makes many
small parts in a long soak, so every ``COMPACT_EVERY`` parts (and at close) they
are merged into one ranged part; a reader ignores parts a ranged part covers, so
a crash between writing the merge and deleting its inputs loses and doubles nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import PetriError, SaveError
from ..runtime.abandon import abandon
from ..runtime.validation import checked, path_list
from .scan import Unit, read_table, read_units, regular
from .timeline import COLUMNS, Timeline, empty_frame, events_frame

RUNS_ENV = "PETRI_NB_RUNS"
#: Seconds between periodic flushes of new rows while a run is being saved.
FLUSH_INTERVAL = 1.0
#: Part files merged into one once this many have accumulated.
COMPACT_EVERY = 256
_PART = re.compile(r"part-(\d{6,})(?:-(\d{6,}))?\.parquet$")


def default_runs_dir() -> Path:
    """``$PETRI_NB_RUNS``, else ``$XDG_DATA_HOME/petri_nb/runs`` (``~/.local/share/petri_nb/runs``)."""
    if env := os.environ.get(RUNS_ENV):
        return Path(env).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "petri_nb" / "runs"


def run_dir_for(timeline: Timeline, runs_dir: str | os.PathLike[str] | None = None) -> Path:
    base = Path(runs_dir).expanduser() if runs_dir is not None else default_runs_dir()
    return base.absolute() / f"{timeline.vm}-{timeline.run}"  # the run's recording moves there; QEMU runs elsewhere


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))  # private before any byte lands
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise SaveError(f"could not write {path}: {e.strerror or e}; files written before are intact") from e


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` atomically (temp file + ``os.replace``)."""
    _atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


class RunWriter:
    """Saves one Timeline into its run directory: everything so far, then new rows periodically.

    Methods run on the runtime loop (the thread that appends rows), so the
    flushed-row bookkeeping needs no lock; only ``compact`` may run in a worker
    thread, and it touches nothing but part files that are no longer written.
    """

    def __init__(self, timeline: Timeline, directory: Path, interval: float = FLUSH_INTERVAL) -> None:
        self.timeline = timeline
        self.directory = directory
        self.interval = interval
        self.error: SaveError | None = None
        self._task: asyncio.Task[None] | None = None
        self._snapshots_written = 0
        try:  # private: console text in a timeline can hold secrets
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise SaveError(f"cannot create run directory {directory}: {e.strerror or e}") from e
        self._part = max((hi for _, hi, _ in _part_files(directory)), default=-1) + 1
        self._compacted = self._part  # parts below this number are not worth merging again yet
        self._compact_lock = threading.Lock()
        self._meta: dict[str, Any] = {}
        self._write_meta()

    def _write_meta(self) -> None:
        tl = self.timeline
        meta = {"vm": tl.vm, "run": tl.run, "started_wall": tl.started_wall, "format": 1, **tl.meta}
        _atomic_write(self.directory / "meta.json", lambda tmp: tmp.write_text(json.dumps(meta, default=str)))
        self._meta = dict(tl.meta)

    def start(self) -> None:
        """Flush periodically from now on (call on the runtime loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._periodic())

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.interval)  # a timer, not synchronisation
            try:
                self.flush()
                if self._part - self._compacted >= COMPACT_EVERY:
                    # Off the runtime loop: merging reads hundreds of files. Parts below
                    # self._part are never written again, so the thread only races readers.
                    await asyncio.to_thread(self.compact)
            except SaveError as e:
                self.error = e  # flush() also put it on the timeline; retried next time
            except Exception as e:  # keep flushing whatever went wrong once; say what it was
                self.error = SaveError(f"saving {self.directory} failed: {type(e).__name__}: {e}")

    def compact(self) -> None:
        """Merge the single part files written so far into one ranged part, then remove them.

        Earlier ranged parts are left alone, so a long soak rewrites each row about twice."""
        with self._compact_lock:
            upto = self._part
            singles = [(lo, hi, p) for lo, hi, p in _part_files(self.directory) if lo == hi < upto]
            if len(singles) > 1:
                merged = self.directory / f"part-{singles[0][0]:06d}-{singles[-1][1]:06d}.parquet"
                try:
                    frame = _read_files([p for _, _, p in singles])
                except (PetriError, OSError) as e:
                    raise SaveError(f"could not compact {self.directory}: {e}") from e
                write_parquet(frame, merged)
                for _, _, p in singles:
                    p.unlink(missing_ok=True)
            self._compacted = upto

    def flush(self) -> int:
        """Write rows not yet on disk as the next part file (and new snapshots); returns rows written."""
        tl = self.timeline
        try:
            if tl.meta != self._meta:  # saving began before the VM knew what it runs on
                self._write_meta()
            rows = tl.unflushed()
            if rows:
                write_parquet(events_frame(tl.vm, tl.run, rows), self.directory / f"part-{self._part:06d}.parquet")
                self._part += 1
                tl.flushed += len(rows)
            for snap in list(tl.snapshots):
                if snap.seq > self._snapshots_written:
                    frame = snap.frame.assign(t=snap.t, snapshot=snap.seq, inspect_path=snap.path)
                    write_parquet(frame, self.directory / f"inspect-{snap.seq:04d}.parquet")
                    self._snapshots_written = snap.seq
        except SaveError as e:
            first, self.error = self.error is None, e  # set before recording: record() may flush again
            if first:
                tl.record("runtime", "save_timeline failed", str(e))
            raise
        self.error = None
        return len(rows)

    def read_parts(self) -> pd.DataFrame:
        return read_run(self.directory)

    def close(self) -> None:
        """Stop the periodic flush and write what is left (errors stay in ``self.error``)."""
        if self._task is not None:
            abandon(self._task)
            self._task = None
        with contextlib.suppress(SaveError):
            self.flush()
            self.compact()


def read_run(directory: str | os.PathLike[str]) -> pd.DataFrame:
    """The timeline saved in one run directory."""
    for _ in range(3):
        try:
            return _read_files([p for _, _, p in _part_files(Path(directory))])
        except FileNotFoundError:
            continue  # a compaction removed a part after we listed it: list again
    return _read_files([p for _, _, p in _part_files(Path(directory))])


def _part_files(directory: Path) -> list[tuple[int, int, Path]]:
    """(first, last, path) of the complete part files, skipping any a wider merged part covers."""
    found = []
    for p in directory.glob("part-*.parquet"):
        if m := _PART.match(p.name):
            found.append((int(m[1]), int(m[2] or m[1]), p))
    merged = [(lo, hi) for lo, hi, _ in found if hi > lo]
    return sorted(f for f in found if not any(lo <= f[0] and f[1] <= hi and (lo, hi) != f[:2] for lo, hi in merged))


def read_parquet(path: Path, what: str = "saved timeline part") -> pd.DataFrame:
    """One Parquet file; a damaged or foreign file is a PetriError naming it."""
    return read_table(path, what).to_pandas()


def _read_files(files: list[Path]) -> pd.DataFrame:
    """The timeline in ``files`` (one run directory's parts), in the order they were written."""
    return read_units([Unit(files)], by_run=False)[list(COLUMNS)] if files else empty_frame()


def _expand(item: str | os.PathLike[str]) -> list[Path]:
    text = os.fspath(item)
    if glob.has_magic(text):
        matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text)))
        if not matches:
            raise PetriError(f"no saved runs match {text!r}")
        return matches
    path = Path(text).expanduser()
    if not path.exists():
        raise PetriError(f"no saved run at {path}")
    return [path]


def read_timelines(paths_or_glob: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """Load many saved runs into one frame with the timeline schema's dtypes.

    Each item may be a run directory, a fleet's directory, a directory of either (e.g.
    the default runs dir, a folder of fleets), a single ``.parquet`` file or a glob of
    any of those. Rows are in time order within each run. After the schema's columns come the run's
    metadata (``run_meta.META_COLUMNS``: host, qemu_version, ...), null where a run
    did not record it, so runs from many machines can be grouped.
    """
    units: list[Unit] = []
    for item in path_list(paths_or_glob, "read_timelines"):
        for path in _expand(item):
            if path.is_dir():
                units.extend(_folder_units(path))
            elif path.suffix == ".parquet":
                units.append(Unit([path]))
            else:
                raise PetriError(f"{path} is neither a run directory nor a .parquet file")
    return read_units(units)


def _folder_units(path: Path) -> list[Unit]:
    """A run directory, a fleet's directory (``<run>.parquet`` files beside ``outcomes.jsonl``), or a
    folder of either (the default runs dir, a folder of fleets): what to read, without reading it yet."""
    def parts() -> list[Path]:
        return [p for _, _, p in _part_files(path)]

    if (files := parts()) or (path / "meta.json").exists():
        return [Unit(files, read_meta(path), parts)]
    if _is_fleet(path):
        files = sorted(f for f in path.glob("*.parquet") if f.is_file())
        return [Unit(files)] if files else []
    inside = sorted(d for d in path.iterdir() if d.is_dir() and ((d / "meta.json").exists() or _is_fleet(d)))
    if not inside:
        raise PetriError(f"{path} is not a petri_nb run directory (no part-*.parquet or meta.json), nor a "
                         "fleet's (no outcomes.jsonl), nor a folder of them")
    return [unit for d in inside for unit in _folder_units(d)]


def _is_fleet(path: Path) -> bool:
    return (path / "outcomes.jsonl").is_file()


def read_meta(directory: Path) -> dict[str, Any]:
    """A run directory's ``meta.json`` ({} if it has none: a run saved by an older petri_nb or cut short)."""
    path = directory / "meta.json"
    if not path.exists():
        return {}
    regular(path, "run metadata")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PetriError(f"cannot read run metadata {path}: {e}") from e
    if not isinstance(meta, dict):
        raise PetriError(f"run metadata {path} is not a JSON object")
    return meta


@checked
def read_snapshots(directory: str | os.PathLike[str]) -> dict[int, pd.DataFrame]:
    """The inspect snapshots saved in a run directory, by snapshot number."""
    if not Path(directory).is_dir():
        raise PetriError(f"read_snapshots(): {directory} is not a run directory")
    out = {}
    for f in sorted(Path(directory).glob("inspect-*.parquet")):
        number = f.stem.split("-")[1]
        if number.isdigit():
            out[int(number)] = read_parquet(f, "saved inspect snapshot")
    return out


def save_timeline(timeline: Timeline, runs_dir: str | os.PathLike[str] | None = None,
                  interval: float = FLUSH_INTERVAL) -> Path:
    """Attach a RunWriter to ``timeline`` (once), flush everything so far and keep flushing.

    Runs on the runtime loop. A second call flushes again and returns the same directory.
    """
    if interval <= 0:
        raise PetriError(f"save_timeline() interval must be > 0 seconds, not {interval!r}")
    writer = timeline.writer
    if not isinstance(writer, RunWriter):
        writer = RunWriter(timeline, run_dir_for(timeline, runs_dir), interval)
        timeline.writer = writer
    elif runs_dir is not None and run_dir_for(timeline, runs_dir) != writer.directory:
        raise PetriError(f"this run is already saved to {writer.directory}; it cannot move to {runs_dir} "
                         "(read_timelines reads it from there)")
    writer.flush()
    writer.start()
    return writer.directory
