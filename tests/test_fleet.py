"""Fleets on a real Dask LocalCluster of worker processes, each booting real tmk VMs."""

from __future__ import annotations

import concurrent.futures
import functools
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import wait_until
from distributed import Client
from nbrun import run_notebook, text_of

import petri_nb
from petri_nb import fleet

CYCLE = ["POWER_OFF", "RESET", "TRIPLE_FAULT", "PANIC", "HIBERNATE"]


@pytest.fixture
def client() -> Iterator[Client]:
    """A LocalCluster with 2 worker processes, closed (with its workers and their QEMUs) after the test."""
    c = fleet.local_client(2)
    try:
        yield c
    finally:
        c.close()


def fails_on_odd_runs(vm: petri_nb.Vm) -> int:
    index = fleet.current_run().index
    if index % 2:
        raise ValueError(f"odd run {index}")
    return index


def panics_while_expecting(vm: petri_nb.Vm) -> None:
    vm.console.write("panic\n")
    vm.console.expect("never printed", timeout=20)


def waits_forever(vm: petri_nb.Vm) -> None:
    vm.console.write("hang\n")
    vm.wait_for_halt()


def hangs_on_one_run(marker_dir: str, hang_index: int, vm: petri_nb.Vm) -> str:
    """Run ``hang_index`` reports its worker and QEMU pids, then waits for a halt that never comes."""
    if fleet.current_run().index != hang_index:
        return fleet.HaltEach()(vm)
    me = psutil.Process()
    qemus = [p.pid for p in me.children(recursive=True) if p.name().startswith("qemu-system")]
    vm.console.write("hang\n")
    tmp = Path(marker_dir) / "hanging.tmp"
    tmp.write_text(" ".join(map(str, [me.pid, *qemus])))
    os.replace(tmp, Path(marker_dir) / "hanging")
    return vm.wait_for_halt(timeout=60).reason.name


def test_twenty_tmk_runs_on_two_workers_each_report_their_halt_reason(client: Client, tmp_path: Path):
    result = fleet.run("halt-each", runs=20, client=client, rundir=tmp_path, progress=False)

    out = result.outcomes
    assert list(out["index"]) == list(range(20))
    assert list(out["status"]) == ["ok"] * 20
    assert list(out["halt_reason"]) == [CYCLE[i % 5] for i in range(20)]
    assert list(out["value"]) == list(out["halt_reason"])
    assert out["worker"].nunique() == 2
    with urllib.request.urlopen(result.dashboard, timeout=10) as page:  # the Dask dashboard link works
        assert page.status == 200

    tl = result.timeline
    assert set(tl["run"]) == set(out["run"])
    halts = tl[tl["source"] == "halt"].set_index("run")["reason"]
    assert halts.to_dict() == dict(zip(out["run"], out["halt_reason"], strict=True))
    assert tl.groupby("run")["worker"].first().to_dict() == out.set_index("run")["worker"].to_dict()

    # Streamed as runs finished: one Parquet file per run plus the outcome log, reloadable.
    assert sorted(p.stem for p in tmp_path.glob("*.parquet")) == sorted(out["run"])
    again = fleet.read_fleet(tmp_path)
    assert list(again.outcomes["halt_reason"]) == list(out["halt_reason"])
    assert len(again.timeline) == len(tl)
    assert again.timeline.groupby("run")["worker"].first().to_dict() == out.set_index("run")["worker"].to_dict()
    assert set(petri_nb.read_timelines(f"{tmp_path}/*.parquet")["run"]) == set(out["run"])
    assert again.timeline.groupby("run")["qemu_version"].first().notna().all()  # each run's metadata came along


def test_killing_a_worker_mid_run_reports_its_run_lost_and_the_rest_complete(client: Client, tmp_path: Path):
    markers = tmp_path / "markers"
    markers.mkdir()
    experiment = functools.partial(hangs_on_one_run, str(markers), 3)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(fleet.run, experiment, runs=8, client=client, rundir=tmp_path / "runs",
                              progress=False)
        wait_until((markers / "hanging").exists, timeout=60, what="run 3 to start hanging")
        worker_pid, *qemu_pids = map(int, (markers / "hanging").read_text().split())
        # Half-finished: the runs done so far are already on disk and readable.
        wait_until(lambda: len(fleet.read_fleet(tmp_path / "runs").outcomes) >= 2, what="finished runs on disk")
        partial = fleet.read_fleet(tmp_path / "runs")
        assert set(partial.timeline["run"]) == set(partial.outcomes["run"])
        assert not pending.done()
        assert qemu_pids, "the hanging run's QEMU was not found"
        os.kill(worker_pid, signal.SIGKILL)
        result = pending.result(timeout=90)

    out = result.outcomes.set_index("index")
    assert out.loc[3, "status"] == "lost"
    assert "died during the run" in out.loc[3, "error"]
    others = out.drop(index=3)
    assert list(others["status"]) == ["ok"] * 7
    assert list(others["halt_reason"]) == [CYCLE[i % 5] for i in others.index]
    assert out.loc[3, "run"] not in set(result.timeline["run"])

    # The killed worker's QEMU died with it (parent-death signal), not orphaned.
    wait_until(lambda: all(_gone(p) for p in qemu_pids), timeout=10, what="the killed worker's QEMU to exit")


KILLED_CLIENT = """
import functools, sys
sys.path.insert(0, {tests!r})
from petri_nb import fleet
from test_fleet import hangs_on_one_run
if __name__ == "__main__":
    fleet.run(functools.partial(hangs_on_one_run, {markers!r}, 0), runs=2, rundir={rundir!r}, progress=False)
"""


@pytest.mark.slow
def test_a_killed_client_process_takes_its_workers_and_their_qemus_with_it(tmp_path: Path):
    """Like a Jupyter kernel restart (SIGKILL, no cleanup): nothing of the fleet may survive."""
    markers = tmp_path / "markers"
    markers.mkdir()
    script = tmp_path / "client.py"
    tests = str(Path(__file__).parent)
    script.write_text(KILLED_CLIENT.format(tests=tests, markers=str(markers), rundir=str(tmp_path / "runs")))
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: (markers / "hanging").exists() or proc.poll() is not None, timeout=60,
                   what="the client's fleet to start its hanging run")
        assert proc.poll() is None, "the client process exited early"
        worker_pid, *qemu_pids = map(int, (markers / "hanging").read_text().split())
        fleet_pids = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert worker_pid in fleet_pids and all(q in fleet_pids for q in qemu_pids)
    finally:
        proc.kill()
        proc.wait()
    wait_until(lambda: all(_gone(p) for p in fleet_pids), timeout=20,
               what="the killed client's workers and QEMUs to exit")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_a_fleet_in_a_notebook_shows_a_progress_bar_with_halt_counts_and_the_dashboard(tmp_path: Path):
    nb = run_notebook([
        "from petri_nb import fleet\nresult = fleet.run('halt-each', runs=5, rundir='runs')",
        "print(sorted(result.halt_counts().items()), list(result.outcomes['status']))",
    ], tmp_path, timeout=120)
    first, second = nb.cells
    assert "dashboard: http://127.0.0.1:" in text_of(first)
    widgets = [o for o in first.outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets, "tqdm did not render a notebook progress widget"
    models = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"].values()
    shown = " ".join(str(m["state"].get("value", "")) for m in models).replace("\u2007", " ")
    assert "5/5" in shown and "HIBERNATE=1, PANIC=1, POWER_OFF=1, RESET=1, TRIPLE_FAULT=1" in shown
    assert text_of(second).strip() == (
        "[('HIBERNATE', 1), ('PANIC', 1), ('POWER_OFF', 1), ('RESET', 1), ('TRIPLE_FAULT', 1)] "
        "['ok', 'ok', 'ok', 'ok', 'ok']"
    )


def test_experiment_failures_are_reported_per_run(client: Client, tmp_path: Path):
    result = fleet.run(fails_on_odd_runs, runs=4, client=client, rundir=tmp_path, progress=False)
    out = result.outcomes
    assert list(out["status"]) == ["ok", "error", "ok", "error"]
    assert list(out["error"].fillna("")) == ["", "ValueError: odd run 1", "", "ValueError: odd run 3"]
    assert list(out["value"][[0, 2]]) == [0, 2]
    assert set(result.timeline["run"]) == set(out["run"])  # failed runs keep their timelines

    halted = fleet.run(panics_while_expecting, runs=1, client=client, rundir=tmp_path / "h", progress=False)
    row = halted.outcomes.iloc[0]
    assert (row["status"], row["halt_reason"]) == ("error", "PANIC")
    assert row["error"].startswith("VmHalted")

    stuck = fleet.run(waits_forever, runs=1, client=client, rundir=tmp_path / "t", progress=False, run_timeout=1.5)
    row = stuck.outcomes.iloc[0]
    assert row["status"] == "timeout"
    assert row["error"].startswith("run timed out after 1.5 s; VM torn down (VmGone")
    assert "teardown()" in set(stuck.timeline["kind"])


def test_bad_fleet_input_is_rejected_before_any_cluster_starts(tmp_path: Path):
    lock = threading.Lock()
    cases = [
        (dict(experiment="nope"), r"unknown experiment 'nope'.*halt-each"),
        (dict(experiment=42), "must be a callable"),
        (dict(experiment=lambda vm: lock), None),  # picklable closure? lock is not
        (dict(experiment="halt-each", runs=0), "runs must be a positive integer"),
        (dict(experiment="halt-each", guest="nope"), "unknown guest 'nope'"),
        (dict(experiment="halt-each", colour="blue"), "bad launch option"),
        (dict(experiment="halt-each", name="x"), "names its VMs itself"),
        (dict(experiment="halt-each", run_timeout=0), "run_timeout must be a positive number"),
    ]
    for kwargs, message in cases:
        with pytest.raises(petri_nb.PetriError, match=message or "not picklable"):
            fleet.run(rundir=tmp_path, progress=False, **kwargs)
    with pytest.raises(petri_nb.PetriError, match="only available inside a fleet experiment"):
        fleet.current_run()


@pytest.mark.slow
def test_a_fleet_from_a_script_without_a_main_guard_says_what_to_do(tmp_path: Path):
    script = tmp_path / "soak.py"
    script.write_text(f"from petri_nb import fleet\nfleet.run('halt-each', runs=1, progress=False, "
                      f"rundir={str(tmp_path / 'runs')!r})\n")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "PetriError: the fleet's Dask workers did not start" in done.stderr
    assert "if __name__ == '__main__':" in done.stderr.splitlines()[-1]
