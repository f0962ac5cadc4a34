"""InspectNode: a VM's state as a tree (as petri's inspect), flattened and diffed as DataFrames.

A backend builds the tree (QEMU: the QOM tree under /machine plus query-* results);
analysis happens on the flat frame, one row per leaf, so two snapshots diff with
plain pandas.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from typing import Any

import pandas as pd

from ..errors import InspectPathError, PetriError

FRAME_COLUMNS = ("path", "name", "value", "type")


def _split(path: str) -> list[str]:
    return [p for p in path.strip("/").split("/") if p]


def value_text(value: Any) -> str | None:
    """A leaf value as text for the frame: strings verbatim, everything else as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, separators=(",", ":"))


class InspectNode:
    """One node: a leaf with a ``value`` and ``type``, or a directory of ``children``."""

    __slots__ = ("name", "path", "value", "type", "children")

    def __init__(self, name: str = "", value: Any = None, type: str = "", path: str | None = None) -> None:
        self.name = name
        self.path = name if path is None else path
        self.value = value
        self.type = type
        self.children: dict[str, InspectNode] = {}

    def child(self, name: str, value: Any = None, type: str = "") -> InspectNode:
        """Add (or replace) the child ``name`` and return it."""
        node = InspectNode(name, value, type, f"{self.path}/{name}" if self.path else name)
        self.children[name] = node
        return node

    def attach(self, name: str, node: InspectNode) -> InspectNode:
        """Graft a separately built tree as child ``name``, rewriting its paths."""
        new = self.child(name, node.value, node.type)
        for cname, c in node.children.items():
            new.attach(cname, c)
        return new

    @classmethod
    def from_json(cls, name: str, data: Any, type: str = "") -> InspectNode:
        """A tree from a JSON value (a QMP reply): dicts and lists become directories."""
        root = cls(name)
        root._fill(data, type)
        return root

    def _fill(self, data: Any, type: str = "") -> None:
        if isinstance(data, (dict, list)) and not data:  # an empty container is a leaf worth showing
            self.value, self.type = data, type or type_name(data)
        elif isinstance(data, dict):
            for k, v in data.items():
                self.child(str(k))._fill(v)
        elif isinstance(data, list):
            for i, v in enumerate(data):
                self.child(str(i))._fill(v)
        else:
            self.value = data
            self.type = type or ("null" if data is None else type_name(data))

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def __getitem__(self, path: str) -> InspectNode:
        node = self
        for part in _split(path):
            try:
                node = node.children[part]
            except KeyError:
                choices = ", ".join(list(node.children)[:20]) or "none: it is a leaf"
                raise InspectPathError(f"no {part!r} under {node.path or '/'!r} (children: {choices})") from None
        return node

    def __contains__(self, path: str) -> bool:
        try:
            self[path]
        except InspectPathError:
            return False
        return True

    def __iter__(self) -> Iterator[InspectNode]:
        return iter(self.children.values())

    def __len__(self) -> int:
        return len(self.children)

    def leaves(self) -> Iterator[InspectNode]:
        stack = [self]
        while stack:
            node = stack.pop()
            if node.is_leaf:
                yield node
            else:
                stack.extend(reversed(node.children.values()))

    def to_frame(self) -> pd.DataFrame:
        """One row per leaf: path (from the snapshot root), name, value (as text), type."""
        rows = [(n.path, n.name, value_text(n.value), n.type) for n in self.leaves()]
        cols = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
        return pd.DataFrame({c: pd.array(list(v), dtype="string") for c, v in zip(FRAME_COLUMNS, cols, strict=True)})

    def __repr__(self) -> str:
        if self.is_leaf:
            return f"<InspectNode {self.path or '/'} = {self.value!r} ({self.type})>"
        return f"<InspectNode {self.path or '/'} ({len(self.children)} children)>"

    def _repr_html_(self) -> str:
        """Collapsible tree; names and values come from the guest/QEMU, so all escaped."""
        return f"<div class='petri-inspect'>{self._html(open_levels=1)}</div>"

    def _html(self, open_levels: int) -> str:
        esc = html.escape
        if self.is_leaf:
            return f"<div><b>{esc(self.name)}</b>: {esc(str(value_text(self.value)))} <i>{esc(self.type)}</i></div>"
        inner = "".join(c._html(open_levels - 1) for c in self.children.values())
        opened = " open" if open_levels > 0 else ""
        return (f"<details{opened}><summary>{esc(self.name or '/')} ({len(self.children)})</summary>"
                f"<div style='margin-left:1em'>{inner}</div></details>")


def type_name(value: Any) -> str:
    return {bool: "bool", int: "int", float: "number", str: "str"}.get(type(value), type(value).__name__)


def _as_frame(x: InspectNode | pd.DataFrame) -> pd.DataFrame:
    if isinstance(x, InspectNode):
        return x.to_frame()
    if isinstance(x, pd.DataFrame) and {"path", "value"} <= set(x.columns):
        return x
    raise PetriError(f"inspect_diff() takes InspectNode trees or their to_frame() frames, not {type(x).__name__}")


def inspect_diff(a: InspectNode | pd.DataFrame, b: InspectNode | pd.DataFrame) -> pd.DataFrame:
    """What changed from snapshot ``a`` to ``b``: one row per path that was added,
    removed or has a different value (columns path, change, before, after, type)."""
    fa, fb = _as_frame(a), _as_frame(b)
    merged = fa[["path", "value", "type"]].merge(
        fb[["path", "value", "type"]], on="path", how="outer", suffixes=("_a", "_b"), indicator=True
    )
    change = merged["_merge"].map({"left_only": "removed", "right_only": "added", "both": "changed"}).astype(str)
    before, after = merged["value_a"].astype("string"), merged["value_b"].astype("string")
    differs = (change != "changed") | (before.fillna("\0null") != after.fillna("\0null"))
    out = pd.DataFrame({
        "path": merged["path"].astype("string"),
        "change": change,
        "before": before,
        "after": after,
        "type": merged["type_b"].fillna(merged["type_a"]).astype("string"),
    })[differs.to_numpy()]
    return out.sort_values("path", kind="stable").reset_index(drop=True)
