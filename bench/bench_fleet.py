"""Fleet throughput: runs per minute with 1 and 2 Dask workers, and the per-run cost of Dask.

The experiment is the built-in ``halt-each`` (boot tmk, send one halt command, wait
for the halt, tear down). The in-process baseline runs the very same per-run
function (``fleet._run_one``) in a loop here, so the difference is what the fleet
adds: task shipping, result transport, Parquet streaming and the outcome log.
Cluster start-up is timed separately; each cluster gets a warm-up fleet so worker
imports are not billed to the runs. ``overhead_ms_per_run_outside_task`` is the
fleet's wall time per run minus the time a run spent inside its task, a measure
that does not depend on comparing two noisy conditions.

Run: ``.venv/bin/python -m bench.bench_fleet [runs]``
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid

from distributed import Client

from petri_nb import fleet


def in_process(runs: int) -> float:
    start = time.perf_counter()
    for i in range(runs):
        outcome, _ = fleet._run_one(fleet.HaltEach(), "bench", i, str(uuid.uuid4()), "tmk", {})
        assert outcome["status"] == "ok", outcome
    return time.perf_counter() - start


def on_cluster(client: Client, runs: int, tmp: str) -> tuple[float, float]:
    """(wall seconds for the runs, mean seconds a run spent inside its worker task)."""
    t0 = time.perf_counter()
    result = fleet.run("halt-each", runs=runs, client=client, rundir=f"{tmp}/{uuid.uuid4()}", progress=False)
    elapsed = time.perf_counter() - t0
    assert (result.outcomes["status"] == "ok").all(), result.outcomes
    return elapsed, float(result.outcomes["duration_s"].mean())


def by_firmware(runs: int = 30, rounds: int = 2) -> list[dict[str, object]]:
    """Runs/min of the ``halt-each`` fleet on 2 workers with tmk under SeaBIOS (before) and qboot (after)."""
    client = fleet.local_client(2)
    walls: dict[str, list[float]] = {"bios": [], "qboot": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fleet.run("halt-each", runs=2, client=client, rundir=f"{tmp}/{uuid.uuid4()}", progress=False)  # warm-up
            for _ in range(rounds):
                for fw, wall in walls.items():
                    t0 = time.perf_counter()
                    result = fleet.run("halt-each", runs=runs, client=client, rundir=f"{tmp}/{uuid.uuid4()}",
                                       progress=False, firmware=fw)
                    wall.append(time.perf_counter() - t0)
                    assert (result.outcomes["status"] == "ok").all(), result.outcomes
    finally:
        client.close()
    rate = {fw: 60 * runs / statistics.median(wall) for fw, wall in walls.items()}
    name = f"fleet halt-each, 2 workers ({runs} runs x {rounds})"
    return [
        {"benchmark": name, "measure": "tmk on SeaBIOS (before)", "value": rate["bios"], "unit": "runs/min",
         "ratio": 1.0, "target": None},
        {"benchmark": name, "measure": "tmk on qboot (after)", "value": rate["qboot"], "unit": "runs/min",
         "ratio": rate["qboot"] / rate["bios"], "target": None},
    ]


def main(runs: int = 40, rounds: int = 3) -> dict[str, float]:
    """Rounds alternate the three ways so machine noise (other VMs on a shared box) hits all alike."""
    clients, start = {}, {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        clients[workers] = fleet.local_client(workers)
        start[workers] = time.perf_counter() - t0
    local, one, two, inside = [], [], [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for workers, client in clients.items():  # warm-up: worker imports are not billed to runs
                on_cluster(client, workers, tmp)
            for _ in range(rounds):
                local.append(in_process(runs))
                wall, task = on_cluster(clients[1], runs, tmp)
                one.append(wall)
                inside.append(task)
                two.append(on_cluster(clients[2], runs, tmp)[0])
    finally:
        for client in clients.values():
            client.close()
    med = statistics.median
    report = {
        "runs_per_round": runs,
        "rounds": rounds,
        "in_process_runs_per_min": 60 * runs / med(local),
        "one_worker_runs_per_min": 60 * runs / med(one),
        "two_workers_runs_per_min": 60 * runs / med(two),
        "in_process_ms_per_run": 1000 * med(local) / runs,
        "one_worker_ms_per_run": 1000 * med(one) / runs,
        "overhead_ms_per_run_vs_in_process": 1000 * (med(one) - med(local)) / runs,
        "overhead_ms_per_run_outside_task": 1000 * (med(one) / runs - med(inside)),
        "cluster_start_s_1_worker": start[1],
        "cluster_start_s_2_workers": start[2],
    }
    for key, value in report.items():
        print(f"{key:38s} {value:10.2f}")
    return report


if __name__ == "__main__":
    result = main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
    print(json.dumps(result))
