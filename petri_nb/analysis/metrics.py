"""Run metrics: numbers measured on each run of a timeline frame, for ``petri_nb.analysis.compare``.

A metric turns a frame of many runs into tidy ``run, key, value`` rows (one row per
sample; ``key`` splits a metric, e.g. by call kind). Built-ins work on the whole frame
at once (a hundred runs of hundreds of rows each take milliseconds); a user metric is a
callable on one run's rows returning a number or a list of numbers.

Built-in metrics (all durations in seconds):

* ``call_durations``: each runtime call's duration (its row's ``data.duration_s``), keyed
  by call (``kind``, e.g. ``reset()``).
* ``reset_to_ready``: from each host ``reset()`` call (its row's ``t`` is when the call
  began) to the next row saying the guest is ready again: a console line matching
  ``ready`` (default ``READY``, e.g. tmk's ``tmk: ready``) or a runtime ``ready`` row. A
  reset followed by another reset before any ready row is not timed.
* ``boot_to_ready``: the runtime ``ready`` row's ``t``: launch to guest ready.
* ``test_durations``: a petri test's first to last row, keyed by test (``read_petri_results``
  frames; passed tests only: a failure's time says when it failed, not how fast it ran).
* ``halt_reasons``: one sample per halt, keyed by reason; compared as a mix, not a size.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import BadArgument, PetriError
from .runsets import by_run

#: A console line that says a guest is ready (tmk prints ``tmk: ready``).
READY = r"\bready\b"
UserMetric = Callable[[pd.DataFrame], Any]
SAMPLES = ("run", "key", "value")


@dataclass(frozen=True)
class Metric:
    """A named way to measure runs; ``kind`` decides how two sets of its samples are compared."""

    name: str
    measure: Callable[[pd.DataFrame, str], pd.DataFrame]
    #: "duration" (smaller is faster), "value" (a user's number) or "mix" (shares of keys).
    kind: str
    unit: str


def _samples(run: Any, key: Any, value: Any) -> pd.DataFrame:
    return pd.DataFrame({"run": pd.Series(run, dtype="object").astype(str).to_numpy(),
                         "key": pd.Series(key, dtype="object").astype(str).to_numpy(),
                         "value": np.asarray(value, dtype="float64")}, columns=list(SAMPLES))


def call_durations(frame: pd.DataFrame, ready: str = READY) -> pd.DataFrame:
    runtime = frame[frame["source"].astype(str) == "runtime"]
    seconds = runtime["data"].astype("string").str.extract(r'"duration_s":\s*([-+0-9.eE]+)', expand=False)
    timed = seconds.notna()
    return _samples(runtime["run"][timed], runtime["kind"][timed], pd.to_numeric(seconds[timed]))


def reset_to_ready(frame: pd.DataFrame, ready: str = READY) -> pd.DataFrame:
    source, kind = frame["source"].astype(str), frame["kind"].astype(str)
    # A row without a time (NaN t, a damaged file) cannot be placed between a reset and a ready.
    resets = frame.loc[(source == "runtime") & (kind == "reset()"), ["run", "t"]].dropna(subset=["t"])
    is_ready = ((source == "console") & frame["detail"].fillna("").str.contains(ready, regex=True)) | \
        ((source == "runtime") & (kind == "ready"))
    readies = frame.loc[is_ready, ["run", "t"]].dropna(subset=["t"]).rename(columns={"t": "t_ready"})
    if resets.empty or readies.empty:
        return _samples([], [], [])
    resets = resets.astype({"run": "object"}).sort_values("t", kind="stable")
    readies = readies.astype({"run": "object"}).sort_values("t_ready", kind="stable")
    resets["t_next_reset"] = resets.groupby("run")["t"].shift(-1).fillna(math.inf)
    timed = pd.merge_asof(resets, readies, left_on="t", right_on="t_ready", by="run", direction="forward")
    timed = timed[timed["t_ready"] < timed["t_next_reset"]]
    return _samples(timed["run"], [""] * len(timed), timed["t_ready"] - timed["t"])


def boot_to_ready(frame: pd.DataFrame, ready: str = READY) -> pd.DataFrame:
    rows = frame[(frame["source"].astype(str) == "runtime") & (frame["kind"].astype(str) == "ready")]
    first = rows.astype({"run": "object"}).groupby("run", sort=False)["t"].min()
    return _samples(first.index, [""] * len(first), first.to_numpy())


def halt_reasons(frame: pd.DataFrame, ready: str = READY) -> pd.DataFrame:
    halts = frame[frame["source"].astype(str) == "halt"]
    return _samples(halts["run"], halts["reason"].astype("object").fillna("OTHER"), np.ones(len(halts)))


def test_durations(frame: pd.DataFrame, ready: str = READY) -> pd.DataFrame:
    if not {"test", "outcome"} <= set(frame.columns):
        return _samples([], [], [])
    passed = frame[frame["outcome"].astype(str) == "passed"].astype({"run": "object", "test": "object"})
    spans = passed.groupby("run", sort=False).agg(test=("test", "first"), lo=("t", "min"), hi=("t", "max"))
    return _samples(spans.index, spans["test"], spans["hi"] - spans["lo"])


BUILTIN = {m.name: m for m in (
    Metric("call_durations", call_durations, "duration", "s"),
    Metric("reset_to_ready", reset_to_ready, "duration", "s"),
    Metric("boot_to_ready", boot_to_ready, "duration", "s"),
    Metric("test_durations", test_durations, "duration", "s"),
    Metric("halt_reasons", halt_reasons, "mix", "share of halts"),
)}


def user_metric(fn: UserMetric) -> Metric:
    """A Metric over a callable on one run's rows (a number, or a list of numbers, per run)."""
    name = getattr(fn, "__name__", None) or type(fn).__name__

    def measure(frame: pd.DataFrame, ready: str = READY) -> pd.DataFrame:
        runs, values = [], []
        for run, rows in by_run(frame).items():
            try:
                out = fn(rows)
            except Exception as e:
                raise PetriError(f"metric {name!r} failed on run {run}: {type(e).__name__}: {e}") from e
            got = list(out) if isinstance(out, (list, tuple, np.ndarray, pd.Series)) else [out]
            bad = [v for v in got if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)]
            if bad:
                raise PetriError(f"metric {name!r} must return a finite number or a list of them, "
                                 f"not {bad[0]!r:.60} (run {run})")
            runs += [run] * len(got)
            values += [float(v) for v in got]
        return _samples(runs, [""] * len(runs), values)

    return Metric(name, measure, "value", "")


def resolve(metric: str | UserMetric | list[str | UserMetric] | None) -> list[Metric]:
    """Metric names and callables as Metrics; None means every built-in."""
    if metric is None:
        return list(BUILTIN.values())
    items = metric if isinstance(metric, (list, tuple)) else [metric]
    if not items:
        raise BadArgument("metric= is an empty list; name at least one metric (or leave it out for all)")
    out = []
    for item in items:
        if isinstance(item, str):
            if item not in BUILTIN:
                raise BadArgument(f"unknown metric {item!r}; built-in metrics: {', '.join(BUILTIN)}")
            out.append(BUILTIN[item])
        elif callable(item):
            out.append(user_metric(item))
        else:
            raise BadArgument(f"a metric is a built-in name or a callable taking one run's frame, not {item!r:.60}")
    return out
