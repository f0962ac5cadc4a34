"""Real petri CI results as one timeline frame: a test folder, a job, a run, or many runs.

petri's users triage flaky tests by opening logview one test at a time; this reads every
test of many CI runs at once (``<run_id>_<attempt>/<job>-vmm-tests-logs/<test>/``) so
``flakiness``, ``compare`` and ``runs_report`` work on them as on our own runs. Each
test is a run of the frame (``run``) named by its test (``vm``); the columns after the
timeline schema say where it came from and how it ended (EXTRA). Thousands of folders
are read by a process pool: the time goes to JSON decoding, which one process can't
spread over cores.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import BadArgument, PetriError
from ..records.timeline import COLUMNS, SOURCES
from ..runtime.validation import path_list
from .petri_format import LOG, OUTCOMES, TEST_FILES
from .petri_scan import Found, find, kinds, read_folders

#: Columns after the timeline schema's.
EXTRA = ("run_id", "attempt", "job", "test", "outcome", "error", "level", "petri_source", "source_kind")
#: Below this many test folders one process reads them all (a pool's start costs more).
POOL_MIN = 400
#: Test folders per pool task: big enough that sending results back is a small share.
CHUNK = 250


def read_petri_results(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                       workers: int | None = None) -> pd.DataFrame:
    """Every petri test under ``paths`` (a test, job or run folder, a folder of runs, a glob, or a list).

    One row per log line, attachment (``screen`` rows carry the PNG like our own screen
    rows, ``inspect`` and file rows link the file in ``data.path``) and typed halt (from
    petri's ``Got halt reason`` line or a failure such as ``Expected PowerOff, got
    PetriHaltReasonDetail {...}``). ``workers``: processes (None: one per core when there
    are many tests; 1: this process only).
    """
    found = _found(paths)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise BadArgument(f"workers must be a positive integer or None, not {workers!r}")
    n = workers or (os.cpu_count() or 1 if len(found) >= POOL_MIN else 1)
    if n == 1 or len(found) <= CHUNK:
        columns = read_folders(found)
    else:
        columns = _pooled(found, n)
    return _frame(columns)


def _found(paths: Any) -> list[Found]:
    items = path_list(paths, "read_petri_results")
    if not items:
        raise PetriError("read_petri_results() got an empty list of paths")
    found: list[Found] = []
    for item in items:
        text = os.fspath(item)
        matches = sorted(glob.glob(os.path.expanduser(text))) if glob.has_magic(text) else [text]
        if not matches:
            raise PetriError(f"no petri results match {text}")
        for match in matches:
            found += _found_at(Path(match).expanduser())
    return _unique_runs(found)


def _found_at(path: Path) -> list[Found]:
    if path.is_file() and path.name in TEST_FILES:
        path = path.parent
    if not path.exists():
        raise PetriError(f"{path} does not exist")
    if not path.is_dir():
        raise PetriError(f"{path} is not a folder of petri results (nor a test folder's {LOG})")
    found = find(path)
    if not found:
        raise PetriError(f"{path} holds no petri test results: no folder in it has {', '.join(TEST_FILES)}")
    return found


def _unique_runs(found: list[Found]) -> list[Found]:
    """Each test folder once; run names that would clash (same CI position twice) get their full path."""
    seen: dict[str, Found] = {}
    for one in found:
        seen.setdefault(os.path.realpath(one.path), one)
    out = list(seen.values())
    names = pd.Series([f.run for f in out], dtype="object")
    clash = names.duplicated(keep=False).to_numpy()
    return [Found(f.path, f.names, f.run_id, f.attempt, f.job, os.path.realpath(f.path)) if c else f
            for f, c in zip(out, clash, strict=True)]


def _pooled(found: list[Found], workers: int) -> dict[str, list[Any]]:
    chunks = [found[i:i + CHUNK] for i in range(0, len(found), CHUNK)]
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["petri_nb.petri_scan"])
    out: dict[str, list[Any]] | None = None
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=context) as pool:
        for part in pool.map(read_folders, chunks):
            if out is None:
                out = part
            else:
                for k, v in part.items():
                    out[k] += v
    assert out is not None
    return out


def _strings(values: list[Any]) -> pd.api.extensions.ExtensionArray:
    return pd.arrays.ArrowStringArray(pa.chunked_array([pa.array(values, type=pa.string())]))


def _walls(columns: dict[str, list[Any]], test_of_row: np.ndarray) -> np.ndarray:
    """Nanoseconds since the epoch per row: parsed ISO timestamps, our exports' own, and a row without one
    (a damaged first line) takes its test's next row's."""
    text = pd.to_datetime(pd.Series(columns["wall_text"], dtype="object"), utc=True, format="ISO8601",
                          errors="coerce").dt.as_unit("ns")
    ns = pd.array(text.array.asi8, dtype="Int64")
    ns[text.isna().to_numpy()] = pd.NA
    given = pd.array(columns["wall_ns"], dtype="Int64")
    ns = pd.Series(ns).where(pd.Series(given).isna(), pd.Series(given))
    if ns.isna().any():
        ns = ns.groupby(test_of_row).transform(lambda s: s.ffill().bfill())
    return ns.fillna(0).to_numpy(dtype="int64")


def _frame(columns: dict[str, list[Any]]) -> pd.DataFrame:
    counts = np.asarray(columns["rows"], dtype="int64")
    test_of_row = np.repeat(np.arange(len(counts)), counts)
    wall = _walls(columns, test_of_row)
    first = np.full(len(counts), 0, dtype="int64")
    if len(wall):
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        has = counts > 0
        first[has] = np.minimum.reduceat(wall, starts[has])
    given_t = pd.Series(columns["t"], dtype="float64").to_numpy()
    t = np.where(np.isnan(given_t), (wall - first[test_of_row]) / 1e9, given_t)

    def per_test(field: str, dtype: str = "category") -> Any:
        values = pd.Series(columns[field], dtype="object")
        if dtype == "category":
            return pd.Categorical(values).take(test_of_row) if len(values) else pd.Categorical([])
        return pd.array(values.to_numpy()[test_of_row] if len(values) else [], dtype=dtype)

    frame = pd.DataFrame({
        "vm": _strings(columns["vm"]).take(test_of_row),
        "run": _strings(columns["run"]).take(test_of_row),
        "t": t,
        "wall": pd.DatetimeIndex(wall.view("datetime64[ns]"), tz="UTC"),
        "source": pd.Categorical(columns["source"], categories=SOURCES),
        "kind": _strings(columns["kind"]),
        "reason": _strings(columns["reason"]),
        "detail": _strings(columns["detail"]),
        "data": _strings(columns["data"]),
        "run_id": per_test("run_id"),
        "attempt": per_test("attempt", "Int64"),
        "job": per_test("job"),
        "test": per_test("test"),
        "outcome": pd.Categorical(np.asarray(columns["outcome"], dtype="object")[test_of_row]
                                  if len(counts) else [], categories=OUTCOMES),
        "error": per_test("error"),
        "level": pd.Categorical(columns["level"]),
        "petri_source": pd.Categorical(columns["petri_source"]),
        "source_kind": pd.Categorical(kinds(columns["petri_source"])),
    }, columns=[*COLUMNS, *EXTRA])
    order = np.lexsort((t, test_of_row))
    if len(order) and not (order[1:] > order[:-1]).all():
        frame = frame.take(order).reset_index(drop=True)
    frame.attrs["tests"] = len(counts)
    return frame


def petri_tests(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per test of a ``read_petri_results`` frame: where it ran, how it ended, why, how long it took."""
    if not isinstance(frame, pd.DataFrame) or not {"run", "test", "outcome"} <= set(frame.columns):
        raise BadArgument("petri_tests() needs a read_petri_results() frame")
    groups = frame.groupby("run", sort=False, observed=True)
    halts = frame[frame["source"].astype(str) == "halt"].groupby("run", observed=True)["reason"].last()
    out = groups.agg(run_id=("run_id", "first"), attempt=("attempt", "first"), job=("job", "first"),
                     test=("test", "first"), outcome=("outcome", "first"), error=("error", "first"),
                     rows=("t", "size"), seconds=("t", "max"))
    out["halt"] = halts.reindex(out.index).astype("string")
    return out.reset_index()
