"""Launch-to-ready: ``petri_nb.launch("tmk")`` vs the same command line started by hand.

Both end when the ``tmk: ready`` banner has been read from the console. Runs
alternate, and the median of each is compared.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import petri_nb

from .raw import RawQemu


def run(repeats: int = 7) -> list[dict[str, object]]:
    ours: list[float] = []
    raw_times: list[float] = []
    loop = asyncio.new_event_loop()
    try:
        for i in range(repeats):
            t0 = time.perf_counter()
            vm = petri_nb.launch("tmk", name=f"bench-launch-{i}")
            ours.append(time.perf_counter() - t0)
            argv, rundir = vm.aio.runtime.argv, vm.aio.runtime.rundir
            raw = RawQemu(argv, rundir)
            vm.teardown()
            try:
                raw_times.append(loop.run_until_complete(raw.start()))
            finally:
                loop.run_until_complete(raw.stop())
    finally:
        loop.close()
    a, b = statistics.median(ours) * 1e3, statistics.median(raw_times) * 1e3
    return [
        {"benchmark": "launch-to-ready (tmk)", "measure": "raw QEMU, same argv", "value": b, "unit": "ms",
         "ratio": 1.0, "target": None},
        {"benchmark": "launch-to-ready (tmk)", "measure": "petri_nb.launch", "value": a, "unit": "ms",
         "ratio": a / b, "target": 1.10},
    ]
