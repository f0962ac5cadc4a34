"""Export a real run as a petri test directory and import it (and a foreign petri log) back."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import petri_nb
from petri_nb.analysis.petri_log import export_petri_log, read_petri_log
from petri_nb.records.timeline import DTYPES, empty_frame

EXPECTED = {c: str(pd.Series(dtype=d).dtype) for c, d in DTYPES.items()}


def test_triple_fault_run_exports_as_failed_petri_test_and_round_trips(vm: petri_nb.Vm, tmp_path: Path):
    vm.console.write("triplefault\n")
    vm.wait_for_halt(timeout=20)
    frame = vm.timeline()
    out = export_petri_log(frame, tmp_path / "tmk_triple_fault", test_name="x86_64::tmk_triple_fault")
    assert (out / "petri.test").read_text() == "x86_64::tmk_triple_fault"
    assert not (out / "petri.passed").exists()
    assert "TRIPLE_FAULT" in (out / "petri.failed").read_text()
    lines = [json.loads(line) for line in (out / "petri.jsonl").read_text().splitlines()]
    assert len(lines) == len(frame)
    assert {"timestamp", "source", "severity", "message"} <= set(lines[0])
    assert lines[0]["timestamp"].endswith("Z") and "T" in lines[0]["timestamp"]
    halt = next(line for line in lines if line["source"] == "halt")
    assert halt["severity"] == "ERROR" and halt["message"].startswith("halt TRIPLE_FAULT: triple fault")
    assert {line["severity"] for line in lines if line["source"] == "console"} == {"INFO"}

    back = read_petri_log(out)
    assert {c: str(t) for c, t in back.dtypes.items()} == EXPECTED
    pd.testing.assert_frame_equal(back, frame, check_like=False)
    assert back.attrs["outcome"] == "failed" and back.attrs["test"] == "x86_64::tmk_triple_fault"


def test_clean_run_exports_as_passed(vm: petri_nb.Vm, tmp_path: Path):
    vm.console.write("poweroff\n")
    vm.wait_for_halt(timeout=20)
    out = export_petri_log(vm.timeline(), tmp_path / "t")
    assert (out / "petri.passed").read_bytes() == b"" and not (out / "petri.failed").exists()  # petri's is empty
    out = export_petri_log(vm.timeline(), tmp_path / "t", passed=False)  # the caller's verdict wins
    assert (out / "petri.failed").exists() and not (out / "petri.passed").exists()


def test_foreign_petri_log_imports_as_a_timeline(tmp_path: Path):
    d = tmp_path / "openhcl_boot"
    d.mkdir()
    (d / "petri.test").write_text("x86_64::openhcl_boot")
    (d / "petri.jsonl").write_text(
        '{"timestamp":"2026-11-26T09:00:00.000000Z","source":"petri","severity":"INFO","message":"starting vm"}\n'
        '{"timestamp":"2026-11-26T09:00:01.500000Z","source":"guest","severity":"INFO","message":"login:\\n"}\n'
        '\n'
        '{"timestamp":"2026-11-26T09:00:02.000000Z","source":"petri","severity":"ERROR","message":"timed out"}\n'
    )
    frame = read_petri_log(d)
    assert {c: str(t) for c, t in frame.dtypes.items()} == EXPECTED
    assert frame["t"].tolist() == [0.0, 1.5, 2.0]
    assert frame["source"].astype(str).tolist() == ["runtime", "console", "runtime"]
    assert frame["kind"].tolist() == ["log", "line", "log"]
    assert frame["detail"].tolist() == ["starting vm", "login:", "timed out"]
    assert frame.attrs["outcome"] == "incomplete" and (frame["vm"] == "x86_64::openhcl_boot").all()


def test_bad_petri_inputs_are_clear_errors(tmp_path: Path):
    with pytest.raises(petri_nb.PetriError, match="holds no petri test results"):
        read_petri_log(tmp_path)
    (tmp_path / "petri.jsonl").write_text("not json\n")  # a row says so; nothing else is lost
    assert read_petri_log(tmp_path)["detail"].iloc[0].startswith("petri.jsonl:1: not a petri log line")
    with pytest.raises(petri_nb.PetriError, match="needs a timeline frame"):
        export_petri_log(pd.DataFrame({"x": [1]}), tmp_path / "o")
    two = pd.concat([empty_frame()] * 2)
    two = pd.concat([two, pd.DataFrame({"run": ["a", "b"]})], ignore_index=True)
    with pytest.raises(petri_nb.PetriError, match="one run per directory"):
        export_petri_log(two.reindex(columns=list(DTYPES)), tmp_path / "o")
