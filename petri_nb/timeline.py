"""Timeline recording: one row per VM event, turned into a typed pandas DataFrame.

Rows are plain tuples appended on the runtime loop (cheap: no pandas on the hot
path); the frame is built only when someone asks for it.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pandas as pd

SOURCES = ("qmp", "runtime", "console", "halt", "inspect", "agent")
COLUMNS = ("vm", "run", "t", "wall", "source", "kind", "reason", "detail", "data")


class Event(NamedTuple):
    t: float
    wall: float
    source: str
    kind: str
    reason: str | None
    detail: str
    data: str


def _to_json(data: Any) -> str:
    if data is None:
        return ""
    return json.dumps(data, default=str, separators=(",", ":"))


@dataclass
class Timeline:
    """The event log of one VM run."""

    vm: str
    run: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    events: list[Event] = field(default_factory=list)

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
    ) -> Event:
        t = self.now() if t is None else t
        event = Event(t, self.started_wall + t, source, kind, reason, detail, _to_json(data))
        self.events.append(event)
        return event

    def to_frame(self) -> pd.DataFrame:
        """Rows in time order (a call is recorded when it ends, stamped with its start)."""
        return events_frame(self.vm, self.run, sorted(self.events, key=lambda e: e.t))


def empty_frame() -> pd.DataFrame:
    return events_frame("", "", [])


def events_frame(vm: str, run: str, events: list[Event]) -> pd.DataFrame:
    """Build a frame with the declared dtypes (see DESIGN.md, timeline schema)."""
    cols = list(zip(*events, strict=True)) if events else [[] for _ in Event._fields]
    by_name = dict(zip(Event._fields, cols, strict=True))
    n = len(events)
    return pd.DataFrame(
        {
            "vm": pd.array([vm] * n, dtype="string"),
            "run": pd.array([run] * n, dtype="string"),
            "t": pd.array(by_name["t"], dtype="float64"),
            "wall": pd.to_datetime(pd.Series(by_name["wall"], dtype="float64"), unit="s", utc=True),
            "source": pd.Categorical(by_name["source"], categories=SOURCES),
            "kind": pd.array(by_name["kind"], dtype="string"),
            "reason": pd.array(by_name["reason"], dtype="string"),
            "detail": pd.array(by_name["detail"], dtype="string"),
            "data": pd.array(by_name["data"], dtype="string"),
        },
        columns=list(COLUMNS),
    )
