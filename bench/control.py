"""Control-call overhead: pause/resume and a status query, petri_nb vs raw qemu.qmp.

Rounds alternate between the two so machine noise (other VMs on a shared box)
hits both alike; medians per call are compared.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import petri_nb
from petri_nb.loop import run_blocking

from .raw import RawQemu


def _time_sync(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


async def _time_async(fn: Callable[[], Awaitable[object]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


def run(rounds: int = 5, per_round: int = 60) -> list[dict[str, object]]:
    """Median µs per call for each way of calling, and the ratios to raw QMP."""
    vm = petri_nb.launch("tmk", name="bench-control")
    loop = asyncio.new_event_loop()
    raw = RawQemu(vm.aio.runtime.argv, vm.aio.runtime.rundir)
    samples: dict[str, list[float]] = {}

    def add(key: str, xs: list[float]) -> None:
        samples.setdefault(key, []).extend(xs)

    async def raw_pair() -> None:
        await raw.qmp.execute("stop")
        await raw.qmp.execute("cont")

    async def aio_pair() -> None:
        await vm.aio.pause()
        await vm.aio.resume()

    def sync_pair() -> None:
        vm.pause()
        vm.resume()

    async def on_loop(fn: Callable[[], Awaitable[object]], n: int) -> list[float]:
        return await _time_async(fn, n)

    try:
        loop.run_until_complete(raw.start())
        for _ in range(rounds):
            add("raw pause+resume", loop.run_until_complete(_time_async(raw_pair, per_round)))
            add("Vm pause+resume", _time_sync(sync_pair, per_round))
            add("AsyncVm pause+resume", loop.run_until_complete(_time_async(aio_pair, per_round)))
            add("AsyncVm on runtime loop pause+resume", run_blocking(on_loop(aio_pair, per_round)))
            add("raw query-status", loop.run_until_complete(
                _time_async(lambda: raw.qmp.execute("query-status"), per_round)))
            add("Vm status", _time_sync(vm.status, per_round))
            add("AsyncVm status", loop.run_until_complete(_time_async(vm.aio.status, per_round)))
            add("AsyncVm on runtime loop status", run_blocking(on_loop(vm.aio.status, per_round)))
    finally:
        loop.run_until_complete(raw.stop())
        loop.close()
        vm.teardown()

    med = {k: statistics.median(v) * 1e6 for k, v in samples.items()}
    rows = []
    for what, base in (("pause+resume", "raw pause+resume"), ("status", "raw query-status")):
        rows.append({"benchmark": f"control: {what}", "measure": "raw qemu.qmp", "value": med[base],
                     "unit": "µs/call", "ratio": 1.0, "target": None})
        for face in ("Vm", "AsyncVm", "AsyncVm on runtime loop"):
            v = med[f"{face} {what}"]
            rows.append({"benchmark": f"control: {what}", "measure": face, "value": v, "unit": "µs/call",
                         "ratio": v / med[base], "target": 1.05 if face == "Vm" else None})
        sync, aio = med[f"Vm {what}"], med[f"AsyncVm {what}"]
        rows.append({"benchmark": f"control: {what}", "measure": "Vm / AsyncVm", "value": sync - aio,
                     "unit": "µs extra", "ratio": sync / aio, "target": None})
    return rows
