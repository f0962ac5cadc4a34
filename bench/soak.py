"""Reset soak and scaling: resets per second back to the ready banner.

One "reset" is the whole cycle a test pays for: host reset, firmware reboot,
guest ready banner read from the console. Raw QMP does the same with
``system_reset`` and plain resets (``set-action reboot=reset``).
"""

from __future__ import annotations

import asyncio
import statistics
import time

import psutil

import petri_nb
from petri_nb.guests.tmk import READY

from .raw import RawQemu


def _vm_soak(vm: petri_nb.Vm, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        vm.reset()
        vm.console.expect(READY, timeout=30)
    return time.perf_counter() - t0


def run_firmware_soak(n: int = 200, rounds: int = 5) -> list[dict[str, object]]:
    """Resets/s of tmk under qboot and under SeaBIOS, one VM each, rounds alternating between them."""
    vms = {fw: petri_nb.launch("tmk", name=f"bench-soak-{fw}", firmware=fw) for fw in ("qboot", "bios")}
    per_round = max(1, n // rounds)
    spent = dict.fromkeys(vms, 0.0)
    try:
        for _ in range(rounds):
            for fw, vm in vms.items():
                spent[fw] += _vm_soak(vm, per_round)
    finally:
        for vm in vms.values():
            vm.teardown()
    total = per_round * rounds
    rate = {fw: total / seconds for fw, seconds in spent.items()}
    name = f"reset soak by firmware ({total} resets to banner, each)"
    return [
        {"benchmark": name, "measure": "Vm, SeaBIOS", "value": rate["bios"], "unit": "resets/s", "ratio": 1.0,
         "target": None, "at_most": 10},
        {"benchmark": name, "measure": "Vm, qboot", "value": rate["qboot"], "unit": "resets/s",
         "ratio": rate["qboot"] / rate["bios"], "target": None, "at_least": 60},
    ]


def run_soak(n: int = 60, rounds: int = 5) -> list[dict[str, object]]:
    """Rounds alternate raw / timeline on / timeline off, so load from other work hits all three."""
    vm = petri_nb.launch("tmk", name="bench-soak")
    loop = asyncio.new_event_loop()
    raw = RawQemu(vm.aio.runtime.argv, vm.aio.runtime.rundir)
    per_round = max(1, n // rounds)
    spent = {"raw": 0.0, "on": 0.0, "off": 0.0}

    async def raw_soak() -> float:
        t0 = time.perf_counter()
        for _ in range(per_round):
            await raw.reset_to_banner()
        return time.perf_counter() - t0

    try:
        loop.run_until_complete(raw.start())
        loop.run_until_complete(raw.allow_resets())
        timeline = vm.aio._timeline
        for _ in range(rounds):
            spent["raw"] += loop.run_until_complete(raw_soak())
            spent["on"] += _vm_soak(vm, per_round)
            timeline.record = lambda *a, **k: None  # type: ignore[method-assign]  # measure recording's cost
            try:
                spent["off"] += _vm_soak(vm, per_round)
            finally:
                del timeline.record
    finally:
        loop.run_until_complete(raw.stop())
        loop.close()
        vm.teardown()
    total = per_round * rounds
    rate = {k: total / v for k, v in spent.items()}
    name = f"reset soak ({total} resets to banner, each way)"
    return [
        {"benchmark": name, "measure": "raw qemu.qmp", "value": rate["raw"], "unit": "resets/s",
         "ratio": 1.0, "target": None},
        {"benchmark": name, "measure": "Vm, timeline on", "value": rate["on"], "unit": "resets/s",
         "ratio": rate["on"] / rate["raw"], "target": None},
        {"benchmark": name, "measure": "Vm, timeline off", "value": rate["off"], "unit": "resets/s",
         "ratio": rate["off"] / rate["raw"], "target": None},
    ]


async def _scaled(count: int, resets: int) -> tuple[float, float]:
    vms = await asyncio.gather(*(petri_nb.launch_async("tmk", name=f"bench-scale-{count}-{i}")
                                 for i in range(count)))
    try:
        async def soak(vm: petri_nb.AsyncVm) -> None:
            for _ in range(resets):
                await vm.reset()
                await vm.console.expect(READY, timeout=60)

        t0 = time.perf_counter()
        await asyncio.gather(*(soak(vm) for vm in vms))
        wall = time.perf_counter() - t0
        rss = statistics.mean(psutil.Process(vm.runtime.proc.pid).memory_info().rss for vm in vms)
        return wall, rss / 2**20
    finally:
        await asyncio.gather(*(vm.teardown() for vm in vms), return_exceptions=True)


def run_scaling(counts: tuple[int, ...] = (1, 2, 4, 8), resets: int = 10) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    base = None
    for count in counts:
        wall, rss = asyncio.run(_scaled(count, resets))
        base = base or wall
        name = f"scaling: {count} VM(s) x {resets} resets"
        rows.append({"benchmark": name, "measure": "wall time", "value": wall, "unit": "s",
                     "ratio": wall / base, "target": None})
        rows.append({"benchmark": name, "measure": "QEMU RSS per VM", "value": rss, "unit": "MiB",
                     "ratio": None, "target": None})
    return rows
