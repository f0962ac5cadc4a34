"""Damaged saved runs and odd seeks (issue 27): each a one-line PetriError, fast; never a hang
on a FIFO, never rows dropped unseen; a fleet whose last outcome line was cut off still reads."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import petri_nb
from petri_nb.fleet import read_fleet
from petri_nb.records.persist import RunWriter
from petri_nb.records.timeline import Timeline
from petri_nb.vm.time_travel import instruction_count

FAST = 5.0


def _saved_run(directory: Path) -> Path:
    timeline = Timeline("t")
    timeline.record("qmp", "STOP")
    RunWriter(timeline, directory).flush()
    return directory


def _fast_refusal(call, match: str) -> None:
    """``call`` raises a PetriError matching ``match`` within FAST seconds (in a thread: a hang fails)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(FAST)
    assert outcome, f"still running after {FAST} s (it opened something that blocks?)"
    assert isinstance(outcome[0], petri_nb.PetriError), outcome[0]
    assert "\n" not in str(outcome[0]) and time.monotonic() - start < FAST
    assert re.search(match, str(outcome[0])), outcome[0]


def test_a_fifo_meta_json_is_refused_without_opening_it(tmp_path: Path):
    run = _saved_run(tmp_path / "run")
    (run / "meta.json").unlink(missing_ok=True)
    os.mkfifo(run / "meta.json")  # opening it to read would block until a writer came
    _fast_refusal(lambda: petri_nb.read_timelines(run), r"meta.json: it is not a regular file")


def test_a_fifo_part_is_refused_without_opening_it(tmp_path: Path):
    run = _saved_run(tmp_path / "run")
    os.mkfifo(run / "part-000009.parquet")
    _fast_refusal(lambda: petri_nb.read_timelines(run), r"part-000009.parquet: it is not a regular file")


def test_rows_without_a_run_id_are_named_not_dropped(tmp_path: Path):
    run = _saved_run(tmp_path / "run")
    part = next(run.glob("part-*.parquet"))
    table = pq.read_table(part)
    nulls = pa.array([None] * len(table), type=table.schema.field("run").type)
    pq.write_table(table.set_column(table.schema.get_field_index("run"), "run", nulls), part)
    _fast_refusal(lambda: petri_nb.read_timelines(run), r"1 of its 1 rows have no run id")


def test_a_fleet_whose_last_outcome_line_was_cut_off_still_reads(tmp_path: Path):
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    whole = {"index": 0, "run": "r1", "worker": "w", "status": "ok", "halt_reason": None, "error": None,
             "duration_s": 1.0, "value": "1"}
    cut = json.dumps(whole | {"index": 1, "run": "r2"})[:25]  # the process died mid-write
    (fleet / "outcomes.jsonl").write_text(json.dumps(whole) + "\n" + cut)
    result = read_fleet(fleet)
    assert list(result.outcomes["run"]) == ["r1"]


@pytest.mark.parametrize("row", [{"icount": "abc"}, {"icount": [1]}, {"data": json.dumps({"icount": "x"})}])
def test_seek_to_a_row_whose_count_is_not_a_number(row: dict):
    with pytest.raises(petri_nb.PetriError, match="is not a number"):
        instruction_count(row, 1000)


def test_a_run_dir_whose_name_is_not_utf8_does_not_fail_the_folder(tmp_path: Path):
    _saved_run(tmp_path / "runs" / "plain")
    odd = _saved_run(tmp_path / "runs" / "odd")
    os.rename(odd, os.fsdecode(os.fsencode(tmp_path / "runs") + b"/run-\xff\xfe"))  # bytes no UTF-8 decodes
    frame = petri_nb.read_timelines(tmp_path / "runs")
    assert frame["run"].nunique() == 2
