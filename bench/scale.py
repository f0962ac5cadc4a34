"""Analysis at scale (issue 27): N tiny saved runs read, summarised and reported, against plain pyarrow.

    .venv/bin/python -m bench.scale [N]        # default 10,000

Each run is what a short soak leaves behind: ~10 timeline rows in one part file and a
meta.json, written by the real RunWriter. Runs are built once per N under the temp dir
and reused (building is not what is measured). Everything is timed in one process, one
step after another, so the pyarrow baseline shares the machine's load with the rest.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as ds

from petri_nb.analysis.flakiness import flakiness
from petri_nb.analysis.runs_report import runs_report
from petri_nb.records.persist import RunWriter, read_timelines
from petri_nb.records.timeline import Timeline

EXPERIMENTS = 20
HALTS = ("RESET", "POWER_OFF", "RESET", "PANIC", None)  # cycled, so outcomes disagree within an experiment


def build(root: Path, n: int) -> Path:
    """``n`` saved runs under ``root`` (reused when a previous call finished building them)."""
    done = root / f".built-{n}"
    if done.exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        tl = Timeline(f"exp{i % EXPERIMENTS}-{i}")
        tl.meta.update(host=f"host{i % 3}", qemu_version="8.2.0", accel="kvm")
        tl.record("runtime", "ready", "guest ready", t=0.05)
        for line in range(7):
            tl.record("console", "line", f"boot step {line}", t=0.1 + line * 0.01)
        tl.record("runtime", "console.write()", "ok", {"duration_s": 5e-5}, t=0.2)
        if (reason := HALTS[i % len(HALTS)]) is not None:
            tl.record("halt", "halt", reason.lower(), reason=reason, t=0.25)
        RunWriter(tl, root / f"{tl.vm}-{tl.run}").flush()
    done.touch()
    return root


def timed(what: str, call) -> tuple[str, float, object]:
    started = time.perf_counter()
    value = call()
    return what, time.perf_counter() - started, value


def main(n: int) -> None:
    root = build(Path(tempfile.gettempdir()) / f"petri_nb-scale-{n}", n)
    parts = sorted(str(p) for p in root.glob("*/part-*.parquet"))
    steps = [timed("pyarrow baseline: dataset(all part files).to_table()",
                   lambda: ds.dataset(parts, format="parquet").to_table())]
    steps.append(timed("read_timelines(root)", lambda: read_timelines(root)))
    frame = steps[-1][2]
    steps.append(timed("flakiness(frame)", lambda: flakiness(frame)))
    out = root.parent / f"petri_nb-scale-{n}.html"
    steps.append(timed("runs_report(frame)", lambda: runs_report(frame, out)))
    print(f"{n} runs, {len(frame)} rows ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    print("| step | seconds |\n|---|---:|")
    for what, seconds, _ in steps:
        print(f"| {what} | {seconds:.2f} |")
    print(f"report: {out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
