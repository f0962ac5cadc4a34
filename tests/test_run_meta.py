"""Run metadata: every saved run says what it ran on, and read_timelines groups runs by it."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd

import petri_nb
from petri_nb import fleet
from petri_nb.guests.tmk import tmk
from petri_nb.records.persist import RunWriter, write_parquet
from petri_nb.records.run_meta import META_COLUMNS, guest_hash
from petri_nb.records.timeline import DTYPES, Timeline

EXPECTED = {c: str(pd.Series(dtype=d).dtype) for c, d in DTYPES.items()} | {c: "string" for c in META_COLUMNS}


def real_qemu_version() -> str:
    out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True, check=True).stdout
    return re.search(r"version (\d+\.\d+\.\d+)", out)[1]


def test_a_saved_tmk_run_moved_elsewhere_groups_by_host_and_real_qemu_version(tmp_path: Path):
    with petri_nb.launch("tmk") as vm:
        vm.save_timeline(tmp_path / "mine", interval=30)
        vm.console.write("echo hello\n")
        vm.console.expect("(?m)^hello")
    shutil.move(tmp_path / "mine", tmp_path / "theirs")
    frame = petri_nb.read_timelines(tmp_path / "theirs")
    assert {c: str(t) for c, t in frame.dtypes.items()} == EXPECTED  # schema columns first, as before
    groups = frame.groupby(["host", "qemu_version"]).size()
    assert list(groups.index) == [(socket.gethostname(), real_qemu_version())]
    assert groups.iloc[0] == len(frame)
    row = frame.iloc[0]
    assert (row["accel"], row["firmware"], row["guest_hash"]) == ("tcg", "qboot", guest_hash(tmk()))
    assert row["petri_nb_version"] == "0.1.0" and re.fullmatch(r"[0-9a-f]{40}", row["git_commit"])


def fake_run(directory: Path, host: str, events: int) -> None:
    timeline = Timeline("fake")
    timeline.meta.update(host=host, qemu_version="8.2.0")
    for i in range(events):
        timeline.record("console", "line", f"line {i}")
    RunWriter(timeline, directory / f"fake-{timeline.run}").flush()


def test_runs_from_two_hosts_group_by_host(tmp_path: Path):
    for host, events in (("alpha", 3), ("alpha", 4), ("beta", 5)):
        fake_run(tmp_path, host, events)
    frame = petri_nb.read_timelines(tmp_path)
    assert frame.groupby("host")["run"].nunique().to_dict() == {"alpha": 2, "beta": 1}
    assert frame.groupby("host").size().to_dict() == {"alpha": 7, "beta": 5}
    assert set(frame["qemu_version"]) == {"8.2.0"} and frame["accel"].isna().all()


def test_runs_without_metadata_read_with_null_metadata_columns(tmp_path: Path):
    old = Timeline("old")  # a run saved before metadata existed, and a bare Parquet file
    old.record("qmp", "STOP")
    RunWriter(old, tmp_path / "old-run").flush()
    write_parquet(old.to_frame(), tmp_path / "bare.parquet")
    for path in (tmp_path / "old-run", tmp_path / "bare.parquet"):
        frame = petri_nb.read_timelines(path)
        assert {c: str(t) for c, t in frame.dtypes.items()} == EXPECTED
        assert len(frame) == 1 and frame[list(META_COLUMNS)].isna().all().all()


def test_guest_hash_is_stable_across_processes_and_changes_with_the_description():
    code = ("from petri_nb.guests.tmk import tmk; from petri_nb.records.run_meta import guest_hash; "
            "print(guest_hash(tmk()))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == guest_hash(tmk()) and re.fullmatch(r"[0-9a-f]{12}", other)
    assert guest_hash(tmk(memory_mib=64)) != guest_hash(tmk())
    assert guest_hash(tmk(firmware="bios")) != guest_hash(tmk())


def test_a_fleet_run_file_carries_its_metadata(tmp_path: Path):
    outcome, frame = fleet._run_one(fleet.HaltEach(), "f", 0, "run-0", "tmk", {})  # what a worker does
    assert outcome["status"] == "ok" and frame["qemu_version"].eq(real_qemu_version()).all()
    write_parquet(frame, tmp_path / "run-0.parquet")  # what the client does with it
    back = petri_nb.read_timelines(tmp_path / "run-0.parquet")
    assert back.groupby(["host", "firmware"]).size().to_dict() == {(socket.gethostname(), "qboot"): len(frame)}


def test_many_runs_read_in_run_order_with_their_own_metadata(tmp_path: Path):
    for i in range(60):
        timeline = Timeline(f"many-{i}")
        timeline.meta.update(host=f"h{i}")
        for t in (0.3, 0.1, 0.2):  # recorded out of time order: read back sorted within the run
            timeline.record("console", "line", f"{i}:{t}", t=t)
        RunWriter(timeline, tmp_path / f"many-{i:02d}-{timeline.run}").flush()
    frame = petri_nb.read_timelines(tmp_path)
    assert {c: str(t) for c, t in frame.dtypes.items()} == EXPECTED
    assert list(frame["vm"].drop_duplicates()) == [f"many-{i}" for i in range(60)]  # directory order
    assert (frame.groupby("run", sort=False)["t"].apply(list) == [[0.1, 0.2, 0.3]] * 60).all()
    assert (frame["host"] == "h" + frame["vm"].str.removeprefix("many-")).all()
