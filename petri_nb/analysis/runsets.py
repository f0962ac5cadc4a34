"""Run sets: the many ways to name "these runs" (paths, a timeline frame, a fleet), as one frame.

``compare`` and ``flakiness`` take runs however the user has them: saved run
directories (a path, a glob or a list; read with ``read_timelines``), a timeline
frame of many runs already in memory, or a ``fleet.FleetResult``. A fleet is
recognised by its shape, not its class, so analysing runs never imports Dask.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import pandas as pd

from ..errors import BadArgument, PetriError
from ..records.persist import read_timelines

#: Columns a frame needs to be analysed as runs.
NEEDED = ("run", "t", "source", "kind", "reason", "detail", "data")


def is_fleet(runs: Any) -> bool:
    return isinstance(getattr(runs, "timeline", None), pd.DataFrame) and \
        isinstance(getattr(runs, "outcomes", None), pd.DataFrame)


def timeline_of(runs: Any, what: str = "runs") -> pd.DataFrame:
    """The timeline rows of ``runs`` (paths, a frame or a FleetResult); PetriError if there are none."""
    if is_fleet(runs):
        frame = runs.timeline
    elif isinstance(runs, pd.DataFrame):
        frame = runs
    elif isinstance(runs, (str, os.PathLike)) or (isinstance(runs, Iterable) and not isinstance(runs, bytes)):
        items = [runs] if isinstance(runs, (str, os.PathLike)) else list(runs)
        if not items:
            raise PetriError(f"{what} is an empty list of paths: no runs to analyse")
        frame = read_timelines(items)
    else:
        raise BadArgument(f"{what} must be a path, a glob, a list of paths, a timeline DataFrame or a "
                          f"FleetResult, not {type(runs).__name__}")
    missing = [c for c in NEEDED if c not in frame.columns]
    if missing:
        raise BadArgument(f"{what} is not a timeline frame: it has no {', '.join(missing)} column")
    if frame.empty:
        raise PetriError(f"{what} holds no runs (no timeline rows)")
    return frame


def by_run(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each run's rows in time order, by run id (in order of first appearance)."""
    return {str(run): rows.sort_values("t", kind="stable") for run, rows in frame.groupby("run", sort=False,
                                                                                          observed=True)}
