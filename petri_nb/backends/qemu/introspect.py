"""QMP queries -> InspectNode: the QOM tree under /machine plus run state, CPUs, memory,
block, PCI and (under KVM) KVM statistics.

QEMU 7.2 has no bulk QOM read (``qom-list-get`` is 10.1+), so every object costs
one ``qom-list`` and every property one ``qom-get``. The walk sends them
concurrently (the QMP client pipelines commands), bounded by a semaphore, and a
path filter walks only the subtree asked for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ...errors import PetriError, QemuRefused
from ...model.inspect_node import InspectNode

#: QMP commands in flight at once during a walk.
CONCURRENCY = 64


class QmpInspector:
    """One inspect() call: builds the tree and counts its QMP round trips."""

    def __init__(self, execute: Callable[[str, dict[str, Any] | None], Awaitable[Any]], accel: str) -> None:
        self.execute = execute
        self.accel = accel
        self.round_trips = 0
        self._sem = asyncio.Semaphore(CONCURRENCY)
        self.sections: dict[str, Callable[[], Awaitable[Any]]] = {
            "status": lambda: self._query("query-status"),
            "cpus": lambda: self._query("query-cpus-fast"),
            "memory": lambda: self._query("query-memory-size-summary"),
            "block": lambda: self._query("query-block"),
            "pci": lambda: self._query("query-pci"),
        }
        if accel == "kvm":
            self.sections["kvm"] = self._kvm_stats

    async def _execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        async with self._sem:
            self.round_trips += 1
            return await self.execute(cmd, args)

    async def _query(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        try:
            return await self._execute(cmd, args)
        except QemuRefused as e:
            return {"error": e}

    async def _kvm_stats(self) -> Any:
        vm, vcpu = await asyncio.gather(
            self._query("query-stats", {"target": "vm"}), self._query("query-stats", {"target": "vcpu"})
        )
        return {"vm": _stats_by_name(vm, per_object=False), "vcpu": _stats_by_name(vcpu, per_object=True)}

    async def inspect(self, path: str | None = None) -> tuple[InspectNode, dict[str, Any]]:
        """The tree from the root; with ``path`` only the branch down to that node is filled."""
        start = time.monotonic()
        parts = [p for p in (path or "").strip("/").split("/") if p]
        root = InspectNode("")
        top = parts[0] if parts else None
        known = [*self.sections, "machine"]
        if top is not None and top not in known:
            raise PetriError(f"inspect path {path!r}: no top-level node {top!r}; choose one of {', '.join(known)}")
        wanted = [top] if top else known
        trees = await asyncio.gather(*(self._section(name, parts[1:] if top else []) for name in wanted))
        for name, tree in zip(wanted, trees, strict=True):
            root.attach(name, tree)
        if parts:
            root[path or ""]  # a clear error if the rest of the path does not exist
            _prune(root, parts)
        stats = {"duration_s": time.monotonic() - start, "round_trips": self.round_trips}
        return root, stats

    async def _section(self, name: str, rest: list[str]) -> InspectNode:
        if name == "machine":
            qom_path = "/machine" + "".join("/" + p for p in rest)
            sub = await self._qom_object(qom_path.rsplit("/", 1)[-1], qom_path)
            node = InspectNode("machine")
            cursor = node
            for p in rest[:-1]:
                cursor = cursor.child(p)
            if rest:
                cursor.attach(rest[-1], sub)
                return node
            return sub
        return InspectNode.from_json(name, await self.sections[name]())

    async def _qom_object(self, name: str, qom_path: str) -> InspectNode:
        try:
            props = await self._execute("qom-list", {"path": qom_path})
        except QemuRefused as e:
            raise PetriError(f"inspect: QEMU has no object at {qom_path}: {e}") from None
        node = InspectNode(name)
        children = [p for p in props if p["type"].startswith("child<")]
        values = [p for p in props if not p["type"].startswith("child<")]
        subtrees, results = await asyncio.gather(
            asyncio.gather(*(self._qom_object(p["name"], f"{qom_path}/{p['name']}") for p in children)),
            asyncio.gather(*(self._qom_get(qom_path, p["name"]) for p in values)),
        )
        for prop, value in zip(values, results, strict=True):
            node.child(prop["name"], value, prop["type"])
        for prop, sub in zip(children, subtrees, strict=True):
            node.attach(prop["name"], sub)
        return node

    async def _qom_get(self, qom_path: str, prop: str) -> Any:
        try:
            return await self._execute("qom-get", {"path": qom_path, "property": prop})
        except QemuRefused as e:  # some properties cannot be read (write-only, unset links)
            return f"<error: {e}>"


def _prune(root: InspectNode, parts: list[str]) -> None:
    """Keep only the branch leading to ``parts`` (the whole subtree below it)."""
    node = root
    for part in parts:
        keep = node.children[part]
        node.children = {part: keep}
        node = keep


def _stats_by_name(reply: Any, per_object: bool) -> Any:
    """query-stats gives lists of {name, value} per provider and object; key them by name
    (vcpus by their position) so paths read ``kvm/vcpu/0/exits`` rather than ``.../stats/7/value``."""
    if not isinstance(reply, list):
        return reply  # an error dict
    results = [{s["name"]: s.get("value") for s in r.get("stats", [])} for r in reply]
    return dict(enumerate(results)) if per_object or len(results) != 1 else results[0]
