"""The Linux preset under qboot vs SeaBIOS: boot to agent, PCIe hot-plug, ACPI power-off.

This is the measurement the Linux preset's firmware is chosen by. Each round boots
the guest under each firmware in turn (alternating, so load from other work on the
machine hits both), then times:
- boot-to-agent: launch until the guest agent answers;
- hot-plug: ``add_pcie_device("virtio-blk")`` until the guest lists the new disk;
- ACPI power-off: ``send_shutdown("poweroff")`` until the POWER_OFF halt.

Run: ``.venv/bin/python -m bench.firmware_linux [rounds]``
"""

from __future__ import annotations

import statistics
import sys
import time

import petri_nb
from petri_nb.guests.linux import linux

FIRMWARES = ("bios", "qboot")


def _wait_for(predicate: object, timeout: float) -> None:
    """Poll the guest through the agent until ``predicate()`` holds (each poll is a round trip)."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the guest did not see the hot-plugged disk")


def one_boot(firmware: str) -> dict[str, float]:
    """Seconds for each step of one boot under ``firmware``."""
    t0 = time.perf_counter()
    vm = petri_nb.launch(linux(firmware=firmware), name=f"bench-linux-{firmware}")
    try:
        agent = vm.wait_for_agent(timeout=120)
        boot = time.perf_counter() - t0
        t0 = time.perf_counter()
        vm.add_pcie_device("virtio-blk", size_mib=8)
        _wait_for(lambda: "vda" in agent.run("ls /sys/block").stdout.decode(), timeout=30)
        plug = time.perf_counter() - t0
        t0 = time.perf_counter()
        vm.send_shutdown("poweroff")
        halt = vm.wait_for_halt(timeout=60)
        off = time.perf_counter() - t0
        if halt.reason is not petri_nb.HaltReason.POWER_OFF:
            raise RuntimeError(f"{firmware}: power button gave {halt}")
    finally:
        vm.teardown()
    return {"boot-to-agent": boot, "hot-plug to guest": plug, "ACPI power-off": off}


def run(rounds: int = 2) -> list[dict[str, object]]:
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for firmware in FIRMWARES:
            for step, seconds in one_boot(firmware).items():
                samples.setdefault((step, firmware), []).append(seconds)
    rows: list[dict[str, object]] = []
    for step in ("boot-to-agent", "hot-plug to guest", "ACPI power-off"):
        base = statistics.median(samples[(step, "bios")])
        for firmware in FIRMWARES:
            value = statistics.median(samples[(step, firmware)])
            rows.append({"benchmark": f"linux {step} ({rounds} boots each)", "measure": firmware,
                         "value": value * 1000, "unit": "ms", "ratio": value / base, "target": None})
    return rows


if __name__ == "__main__":
    for row in run(int(sys.argv[1]) if len(sys.argv) > 1 else 2):
        print(f"{row['benchmark']:40s} {row['measure']:6s} {row['value']:10.1f} ms  {row['ratio']:.3f}")
