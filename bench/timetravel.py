"""Record/replay and diagnosis costs on tmk (and a Linux boot with ``--linux``).

    .venv/bin/python -m bench.timetravel [--linux] [--seconds 10]

Prints a markdown table: recording slowdown vs plain TCG (tmk ``count`` round trips,
Linux boot to agent), seek latency near the start and at the end of a recording of
``--seconds`` of tmk ``gfx`` animation, ``reverse_step`` latency there, and the
diagnosis cost per halt.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import petri_nb

COUNTS = 200


def count_loop(record: bool) -> float:
    with petri_nb.launch("tmk", record=record) as vm:
        start = time.perf_counter()
        for _ in range(COUNTS):
            vm.console.write("count\n")
            vm.console.expect(r"count=\d+\r?\n", timeout=30)
        took = time.perf_counter() - start
        path = vm.recording
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
    return took


def linux_boot(record: bool) -> float:
    start = time.perf_counter()
    with petri_nb.launch("linux", record=record) as vm:
        vm.wait_for_agent(timeout=300)
        took = time.perf_counter() - start
        path = vm.recording
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
    return took


def timed(fn, *args):  # noqa: ANN001, ANN202
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--linux", action="store_true")
    args = parser.parse_args()
    rows: list[tuple[str, str, float, str]] = []

    plain, rec = count_loop(False), count_loop(True)
    rows += [(f"tmk {COUNTS} count round trips", "plain TCG", plain, "s"),
             (f"tmk {COUNTS} count round trips", "record=True", rec, "s"),
             (f"tmk {COUNTS} count round trips", "slowdown", rec / plain, "x")]
    if args.linux:
        plain, rec = linux_boot(False), linux_boot(True)
        rows += [("Linux boot to agent", "plain TCG", plain, "s"), ("Linux boot to agent", "record=True", rec, "s"),
                 ("Linux boot to agent", "slowdown", rec / plain, "x")]

    vm = petri_nb.launch("tmk", record=True)
    vm.console.write("gfx\n")
    time.sleep(args.seconds)  # a recording of this many seconds of animation (not a synchronisation)
    vm.console.write("text\n")
    vm.console.expect("tmk: text", timeout=30)
    vm.console.write("triplefault\n")
    halt = vm.wait_for_halt(timeout=60)
    rows.append(("diagnosis per halt (triple fault, 720x400 text screen)", "cost_s", halt.diagnosis.cost_s * 1000,
                 "ms"))
    path: Path = vm.recording
    replay, opened = timed(vm.replay)
    rows.append((f"replay of {args.seconds:g} s recording ({halt.data['icount']} instructions)", "open (paused)",
                 opened, "s"))
    near = [timed(replay.seek, n)[1] for n in (1000, 100_000, 1000)]
    rows.append(("seek near the start (icount 1000 / 100000)", "median", statistics.median(near), "s"))
    _, end = timed(replay.seek, "end")
    rows.append(("seek to the end", "once", end, "s"))
    steps = [timed(replay.reverse_step)[1] for _ in range(3)]
    rows.append(("reverse_step at the end", "median of 3", statistics.median(steps), "s"))
    replay.teardown()
    shutil.rmtree(path, ignore_errors=True)

    print("| benchmark | measure | value | unit |\n|---|---|---:|---|")
    for what, measure, value, unit in rows:
        print(f"| {what} | {measure} | {value:.3g} | {unit} |")


if __name__ == "__main__":
    main()
