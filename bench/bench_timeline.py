"""Timeline and inspect benchmarks (printed ratios, no asserts).

    .venv/bin/python -m bench.bench_timeline

1. 1,000,000 synthetic events -> DataFrame: Timeline.to_frame vs building the
   same typed frame from a list of dicts (medians of 3); that frame's atomic Parquet
   write and its read back through read_timelines.
2. Full ``inspect()`` of the tmk q35 VM: time and QMP round trips (and a subtree).
3. Runtime-call overhead, recording on vs off: ``status()`` (one QMP round trip)
   and a no-op ``_call`` on the runtime loop (the recording cost alone). Rounds
   alternate on/off so noise from other VMs on the machine hits both alike.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

import petri_nb
from petri_nb.records.persist import read_timelines, write_parquet
from petri_nb.records.timeline import DTYPES, SOURCES, Timeline, _to_json
from petri_nb.runtime.loop import run_blocking

N_EVENTS = 1_000_000


def _synthetic(n: int) -> Timeline:
    tl = Timeline("bench", limit=n + 1)
    kinds = [("console", "line"), ("qmp", "STOP"), ("runtime", "pause()"), ("halt", "halt")]
    for i in range(n):
        source, kind = kinds[i % 4]
        tl.record(source, kind, f"event {i}", None, "RESET" if source == "halt" else None)
    return tl


def _dict_frame(tl: Timeline) -> pd.DataFrame:
    rows = [{"vm": tl.vm, "run": tl.run, "t": e.t, "wall": e.wall, "source": e.source, "kind": e.kind,
             "reason": e.reason, "detail": e.detail, "data": _to_json(e.data)} for e in tl.events]
    frame = pd.DataFrame(rows)
    frame["wall"] = pd.to_datetime(frame["wall"], unit="s", utc=True)
    frame["source"] = pd.Categorical(frame["source"], categories=SOURCES)
    return frame.astype({c: d for c, d in DTYPES.items() if c not in ("wall", "source")})


def _best_of(fn, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_frame() -> dict[str, float]:
    t0 = time.perf_counter()
    tl = _synthetic(N_EVENTS)
    record_us = (time.perf_counter() - t0) / N_EVENTS * 1e6
    ours = _best_of(tl.to_frame)
    dicts = _best_of(lambda: _dict_frame(tl))
    frame = tl.to_frame()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.parquet"
        write = _best_of(lambda: write_parquet(frame, path))
        read = _best_of(lambda: read_timelines(path))
        size = path.stat().st_size
    return {"events": N_EVENTS, "record_us_per_event": record_us, "to_frame_s": ours, "list_of_dicts_s": dicts,
            "ratio_ours_vs_dicts": ours / dicts, "parquet_write_s": write, "read_timelines_s": read,
            "parquet_MiB": size / 2**20}


def bench_inspect(vm: petri_nb.Vm) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, path in (("full", None), ("machine/peripheral-anon", "machine/peripheral-anon"), ("cpus", "cpus")):
        times, trips, values = [], 0, 0
        for _ in range(3):
            t0 = time.perf_counter()
            node = vm.inspect(path)
            times.append(time.perf_counter() - t0)
            data = json.loads(vm.timeline().query("source == 'inspect'")["data"].iloc[-1])
            trips, values = data["round_trips"], len(node.to_frame())
        out[f"{label}: s"] = statistics.median(times)
        out[f"{label}: round trips"] = trips
        out[f"{label}: values"] = values
    return out


def bench_overhead(vm: petri_nb.Vm, rounds: int = 8, per_round: int = 150) -> dict[str, float]:
    aio = vm.aio

    async def timed(make, n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            await make()
            out.append(time.perf_counter() - t0)
        return out

    async def noop():
        return await aio._call("noop", asyncio.sleep(0))

    samples: dict[tuple[str, bool], list[float]] = {}
    for _ in range(rounds):
        for enabled in (True, False):
            aio._timeline.enabled = enabled
            samples.setdefault(("status", enabled), []).extend(run_blocking(timed(aio.status, per_round)))
            samples.setdefault(("noop", enabled), []).extend(run_blocking(timed(noop, per_round)))
    aio._timeline.enabled = True
    out = {}
    for call in ("status", "noop"):
        on = statistics.median(samples[(call, True)]) * 1e6
        off = statistics.median(samples[(call, False)]) * 1e6
        out[f"{call}() on us"], out[f"{call}() off us"], out[f"{call}() ratio on/off"] = on, off, on / off
    return out


def main() -> None:
    print("== 1e6 events -> DataFrame ==")
    for k, v in bench_frame().items():
        print(f"  {k:28s} {v:.4g}")
    with petri_nb.launch("tmk", name="bench-timeline") as vm:
        print("== inspect() of the tmk q35 VM (TCG) ==")
        for k, v in bench_inspect(vm).items():
            print(f"  {k:38s} {v:.4g}")
        print("== runtime-call overhead, recording on vs off ==")
        for k, v in bench_overhead(vm).items():
            print(f"  {k:28s} {v:.4g}")


if __name__ == "__main__":
    main()
