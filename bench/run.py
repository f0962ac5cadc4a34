"""Run every benchmark once and print one table of ratios to raw QEMU.

    .venv/bin/python -m bench.run            # print the table
    .venv/bin/python -m bench.run --record   # also prepend it to bench/RESULTS.md

Ratios are ours / raw for times and ours / raw for rates (so < 1 means slower for
rates). Nothing here is asserted: CI machines are too noisy for that.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # allow `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

from bench import bench_fleet, control, firmware_linux, launch, soak  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "# Benchmark results\n\nNewest run first; each run keeps its machine and date so regressions show.\n"


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor() or "?")
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"- CPU: {cpu}, nproc {os.cpu_count()}, load average at start {load}\n"
            f"- {qemu[0] if qemu else 'QEMU ?'}, accel TCG\n"
            f"- Python {platform.python_version()}, {platform.platform()}")


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| benchmark | measure | value | unit | ratio | target |", "|---|---|---:|---|---:|---:|"]
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        target = "" if r["target"] is None else f"<= {r['target']}"
        if r["target"] is not None and r["ratio"] is not None:
            target += " ok" if r["ratio"] <= r["target"] else " MISSED"
        for key, op, holds in (("at_least", ">=", lambda v, t: v >= t), ("at_most", "<=", lambda v, t: v <= t)):
            if r.get(key) is not None:  # a target on the value itself, not the ratio
                target = f"{op} {r[key]} {r['unit']} " + ("ok" if holds(r["value"], r[key]) else "MISSED")
        lines.append(f"| {r['benchmark']} | {r['measure']} | {r['value']:.1f} | {r['unit']} | {ratio} | {target} |")
    return "\n".join(lines)


def record(text: str) -> None:
    old = RESULTS.read_text() if RESULTS.exists() else HEADER
    body = old[len(HEADER):] if old.startswith(HEADER) else old
    RESULTS.write_text(HEADER + "\n" + text + "\n" + body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="prepend this run to bench/RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--linux", action="store_true", help="also the Linux preset under qboot vs SeaBIOS (minutes)")
    args = parser.parse_args(argv)
    about = machine()
    q = args.quick
    rows = []
    rows += control.run(rounds=2 if q else 5, per_round=30 if q else 100)
    rows += launch.run(repeats=3 if q else 9)
    rows += soak.run_firmware_soak(n=20 if q else 200)
    rows += soak.run_soak(n=10 if q else 60)
    rows += soak.run_scaling(resets=3 if q else 10)
    rows += bench_fleet.by_firmware(runs=6 if q else 30, rounds=1 if q else 2)
    if args.linux:
        rows += firmware_linux.run(rounds=1 if q else 2)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = f"## Run {now}\n\n{about}\n\n{table(rows)}\n"
    print(text)
    if args.record:
        record(text)


if __name__ == "__main__":
    main()
