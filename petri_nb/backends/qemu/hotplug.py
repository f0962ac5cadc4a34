"""PCIe hot-plug on q35 root ports: plug a virtio-blk or virtio-net device in, unplug it.

Devices go into empty ``pcie-root-port`` slots the guest config put on the command
line. Unplugging is guest-cooperative (q35 in QEMU >= 6.1 signals it through ACPI
hot-plug; the guest ejects the device), so ``remove`` waits for QMP's
``DEVICE_DELETED`` before freeing the disk or netdev; a guest without hot-plug
support (tmk) never ejects, which ends in PetriTimeout.

Networking is deliberately isolated: the NIC's backend is a ``hubport`` on a hub
of its own, so the guest's packets reach nothing (no host network, no loopback).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qemu.qmp import EventListener

from ...errors import PetriError, PetriTimeout
from .screen import Execute

#: Registers an EventListener with the VM's current QMP session for the duration of a ``with``.
Listen = Callable[[EventListener], AbstractContextManager[None]]

KINDS = ("virtio-blk", "virtio-net")
FORMATS = ("raw", "qcow2")
#: Guests act on an unplug request in ~0.1 s; native PCIe hot-plug would take 5 s.
UNPLUG_TIMEOUT = 60.0


@dataclass
class Plugged:
    """One hot-plugged device and the backend objects to free after it is gone."""

    port: str
    kind: str
    device_id: str
    node: str | None = None
    netdev: str | None = None
    image: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


class PcieHotplug:
    """The hot-plug state of one QEMU VM."""

    def __init__(self, execute: Execute, listen: Listen, scratch: Path, argv: list[str]) -> None:
        self._execute = execute
        self._listen = listen
        self._scratch = scratch
        self._ports = root_ports(argv)
        self.plugged: dict[str, Plugged] = {}
        self._serial = 0

    def forget_all(self) -> None:
        """A new QEMU replaced the old one: it has only its command line's devices."""
        self.plugged.clear()

    def _pick_port(self, port: str | None) -> str:
        ports = self._ports
        if not ports:
            raise PetriError("this VM has no PCIe root ports to hot-plug into (the guest config added none)")
        if port is None:
            free = [p for p in ports if p not in self.plugged]
            if not free:
                raise PetriError(f"every PCIe root port is in use ({', '.join(ports)}); remove a device first")
            return free[0]
        if port not in ports:
            raise PetriError(f"no PCIe root port named {port!r}; this VM has {', '.join(ports)}")
        if port in self.plugged:
            raise PetriError(f"PCIe root port {port!r} already holds {self.plugged[port].kind} "
                             f"{self.plugged[port].device_id!r}")
        return port

    async def add(self, kind: str, port: str | None = None, *, size_mib: int = 64, image: str | Path | None = None,
                  format: str = "raw", mac: str | None = None) -> dict[str, Any]:
        if kind not in KINDS:
            raise PetriError(f"unknown PCIe device kind {kind!r}; choose one of {', '.join(KINDS)}")
        port = self._pick_port(port)
        self._serial += 1
        dev = f"hp{self._serial}"
        plug = Plugged(port, kind, dev)
        if kind == "virtio-blk":
            await self._add_disk(plug, size_mib, image, format)
        else:
            await self._add_nic(plug, mac)
        self.plugged[port] = plug
        return {"port": port, "kind": kind, "id": dev, **plug.info}

    async def _add_disk(self, plug: Plugged, size_mib: int, image: str | Path | None, fmt: str) -> None:
        if fmt not in FORMATS:
            raise PetriError(f"unknown disk format {fmt!r}; choose one of {', '.join(FORMATS)}")
        if image is None:
            if not isinstance(size_mib, int) or not 1 <= size_mib <= 65536:
                raise PetriError(f"size_mib={size_mib!r} must be an int from 1 to 65536")
            path = self._scratch / f"{plug.device_id}.{fmt}"
            await _create_image(path, fmt, size_mib)
        else:
            path = Path(image)
            if not path.is_file():
                raise PetriError(f"disk image {path} does not exist")
        plug.node, plug.image = f"{plug.device_id}-disk", str(path)
        await self._execute("blockdev-add", {
            "driver": fmt, "node-name": plug.node,
            "file": {"driver": "file", "filename": str(path)},
        })
        try:
            await self._execute("device_add", {"driver": "virtio-blk-pci", "id": plug.device_id,
                                                  "bus": plug.port, "drive": plug.node})
        except BaseException:
            await self._execute("blockdev-del", {"node-name": plug.node})
            raise
        plug.info = {"image": str(path), "format": fmt}

    async def _add_nic(self, plug: Plugged, mac: str | None) -> None:
        plug.netdev = f"{plug.device_id}-net"
        # A hub of its own (id from the device serial) with this one port: nothing to talk to.
        await self._execute("netdev_add", {"type": "hubport", "id": plug.netdev, "hubid": 1000 + self._serial})
        args = {"driver": "virtio-net-pci", "id": plug.device_id, "bus": plug.port, "netdev": plug.netdev}
        if mac is not None:
            args["mac"] = mac
        try:
            await self._execute("device_add", args)
        except BaseException:
            await self._execute("netdev_del", {"id": plug.netdev})
            raise
        plug.info = {"netdev": "hubport (isolated)"} | ({"mac": mac} if mac else {})

    async def remove(self, port: str, timeout: float = UNPLUG_TIMEOUT) -> dict[str, Any]:
        ports = self._ports
        if port not in ports:
            raise PetriError(f"no PCIe root port named {port!r}; this VM has {', '.join(ports) or 'none'}")
        plug = self.plugged.get(port)
        if plug is None:
            raise PetriError(f"PCIe root port {port!r} is empty: nothing to remove")
        listener = EventListener(("DEVICE_DELETED",))
        with self._listen(listener):
            await self._execute("device_del", {"id": plug.device_id})
            try:
                await asyncio.wait_for(_deleted(listener, plug.device_id), timeout)
            except TimeoutError:
                raise PetriTimeout(
                    f"the guest did not release {plug.kind} {plug.device_id!r} on {port} within {timeout:g} s "
                    "(unplug needs the guest's PCIe hot-plug driver)") from None
        del self.plugged[port]
        if plug.node:
            await self._execute("blockdev-del", {"node-name": plug.node})
            if plug.image and Path(plug.image).parent == self._scratch:
                os.unlink(plug.image)
        if plug.netdev:
            await self._execute("netdev_del", {"id": plug.netdev})
        return {"port": port, "kind": plug.kind, "id": plug.device_id}


def root_ports(argv: list[str]) -> list[str]:
    """Root port ids on a QEMU command line, in order."""
    ports = []
    for arg in argv:
        if arg.startswith("pcie-root-port,"):
            match = re.search(r"(?:^|,)id=([^,]+)", arg)
            if match:
                ports.append(match.group(1))
    return ports


async def _deleted(listener: EventListener, device_id: str) -> None:
    async for event in listener:
        if event.get("data", {}).get("device") == device_id:
            return


async def _create_image(path: Path, fmt: str, size_mib: int) -> None:
    if fmt == "raw":
        with open(path, "wb") as f:
            f.truncate(size_mib << 20)
        return
    try:
        proc = await asyncio.create_subprocess_exec(
            "qemu-img", "create", "-q", "-f", fmt, str(path), f"{size_mib}M",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError:
        raise PetriError("qcow2 scratch disks need qemu-img; run: sudo apt-get install qemu-utils") from None
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise PetriError(f"qemu-img create failed: {err.decode(errors='replace').strip()}")
