"""Timeline recording: one row per VM event, turned into a typed pandas DataFrame.

Rows are plain tuples appended on the runtime loop (cheap: no pandas on the hot
path); the frame is built only when someone asks for it, column by column.

Memory is bounded for long soaks: at most ``limit`` rows stay in memory. When a
run directory is attached (``petri_nb.records.persist``) older rows live on in its
Parquet part files and ``to_frame`` reads them back; without one, the oldest
rows are dropped and counted in ``dropped`` (also ``frame.attrs["dropped_rows"]``
and a warning), never silently.
"""

from __future__ import annotations

import base64
import collections
import io
import json
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image

if TYPE_CHECKING:
    from ..model.inspect_node import InspectNode

SOURCES = ("qmp", "runtime", "console", "halt", "inspect", "agent", "boot", "screen", "input")
COLUMNS = ("vm", "run", "t", "wall", "source", "kind", "reason", "detail", "data")
#: Declared dtypes of the timeline schema (the README's timeline schema).
DTYPES = {
    "vm": "string",
    "run": "string",
    "t": "float64",
    "wall": "datetime64[ns, UTC]",
    "source": "category",
    "kind": "string",
    "reason": "string",
    "detail": "string",
    "data": "string",
}
#: Rows kept in memory per VM run (~100 MB worst case with long console lines).
MAX_ROWS = 200_000
#: Inspect snapshots kept in memory per run (older ones stay on disk if saved).
MAX_SNAPSHOTS = 16
_SOURCE_CODES = {s: i for i, s in enumerate(SOURCES)}


class Event(NamedTuple):
    t: float
    wall: float
    source: str
    kind: str
    reason: str | None
    detail: str
    #: The payload as given; turned into JSON text only when a frame is built.
    data: Any


class Spill(Protocol):
    """Where rows go when they leave memory (a ``persist.RunWriter``)."""

    def flush(self) -> int: ...

    def read_parts(self) -> pd.DataFrame: ...

    def close(self) -> None: ...


def _to_json(data: Any) -> str:
    if data is None:
        return ""
    return json.dumps(data, default=str, separators=(",", ":"))


@dataclass
class Snapshot:
    """One ``inspect()`` result, kept for persistence and diffs."""

    seq: int
    t: float
    path: str
    frame: pd.DataFrame


@dataclass
class Timeline:
    """The event log of one VM run."""

    vm: str
    run: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    events: list[Event] = field(default_factory=list)
    limit: int = MAX_ROWS
    #: False turns ``record`` into a no-op (benchmarks: overhead on vs off).
    enabled: bool = True
    #: Rows dropped for the memory bound because no run directory took them.
    dropped: int = 0
    #: Leading rows of ``events`` already written by ``writer`` (so droppable).
    flushed: int = 0
    #: Rows that left memory but are in the writer's part files.
    spilled: int = 0
    writer: Spill | None = None
    snapshots: collections.deque[Snapshot] = field(default_factory=lambda: collections.deque(maxlen=MAX_SNAPSHOTS))
    snapshot_count: int = 0
    #: What the run ran on (petri_nb.records.run_meta), filled by the VM at launch; saved as meta.json.
    meta: dict[str, Any] = field(default_factory=dict)
    #: Guards moving rows out of memory against a frame being built on another thread.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now(self) -> float:
        return time.monotonic() - self.started

    def record(
        self,
        source: str,
        kind: str,
        detail: str = "",
        data: Any = None,
        reason: str | None = None,
        t: float | None = None,
    ) -> Event | None:
        """Append one row. ``data`` is serialised to JSON only when a frame is built
        (that keeps recording off the call path's critical cost), so pass an object
        that is not mutated afterwards (QMP event payloads and fresh dicts are fine)."""
        if not self.enabled:
            return None
        t = self.now() if t is None else t
        event = Event(t, self.started_wall + t, source, kind, reason, detail, data)
        self.events.append(event)
        if len(self.events) > self.limit:
            self._make_room()
        return event

    def _make_room(self) -> None:
        """Move the oldest tenth of the rows out of memory: to disk if possible, else count them."""
        excess = len(self.events) - self.limit + self.limit // 10
        if self.writer is not None:
            try:
                self.writer.flush()
            except Exception:  # the writer recorded its error; fall back to dropping
                pass
        on_disk = min(excess, self.flushed) if self.writer is not None else 0
        with self._lock:
            self._drop_oldest(excess, on_disk)

    def _drop_oldest(self, excess: int, on_disk: int) -> None:
        if on_disk < excess:
            lost = excess - on_disk
            if self.dropped == 0:
                warnings.warn(
                    f"timeline of {self.vm} exceeded {self.limit} in-memory rows; dropping the oldest "
                    "(save_timeline() keeps them on disk instead); see Timeline.dropped",
                    RuntimeWarning,
                    stacklevel=3,
                )
            self.dropped += lost
            self.flushed = max(0, self.flushed - excess)
            self.spilled += on_disk
        else:
            self.flushed -= excess
            self.spilled += excess
        del self.events[:excess]

    def unflushed(self) -> list[Event]:
        return self.events[self.flushed:]

    def snapshot(self, node: InspectNode, path: str | None, stats: dict[str, Any]) -> Snapshot:
        """Keep an inspect result and put it on the timeline (source ``inspect``)."""
        t = self.now()
        frame = node.to_frame()
        self.snapshot_count += 1
        snap = Snapshot(self.snapshot_count, t, path or "", frame)
        self.snapshots.append(snap)
        detail = f"{path or '/'}: {len(frame)} values" + (
            f" in {stats['duration_s'] * 1000:.1f} ms, {stats['round_trips']} QMP round trips"
            if "round_trips" in stats else ""
        )
        self.record("inspect", "inspect", detail, {"snapshot": snap.seq, "path": path, "values": len(frame), **stats},
                    t=t)
        return snap

    def to_frame(self) -> pd.DataFrame:
        """Rows in time order (a call is recorded when it ends, stamped with its start)."""
        with self._lock:  # may run on another thread while the loop appends
            events, spilled = list(self.events), self.spilled
        frame = events_frame(self.vm, self.run, events)
        if spilled and self.writer is not None:
            older = self.writer.read_parts().head(spilled)  # the rest is still in memory
            frame = pd.concat([conform(older), frame], ignore_index=True)
        frame = sort_by_time(frame)
        frame.attrs["dropped_rows"] = self.dropped
        return frame

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def screen_image(data: str | None) -> Image.Image | None:
    """The image of a screen row (source ``screen``: its ``data`` holds the PNG as base64), or None."""
    if not data:
        return None
    try:
        png = base64.b64decode(json.loads(data)["png"])
        return Image.open(io.BytesIO(png))
    except (ValueError, KeyError, TypeError, OSError):
        return None


def sort_by_time(frame: pd.DataFrame) -> pd.DataFrame:
    order = np.argsort(frame["t"].to_numpy(), kind="stable")
    if (order[1:] > order[:-1]).all():
        return frame
    return frame.take(order).reset_index(drop=True)


def empty_frame() -> pd.DataFrame:
    return events_frame("", "", [])


def events_frame(vm: str, run: str, events: list[Event]) -> pd.DataFrame:
    """Build a frame with the declared dtypes (the README's timeline schema).

    Columns are pulled out one at a time and converted through Arrow: an order of
    magnitude faster than ``zip(*events)`` or a list of dicts for a million rows.
    """
    n = len(events)
    t, wall, source, kind, reason, detail, data = (
        [e[i] for e in events] for i in range(len(Event._fields))
    )
    wall_ns = (np.asarray(wall, dtype="float64") * 1e9).astype("int64")
    return pd.DataFrame(
        {
            "vm": _strings([vm]).take(np.zeros(n, dtype="intp")) if n else _strings([]),
            "run": _strings([run]).take(np.zeros(n, dtype="intp")) if n else _strings([]),
            "t": np.asarray(t, dtype="float64"),
            "wall": pd.DatetimeIndex(wall_ns.view("datetime64[ns]"), tz="UTC"),
            "source": pd.Categorical.from_codes(
                np.fromiter((_SOURCE_CODES.get(s, -1) for s in source), dtype="int8", count=n), categories=SOURCES
            ),
            "kind": _strings(kind),
            "reason": _strings(reason),
            "detail": _strings(detail),
            "data": _strings([d if d.__class__ is str else _to_json(d) for d in data]),
        },
        columns=list(COLUMNS),
    )


def _strings(values: list[str | None]) -> pd.api.extensions.ExtensionArray:
    return pd.arrays.ArrowStringArray(pa.chunked_array([pa.array(values, type=pa.string())]))


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast a frame read back from disk (or built elsewhere) to the declared dtypes."""
    out = {}
    n = len(frame)
    for col, dtype in DTYPES.items():
        values = frame[col] if col in frame else pd.Series([None] * n)
        if col == "source":
            out[col] = pd.Categorical(values.astype("object"), categories=SOURCES)
        elif col == "wall":
            out[col] = pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]")
        elif col == "t":
            out[col] = values.astype("float64")
        else:
            out[col] = values.astype(dtype)
    return pd.DataFrame({c: pd.Series(v).reset_index(drop=True) for c, v in out.items()}, columns=list(COLUMNS))
