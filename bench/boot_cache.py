"""The boot cache: time to ready cold against cached, and a UEFI disk fleet's runs/min with and without it.

Three guests of the same Debian kernel and initramfs (``petri_nb.guests.images``, which starts
qemu-ga): a UEFI disk (OVMF, systemd-boot), a BIOS disk (SeaBIOS, syslinux) and a direct
kernel+initrd boot (qboot). For each, ``rounds`` cold launches (boot_cache off) alternate with
cached ones (the entry is stored once beforehand, not timed); time to ready is
``launch()``'s wall time. The fleet runs 20 VMs of the UEFI disk on 2 workers, each powering
its guest off (sysrq), cold and then cached, from an empty cache: the cached fleet's first run
on a worker boots and one of them stores the entry (they are counted: it is what a user gets).

Run: ``.venv/bin/python -m bench.boot_cache [rounds] [fleet_runs]``
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

import petri_nb
from petri_nb import fleet
from petri_nb.guests.images import READY, bios_disk, cache_dir, uefi_disk
from petri_nb.guests.images.initramfs import COMMAND_LINE, build_initramfs
from petri_nb.records.boot_cache import BootCache

POWER_OFF = fleet.HaltEach(commands=("echo o > /proc/sysrq-trigger",), timeout=60)


def guests() -> dict[str, dict[str, Any]]:
    kernel, initrd = build_initramfs(cache_dir())
    common = {"ready": READY, "memory_mib": 256, "agent": "qga"}
    return {
        "UEFI disk (OVMF)": {"disks": [uefi_disk()], "firmware": "uefi", **common},
        "BIOS disk (SeaBIOS)": {"disks": [bios_disk()], "firmware": "bios", **common},
        "kernel+initrd (qboot)": {"kernel": kernel, "initrd": initrd, "append": COMMAND_LINE, "firmware": "qboot",
                                  **common},
    }


def time_to_ready(options: dict[str, Any], boot_cache: bool) -> tuple[float, str | None]:
    start = time.perf_counter()
    vm = petri_nb.launch(boot_cache=boot_cache, **options)
    took = time.perf_counter() - start
    outcome = vm.run_meta.get("boot_cache")
    vm.teardown()
    return took, outcome


def ready_rows(rounds: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name, options in guests().items():
        time_to_ready(options, boot_cache=True)  # store the entry (a miss), not timed
        cold, cached = [], []
        for _ in range(rounds):
            cold.append(time_to_ready(options, boot_cache=False)[0])
            took, outcome = time_to_ready(options, boot_cache=True)
            assert outcome == "hit", outcome
            cached.append(took)
        c, h = statistics.median(cold), statistics.median(cached)
        rows.append({"benchmark": f"time to ready, {name}", "cold_s": c, "cached_s": h, "speedup": c / h,
                     "cached_max_s": max(cached)})
    return rows


def fleet_rows(runs: int) -> list[dict[str, object]]:
    options = guests()["UEFI disk (OVMF)"]
    client = fleet.local_client(2)
    rows: list[dict[str, object]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fleet.run("halt-each", runs=2, client=client, rundir=f"{tmp}/{uuid.uuid4()}", progress=False)  # warm-up
            rates = {}
            for boot_cache in (False, True):
                BootCache().clear()  # the cached fleet builds its entry itself: its first runs boot
                start = time.perf_counter()
                result = fleet.run(POWER_OFF, runs=runs, guest=None, client=client, rundir=f"{tmp}/{uuid.uuid4()}",
                                   progress=False, boot_cache=boot_cache, **options)
                wall = time.perf_counter() - start
                assert (result.outcomes["status"] == "ok").all(), result.outcomes
                assert (result.outcomes["value"] == "POWER_OFF").all(), result.outcomes
                hits = (result.timeline.groupby("run")["boot_cache"].first() == "hit").sum()
                rates[boot_cache] = runs / wall * 60
                rows.append({"benchmark": f"fleet of {runs} UEFI disk runs, 2 workers", "boot_cache": boot_cache,
                             "wall_s": wall, "runs_per_min": rates[boot_cache], "runs_from_cache": int(hits)})
            rows[-1]["speedup"] = rates[True] / rates[False]
    finally:
        client.close()
    return rows


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    os.environ.setdefault("PETRI_NB_BOOT_CACHE", tempfile.mkdtemp(prefix="petri_nb-bench-cache-"))
    print(f"boot cache in {os.environ['PETRI_NB_BOOT_CACHE']}; load average {os.getloadavg()[0]:.2f}")
    for row in ready_rows(rounds):
        print(f"{row['benchmark']:36s} cold {row['cold_s']:7.3f} s  cached {row['cached_s']:6.3f} s "
              f"(max {row['cached_max_s']:.3f})  {row['speedup']:5.1f}x")
    if runs:
        for row in fleet_rows(runs):
            print(f"{row['benchmark']}: boot_cache={row['boot_cache']!s:5s} {row['wall_s']:6.1f} s "
                  f"{row['runs_per_min']:6.1f} runs/min, {row['runs_from_cache']} from the cache"
                  + (f"  {row['speedup']:.1f}x" if "speedup" in row else ""))


if __name__ == "__main__":
    main()
