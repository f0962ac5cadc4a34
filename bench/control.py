"""Control-call overhead: pause/resume and a status query, petri_nb vs raw qemu.qmp and its sync client.

Baselines: raw ``qemu.qmp`` on the caller's own loop, and ``qemu.qmp.legacy.QEMUMonitorProtocol``
(the synchronous client QEMUMachine users have), on a second QMP socket of the same raw QEMU.
"hop only" is the floor the blocking ``Vm`` cannot go below: handing a no-op coroutine to the
runtime loop thread and waiting for it (two thread wake-ups), which the design pays so VM work
goes on while a notebook cell blocks. Rounds alternate between every way of calling so machine
noise (other VMs on a shared box) hits all alike; medians per call are compared.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from qemu.qmp.legacy import QEMUMonitorProtocol

import petri_nb
from petri_nb.runtime.loop import run_blocking

from .raw import RawQemu

#: The issue's targets: Vm and AsyncVm (from a user's loop) against raw qemu.qmp.
TARGETS = {"Vm": 1.17, "AsyncVm": 1.20}


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


async def _noop() -> None:
    return None


def run(rounds: int = 5, per_round: int = 60) -> list[dict[str, object]]:
    """Median µs per call for each way of calling, and the ratios to raw QMP and to the legacy client."""
    vm = petri_nb.launch("tmk", name="bench-control")
    loop = asyncio.new_event_loop()
    raw = RawQemu(vm.aio.runtime.argv, vm.aio.runtime.rundir, second_qmp=True)
    samples: dict[str, list[float]] = {}
    legacy: QEMUMonitorProtocol | None = None

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

    def legacy_pair() -> None:
        assert legacy is not None
        legacy.cmd("stop")
        legacy.cmd("cont")
        legacy.clear_events()  # it queues every event; a bench must not let them pile up

    try:
        loop.run_until_complete(raw.start())
        legacy_loop = asyncio.new_event_loop()  # the legacy client runs its own loop in this thread
        asyncio.set_event_loop(legacy_loop)
        legacy = QEMUMonitorProtocol(str(raw.second_qmp))
        legacy.connect()
        for _ in range(rounds):
            add("raw pause+resume", loop.run_until_complete(_time_async(raw_pair, per_round)))
            add("legacy pause+resume", _time_sync(legacy_pair, per_round))
            add("Vm pause+resume", _time_sync(sync_pair, per_round))
            add("AsyncVm pause+resume", loop.run_until_complete(_time_async(aio_pair, per_round)))
            add("AsyncVm on runtime loop pause+resume", run_blocking(_time_async(aio_pair, per_round)))
            add("raw status", loop.run_until_complete(
                _time_async(lambda: raw.qmp.execute("query-status"), per_round)))
            add("legacy status", _time_sync(lambda: legacy.cmd("query-status"), per_round))  # type: ignore[union-attr]
            add("Vm status", _time_sync(vm.status, per_round))
            add("AsyncVm status", loop.run_until_complete(_time_async(vm.aio.status, per_round)))
            add("AsyncVm on runtime loop status", run_blocking(_time_async(vm.aio.status, per_round)))
            add("hop only", _time_sync(lambda: run_blocking(_noop()), per_round))
    finally:
        if legacy is not None:
            legacy.close()
        loop.run_until_complete(raw.stop())
        loop.close()
        vm.teardown()

    med = {k: statistics.median(v) * 1e6 for k, v in samples.items()}
    rows: list[dict[str, object]] = []
    for what in ("pause+resume", "status"):
        base, sync_peer = med[f"raw {what}"], med[f"legacy {what}"]
        name = f"control: {what}"
        rows.append({"benchmark": name, "measure": "raw qemu.qmp", "value": base, "unit": "µs/call",
                     "ratio": 1.0, "target": None})
        rows.append({"benchmark": name, "measure": "qemu.qmp legacy sync client", "value": sync_peer,
                     "unit": "µs/call", "ratio": sync_peer / base, "target": None})
        for face in ("Vm", "AsyncVm", "AsyncVm on runtime loop"):
            v = med[f"{face} {what}"]
            rows.append({"benchmark": name, "measure": face, "value": v, "unit": "µs/call",
                         "ratio": v / base, "target": TARGETS.get(face)})
        rows.append({"benchmark": name, "measure": "Vm / legacy sync client", "value": med[f"Vm {what}"] - sync_peer,
                     "unit": "µs extra", "ratio": med[f"Vm {what}"] / sync_peer, "target": None})
    rows.append({"benchmark": "control: floor", "measure": "hop only (no-op to the runtime loop and back)",
                 "value": med["hop only"], "unit": "µs/call", "ratio": med["hop only"] / med["raw status"],
                 "target": None})
    return rows
