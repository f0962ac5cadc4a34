"""Save/restore and checkpoint/rewind cost for tmk: size, median and max times.

Run: .venv/bin/python -m bench.bench_state [rounds]
"""

from __future__ import annotations

import statistics
import sys
import time

import petri_nb


def main(rounds: int = 20) -> dict[str, float]:
    with petri_nb.launch("tmk") as vm:
        saves, restores, cps, rewinds, sizes = [], [], [], [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            data = vm.save_state()
            saves.append(time.perf_counter() - t0)
            sizes.append(len(data))
            t0 = time.perf_counter()
            vm.restore_state(data)
            restores.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            vm.checkpoint("c")
            cps.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            vm.rewind("c")
            rewinds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        vm.verify_save_restore()
        verify = time.perf_counter() - t0
    out = {"bytes": statistics.median(sizes)}
    for name, xs in (("save_state", saves), ("restore_state", restores), ("checkpoint", cps), ("rewind", rewinds)):
        out[f"{name}_median_ms"] = statistics.median(xs) * 1000
        out[f"{name}_max_ms"] = max(xs) * 1000
    out["verify_save_restore_ms"] = verify * 1000
    return out


if __name__ == "__main__":
    for key, value in main(int(sys.argv[1]) if len(sys.argv) > 1 else 20).items():
        print(f"{key:28s} {value:12.1f}")
