"""Linux kernel oopses and panics, parsed out of console text.

The console is untrusted guest output: this only reads it and keeps plain strings.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

#: The first line of a kernel crash report, in the order the kernel prints them.
_START = re.compile(
    r"(Kernel panic - not syncing: .*|BUG: .*|Oops: .*|general protection fault.*|kernel BUG at .*"
    r"|Unable to handle kernel .*|WARNING: CPU: .*)"
)
_STAMP = re.compile(r"^\s*(?:<\d>)?\[\s*\d+\.\d+\]\s?")
_RIP = re.compile(r"\b(?:RIP|EIP|pc) ?: ?(?:[0-9a-f]{4}:)?(\S+)")
_FRAME = re.compile(r"^\s*(?:\?\s+)?([A-Za-z_.$][\w.$]*\+0x[0-9a-f]+/0x[0-9a-f]+)(?:\s+\[[\w-]+\])?\s*$")
#: Lines of console context kept before the report.
CONTEXT_LINES = 5


@dataclass(frozen=True)
class Oops:
    """One kernel crash report: what it said, where (RIP), the call trace and the lines before it."""

    message: str
    kind: str  # "panic", "oops", "bug", "warning"
    rip: str | None = None
    call_trace: tuple[str, ...] = ()
    context: tuple[str, ...] = ()
    panic: str | None = field(default=None)  # the "Kernel panic - not syncing" line that followed, if any

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Oops:
        return cls(d["message"], d["kind"], d.get("rip"), tuple(d.get("call_trace") or ()),
                   tuple(d.get("context") or ()), d.get("panic"))


def _kind(message: str) -> str:
    if message.startswith("Kernel panic"):
        return "panic"
    if message.startswith("WARNING"):
        return "warning"
    if message.startswith(("BUG", "kernel BUG")):
        return "bug"
    return "oops"


def parse_oops(text: str) -> Oops | None:
    """The first kernel crash report in ``text`` (console output), or None."""
    lines = [_STAMP.sub("", ln.rstrip("\r")) for ln in text.splitlines()]
    start = next((i for i, ln in enumerate(lines) if _START.match(ln.strip())), None)
    if start is None:
        return None
    message = lines[start].strip()
    rip = None
    trace: list[str] = []
    panic = None
    in_trace = False
    for ln in lines[start + 1:]:
        s = ln.strip()
        if s.startswith("---[ end"):
            break
        if rip is None and (m := _RIP.search(s)) and not in_trace:
            rip = m[1]
        if s.startswith("Call Trace:"):
            in_trace = True
            continue
        if in_trace:
            if s in ("<TASK>", "</TASK>", "<IRQ>", "</IRQ>"):
                if s == "</TASK>":
                    in_trace = False
                continue
            if m := _FRAME.match(s):
                trace.append(m[1])
                continue
            in_trace = False
        if panic is None and s.startswith("Kernel panic - not syncing") and _kind(message) != "panic":
            panic = s
    context = tuple(ln for ln in lines[max(0, start - CONTEXT_LINES):start] if ln.strip())
    return Oops(message, _kind(message), rip, tuple(trace), context, panic)
