"""Reading many saved runs at once: every part file through pyarrow, one concat, one pandas pass.

``read_timelines`` used to build a pandas frame per part file, group each run and sort it,
then concatenate 10,000 little frames: two minutes for 10,000 tiny runs, where pyarrow
alone reads the same files in a few seconds. Here each run (a ``Unit``) only contributes
Arrow tables, read in threads (pyarrow releases the GIL); conversion, dtype conform, the
metadata columns and the per-run time order are then done once over all rows.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import PetriError
from .run_meta import META_COLUMNS, with_meta_columns
from .timeline import conform, empty_frame

#: Columns without which a Parquet file is not a timeline (of ours or anyone's).
REQUIRED_COLUMNS = ("run", "t", "source", "kind")
#: Reader threads: parquet decoding releases the GIL, so a few overlap file opens and decodes.
THREADS = min(8, (os.cpu_count() or 1) * 2)


@dataclass
class Unit:
    """Files whose rows are grouped by run together (a run directory, a fleet, one .parquet file).

    ``meta``: the run's meta.json as a dict; None when the files carry the metadata columns
    themselves (fleet files). ``relist``: lists the files again after one vanished (a compaction
    merged it), or None when they cannot move."""

    files: list[Path]
    meta: Mapping[str, Any] | None = None
    relist: Callable[[], list[Path]] | None = None


def regular(path: Path, what: str) -> None:
    """Refuse a FIFO, socket or device where a file should be: opening one can block forever."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise
    except OSError as e:
        raise PetriError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):
        raise PetriError(f"cannot read {what} {path}: it is not a regular file (a FIFO, socket or device?)")


def read_table(path: Path, what: str = "saved timeline part") -> pa.Table:
    """One Parquet file as Arrow; a damaged or foreign file is a PetriError naming it."""
    regular(path, what)
    try:  # ParquetFile, not read_table: read_table plans a dataset per file, 3x the cost of a tiny file
        with contextlib.ExitStack() as stack:
            source: Any = path
            if not _utf8(path):  # Arrow takes only UTF-8 paths; Python opens any name the OS has
                source = stack.enter_context(open(path, "rb"))
            file = stack.enter_context(pq.ParquetFile(source))
            return file.read(use_threads=False)  # the callers' threads read the files side by side
    except FileNotFoundError:
        raise
    except Exception as e:  # not ours, or damaged by something other than a crash of ours
        raise PetriError(f"cannot read {what} {path}: {e}") from e


def _utf8(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # a name that is not UTF-8 (surrogate-escaped by Python)
        return False
    return True


def _timeline_table(path: Path) -> pa.Table:
    table = read_table(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise PetriError(f"{path} is not a petri_nb timeline: it has no {', '.join(missing)} column")
    if (nulls := table.column("run").null_count):  # grouping by run would drop them unseen
        raise PetriError(f"{path} is damaged: {nulls} of its {len(table)} rows have no run id")
    return table.replace_schema_metadata(None)  # one pandas conversion for all, not each file's


def _unit_tables(unit: Unit) -> list[pa.Table]:
    files = unit.files
    for _ in range(3 if unit.relist else 1):
        try:
            return [_timeline_table(f) for f in files]
        except FileNotFoundError:
            if unit.relist is None:
                raise
            files = unit.relist()  # a compaction removed a part after we listed it: list again
    return [_timeline_table(f) for f in files]


def read_units(units: Sequence[Unit], by_run: bool = True) -> pd.DataFrame:
    """All rows of ``units`` with the timeline dtypes and META_COLUMNS, unit by unit. With ``by_run``, within
    a unit run by run (in order of first appearance), each run's rows stably in time order; else as written."""
    if not any(u.files for u in units):
        return with_meta_columns(empty_frame(), None)
    with ThreadPoolExecutor(THREADS) as pool:
        per_unit = list(pool.map(_unit_tables, units))
    tables = [t for ts in per_unit for t in ts]
    if not tables:
        return with_meta_columns(empty_frame(), None)
    rows = np.array([sum(len(t) for t in ts) for ts in per_unit], dtype="int64")
    files = [f for u in units for f in u.files]
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
        raw = table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow"),
                                            pa.large_string(): pd.StringDtype("pyarrow")}.get)
        frame = conform(raw)
    except (ValueError, TypeError, pa.ArrowInvalid, pa.ArrowTypeError) as e:  # a column of the wrong type
        raise PetriError(f"cannot read timeline parts {', '.join(map(str, files[:3]))}: {e}") from e
    unit_of_row = np.repeat(np.arange(len(units)), rows)
    frame = frame.assign(**_meta_columns(units, rows, unit_of_row, raw))
    return _in_run_order(frame, unit_of_row) if by_run else frame


def _meta_columns(units: Sequence[Unit], rows: np.ndarray, unit_of_row: np.ndarray,
                  raw: pd.DataFrame) -> dict[str, pd.api.extensions.ExtensionArray]:
    """META_COLUMNS: a run directory's meta.json repeated over its rows; a fleet's own columns."""
    from_files = np.array([u.meta is None for u in units])[unit_of_row]
    out = {}
    for col in META_COLUMNS:
        per_unit = [None if u.meta is None or u.meta.get(col) is None else str(u.meta[col]) for u in units]
        values = np.array(per_unit, dtype=object)[unit_of_row]
        if from_files.any():
            values[from_files] = raw[col].astype(object).to_numpy()[from_files] if col in raw else None
        out[col] = pd.array(values, dtype="string")
    return out


def _in_run_order(frame: pd.DataFrame, unit_of_row: np.ndarray) -> pd.DataFrame:
    """Rows grouped by (unit, run) in order of first appearance, stably by time within each group."""
    runs, _ = pd.factorize(frame["run"], use_na_sentinel=False)
    group, _ = pd.factorize(unit_of_row * (int(runs.max()) + 1) + runs)
    order = np.lexsort((frame["t"].to_numpy(), group))  # stable: equal times keep their recorded order
    if (order[1:] > order[:-1]).all():
        return frame
    return frame.take(order).reset_index(drop=True)
