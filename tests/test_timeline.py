"""Timeline recording without a VM: schema, ordering, the memory bound and spilling."""

from __future__ import annotations

import pandas as pd
import pytest

from petri_nb.model.inspect_node import InspectNode
from petri_nb.records.persist import RunWriter, read_run
from petri_nb.records.timeline import DTYPES, Timeline, conform


def _dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {c: str(t) for c, t in frame.dtypes.items()}


EXPECTED = {c: str(pd.Series(dtype=d).dtype) for c, d in DTYPES.items()}


def test_frame_has_schema_dtypes_and_time_order():
    tl = Timeline("vm-a")
    tl.record("qmp", "STOP", "", {"x": 1})
    tl.record("runtime", "pause()", "ok", {"duration_s": 0.01}, t=0.0)  # a call is stamped with its start
    tl.record("halt", "halt", "triple fault", reason="TRIPLE_FAULT")
    tl.record("bogus", "x")  # an unknown source becomes a missing category, not an error
    frame = tl.to_frame()
    assert _dtypes(frame) == EXPECTED
    assert frame["t"].is_monotonic_increasing
    assert frame["kind"].tolist()[0] == "pause()"
    assert frame["data"].tolist()[:2] == ['{"duration_s":0.01}', '{"x":1}']
    assert frame["reason"].isna().sum() == 3 and (frame["reason"] == "TRIPLE_FAULT").sum() == 1
    assert frame["source"].isna().sum() == 1
    assert frame["wall"].dt.tz is not None and frame.attrs["dropped_rows"] == 0
    assert _dtypes(tl.to_frame().iloc[:0]) == EXPECTED
    assert _dtypes(Timeline("empty").to_frame()) == EXPECTED


def test_without_a_run_dir_old_rows_are_dropped_and_counted():
    tl = Timeline("soak", limit=1000)
    with pytest.warns(RuntimeWarning, match="exceeded 1000 in-memory rows"):
        for i in range(5000):
            tl.record("console", "line", f"line {i}")
    assert len(tl.events) <= 1000
    frame = tl.to_frame()
    assert tl.dropped == 5000 - len(frame) > 0
    assert frame.attrs["dropped_rows"] == tl.dropped
    assert frame["detail"].iloc[-1] == "line 4999"
    assert frame["detail"].iloc[0] == f"line {tl.dropped}"


def test_with_a_run_dir_rows_spill_to_disk_and_nothing_is_lost(tmp_path):
    tl = Timeline("soak", limit=1000)
    tl.writer = RunWriter(tl, tmp_path / "run")
    for i in range(5000):
        tl.record("console", "line", f"line {i}")
    assert len(tl.events) <= 1000 and tl.dropped == 0 and tl.spilled >= 4000
    frame = tl.to_frame()
    assert frame["detail"].tolist() == [f"line {i}" for i in range(5000)]
    assert _dtypes(frame) == EXPECTED
    tl.close()
    assert read_run(tmp_path / "run")["detail"].tolist() == frame["detail"].tolist()


def test_disabled_recording_records_nothing():
    tl = Timeline("off", enabled=False)
    assert tl.record("qmp", "STOP") is None
    assert len(tl.to_frame()) == 0


def test_inspect_snapshot_is_a_timeline_row():
    tl = Timeline("vm")
    node = InspectNode.from_json("", {"status": {"status": "running"}})
    snap = tl.snapshot(node, "status", {"duration_s": 0.002, "round_trips": 1})
    row = tl.to_frame().iloc[-1]
    assert row["source"] == "inspect" and "1 values" in row["detail"] and "1 QMP round trips" in row["detail"]
    assert snap.frame["path"].tolist() == ["status/status"]


def test_conform_casts_foreign_frames_to_the_schema():
    raw = pd.DataFrame({"vm": ["a"], "run": ["r"], "t": [1], "wall": ["2026-01-01T00:00:00Z"], "source": ["qmp"],
                        "kind": ["STOP"], "detail": [""], "data": [""], "extra": [1]})
    frame = conform(raw)
    assert _dtypes(frame) == EXPECTED and "extra" not in frame and frame["reason"].isna().all()


def test_when_the_run_dir_breaks_rows_are_dropped_and_counted_not_lost_silently(tmp_path):
    tl = Timeline("soak", limit=1000)
    tl.writer = RunWriter(tl, tmp_path / "run")
    tl.writer.flush()
    for p in (tmp_path / "run").iterdir():
        p.unlink()
    (tmp_path / "run").rmdir()
    (tmp_path / "run").write_text("now a file: every write fails")
    with pytest.warns(RuntimeWarning, match="dropping the oldest"):
        for i in range(3000):
            tl.record("console", "line", f"line {i}")
    assert len(tl.events) <= 1000 and tl.dropped > 0
    frame = tl.events
    assert sum(e.kind == "save_timeline failed" for e in frame) <= 1
    assert tl.writer.error is not None and "could not write" in str(tl.writer.error)


def test_many_parts_are_compacted_and_a_crash_mid_compaction_doubles_nothing(tmp_path):
    tl = Timeline("soak")
    writer = RunWriter(tl, tmp_path / "run")
    for i in range(30):
        tl.record("console", "line", f"line {i}")
        writer.flush()
    parts = sorted((tmp_path / "run").glob("part-*.parquet"))
    assert len(parts) == 30
    keep = parts[3].read_bytes()
    writer.compact()
    assert [p.name for p in (tmp_path / "run").glob("part-*.parquet")] == ["part-000000-000029.parquet"]
    parts[3].write_bytes(keep)  # as if the process died after writing the merge, before deleting part 3
    tl.record("console", "line", "line 30")
    writer.flush()
    assert (tmp_path / "run" / "part-000030.parquet").exists()
    assert read_run(tmp_path / "run")["detail"].tolist() == [f"line {i}" for i in range(31)]
    again = RunWriter(tl, tmp_path / "run")  # a new writer continues the numbering
    assert again._part == 31
