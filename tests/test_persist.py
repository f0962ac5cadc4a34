"""Saved runs on disk: read_timelines over several real runs, SIGKILL mid-run, full disk, bad input."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import psutil
import pytest

import petri_nb
from petri_nb.records.persist import RunWriter, SaveError, default_runs_dir, read_snapshots
from petri_nb.records.run_meta import META_COLUMNS
from petri_nb.records.timeline import DTYPES, Timeline
from tests.conftest import wait_until

#: read_timelines: the schema's columns, then each run's metadata.
EXPECTED = {c: str(pd.Series(dtype=d).dtype) for c, d in DTYPES.items()} | {c: "string" for c in META_COLUMNS}


def test_read_timelines_over_three_saved_runs(tmp_path: Path):
    runs = []
    for i in range(3):
        with petri_nb.launch("tmk") as vm:
            run_dir = vm.save_timeline(tmp_path, interval=30)
            vm.console.write(f"echo run-{i}\n")
            vm.console.expect(f"(?m)^run-{i}\r?\n")
            if i == 0:
                vm.inspect("status")
            runs.append((vm.aio.run_id, len(vm.timeline())))
        assert run_dir == tmp_path / f"{vm.name}-{vm.aio.run_id}"
    frame = petri_nb.read_timelines(str(tmp_path / "*"))
    assert {c: str(t) for c, t in frame.dtypes.items()} == EXPECTED
    assert set(frame["run"]) == {r for r, _ in runs}
    for run_id, rows_before_teardown in runs:
        rows = frame[frame["run"] == run_id]
        assert rows["t"].is_monotonic_increasing
        assert len(rows) >= rows_before_teardown  # plus the teardown rows flushed at the end
        assert "teardown()" in set(rows["kind"])
    assert set(frame.loc[frame["source"] == "console", "detail"]) >= {"run-0", "run-1", "run-2"}
    # the same runs through a list of paths, and through the parent directory
    assert len(petri_nb.read_timelines([p for p in tmp_path.iterdir()])) == len(frame)
    assert len(petri_nb.read_timelines(tmp_path)) == len(frame)
    # the inspect snapshot of the first run is saved next to its timeline
    first = next(p for p in tmp_path.iterdir() if runs[0][0] in p.name)
    snaps = read_snapshots(first)
    assert list(snaps) == [1] and "status/status" in set(snaps[1]["path"])


CHILD = textwrap.dedent("""
    import sys, petri_nb
    vm = petri_nb.launch("tmk")
    print(vm.save_timeline(sys.argv[1], interval=0.1), flush=True)
    i = 0
    while True:
        vm.console.write(f"echo tick-{i}\\n")
        vm.console.expect(f"tick-{i}")
        i += 1
""")


def test_run_killed_with_sigkill_is_readable_up_to_its_last_flush(tmp_path: Path):
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).parent.parent)
    try:
        run_dir = Path(child.stdout.readline().strip())
        assert run_dir.parent == tmp_path

        def ticks() -> set[str]:
            try:
                frame = petri_nb.read_timelines(run_dir)
            except petri_nb.PetriError:
                return set()
            return set(frame.loc[frame["source"] == "console", "detail"])

        wait_until(lambda: "tick-20" in ticks(), timeout=30, what="tick-20 to be flushed")
        qemus = [p for p in psutil.Process(child.pid).children(recursive=True) if p.name().startswith("qemu")]
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    frame = petri_nb.read_timelines(run_dir)
    assert {c: str(t) for c, t in frame.dtypes.items()} == EXPECTED
    assert "tick-20" in set(frame["detail"]) and frame["t"].is_monotonic_increasing
    assert "teardown()" not in set(frame["kind"])  # it really died mid-run
    assert qemus, "the child's QEMU was not found"
    wait_until(lambda: not any(_alive(p) for p in qemus), timeout=10, what="the killed run's QEMU to exit")


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def tiny_filesystem(path: Path, size: str = "512k"):
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> None:
    """Write zeros until the filesystem has not a byte left (down to single-byte writes)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 16, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)


def test_disk_full_while_saving_is_a_clear_error_and_earlier_rows_stay(tmp_path: Path, vm: petri_nb.Vm):
    with tiny_filesystem(tmp_path / "small") as small:
        run_dir = vm.save_timeline(small, interval=60)
        first = petri_nb.read_timelines(run_dir)
        filler = small / "filler"
        fill(filler)
        assert os.statvfs(small).f_bavail == 0
        vm.console.write("echo after-full\n")
        vm.console.expect("after-full")
        with pytest.raises(SaveError, match="No space left on device"):
            vm.save_timeline()
        assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
        assert petri_nb.read_timelines(run_dir).equals(first)
        assert "after-full" in set(vm.timeline()["detail"])  # still in memory
        filler.unlink()
        vm.save_timeline()
        saved = petri_nb.read_timelines(run_dir)
        assert "after-full" in set(saved["detail"]) and "save_timeline failed" in set(saved["kind"])


def test_crash_leftovers_are_ignored_and_foreign_files_are_named(tmp_path: Path):
    timeline = Timeline("t")
    timeline.record("qmp", "STOP")
    writer = RunWriter(timeline, tmp_path / "run")
    writer.flush()
    (tmp_path / "run" / ".part-000001.parquet.999.tmp").write_bytes(b"PAR1 truncated")
    assert len(petri_nb.read_timelines(tmp_path / "run")) == 1
    (tmp_path / "run" / "part-000002.parquet").write_bytes(b"not parquet")
    with pytest.raises(petri_nb.PetriError, match="part-000002.parquet"):
        petri_nb.read_timelines(tmp_path / "run")


def test_bad_paths_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(petri_nb.PetriError, match="no saved run at"):
        petri_nb.read_timelines(tmp_path / "missing")
    with pytest.raises(petri_nb.PetriError, match="no saved runs match"):
        petri_nb.read_timelines(str(tmp_path / "nothing-*"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(petri_nb.PetriError, match="not a petri_nb run directory"):
        petri_nb.read_timelines(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(petri_nb.PetriError, match="neither a run directory"):
        petri_nb.read_timelines(tmp_path / "notes.txt")
    monkeypatch.setenv("PETRI_NB_RUNS", str(tmp_path / "runs"))
    assert default_runs_dir() == tmp_path / "runs"
    monkeypatch.delenv("PETRI_NB_RUNS")
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_runs_dir() == Path.home() / ".local/share/petri_nb/runs"


def test_save_timeline_rejects_a_bad_interval(vm: petri_nb.Vm, tmp_path: Path):
    with pytest.raises(petri_nb.PetriError, match="interval must be > 0"):
        vm.save_timeline(tmp_path, interval=0)
