"""Launch-to-ready: ``petri_nb.launch("tmk")`` vs the same command line started by hand, per firmware.

Both end when the ``tmk: ready`` banner has been read from the console. Runs
alternate between the two ways and the two firmwares (qboot, tmk's default, and
SeaBIOS), and the median of each is compared.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import petri_nb

from .raw import RawQemu

FIRMWARES = ("qboot", "bios")


def run(repeats: int = 7) -> list[dict[str, object]]:
    ours: dict[str, list[float]] = {fw: [] for fw in FIRMWARES}
    raw_times: dict[str, list[float]] = {fw: [] for fw in FIRMWARES}
    loop = asyncio.new_event_loop()
    try:
        for i in range(repeats):
            for fw in FIRMWARES:
                t0 = time.perf_counter()
                vm = petri_nb.launch("tmk", name=f"bench-launch-{fw}-{i}", firmware=fw)
                ours[fw].append(time.perf_counter() - t0)
                argv, rundir = vm.aio.runtime.argv, vm.aio.runtime.rundir
                raw = RawQemu(argv, rundir)
                vm.teardown()
                try:
                    raw_times[fw].append(loop.run_until_complete(raw.start()))
                finally:
                    loop.run_until_complete(raw.stop())
    finally:
        loop.close()
    rows: list[dict[str, object]] = []
    med = {fw: statistics.median(ours[fw]) * 1e3 for fw in FIRMWARES}
    for fw in FIRMWARES:
        name = f"launch-to-ready (tmk, {'SeaBIOS' if fw == 'bios' else fw})"
        base = statistics.median(raw_times[fw]) * 1e3
        rows.append({"benchmark": name, "measure": "raw QEMU, same argv", "value": base, "unit": "ms",
                     "ratio": 1.0, "target": None})
        rows.append({"benchmark": name, "measure": "petri_nb.launch", "value": med[fw], "unit": "ms",
                     "ratio": med[fw] / base, "target": 1.10})
    rows.append({"benchmark": "launch-to-ready (tmk)", "measure": "petri_nb.launch, qboot / SeaBIOS",
                 "value": med["qboot"], "unit": "ms", "ratio": med["qboot"] / med["bios"], "target": 0.6})
    return rows
