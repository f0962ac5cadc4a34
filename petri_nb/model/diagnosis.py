"""A diagnosis at every halt: registers of every vCPU, the screen, the console's last lines, a kernel oops.

Taken once, right when the halt is reported (QEMU keeps the CPUs' state after a halt,
``-action shutdown=pause``), so nobody has to reproduce a failure to look at it. It rides
on the ``Halt`` (``halt.diagnosis``) and on the halt's timeline row (``data["diagnosis"]``,
JSON with the screen as base64 PNG), so it survives
Parquet save and ``read_timelines``.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from PIL import Image

from .oops import Oops

#: Reads guest memory: (address, size, physical) -> bytes.
ReadMemory = Callable[[int, int, bool], Awaitable[bytes]]
#: Console lines kept in a diagnosis.
CONSOLE_LINES = 40
#: Bound on collecting one diagnosis (each part is one QMP round trip).
DIAGNOSIS_TIMEOUT = 5.0
#: Registers shown in the rich display (all of them are kept).
MAIN_REGISTERS = ("RIP", "EIP", "RSP", "ESP", "EFL", "CR0", "CR2", "CR3", "CR4", "IDT.base", "IDT.limit",
                  "GDT.base", "GDT.limit")
#: Console text searched for an oops (the newest part).
OOPS_WINDOW = 64 * 1024


@dataclass(frozen=True)
class Diagnosis:
    """What the VM looked like when it halted."""

    registers: dict[int, dict[str, int]] = field(default_factory=dict, repr=False)
    screen_png: bytes | None = field(default=None, repr=False)
    console_tail: str = field(default="", repr=False)
    oops: Oops | None = None
    #: Parts that could not be read, and why (e.g. a QEMU that had already exited).
    errors: dict[str, str] = field(default_factory=dict)
    cost_s: float = 0.0
    #: On a triple fault: the instruction at vCPU 0's program counter (``"0x100729: int3"``) and
    #: the decoded GDT and IDT with notes on what in them explains the fault (petri_nb.x86).
    instruction: str = ""
    tables: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def screen(self) -> Image.Image | None:
        return None if self.screen_png is None else Image.open(io.BytesIO(self.screen_png))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (register values as hex text: 128-bit XMM values do not fit a JSON number everywhere)."""
        return {
            "registers": {str(cpu): {n: f"{v:x}" for n, v in regs.items()} for cpu, regs in self.registers.items()},
            "screen_png": None if self.screen_png is None else base64.b64encode(self.screen_png).decode(),
            "console_tail": self.console_tail,
            "oops": None if self.oops is None else self.oops.to_dict(),
            "errors": self.errors,
            "cost_s": self.cost_s,
            "instruction": self.instruction,
            "tables": self.tables,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Diagnosis:
        png = d.get("screen_png")
        return cls(
            {int(cpu): {n: int(v, 16) for n, v in regs.items()} for cpu, regs in (d.get("registers") or {}).items()},
            None if png is None else base64.b64decode(png),
            d.get("console_tail") or "",
            None if d.get("oops") is None else Oops.from_dict(d["oops"]),
            dict(d.get("errors") or {}),
            float(d.get("cost_s") or 0.0),
            d.get("instruction") or "",
            dict(d.get("tables") or {}),
        )

    def _repr_html_(self) -> str:
        """The screen, the main registers, the oops and the console tail; guest text is escaped."""
        parts = []
        if self.screen_png is not None:
            parts.append(f'<img alt="screen" src="data:image/png;base64,{base64.b64encode(self.screen_png).decode()}">')
        for cpu, regs in sorted(self.registers.items()):
            shown = " ".join(f"{n}={regs[n]:#x}" for n in MAIN_REGISTERS if n in regs)
            parts.append(f"<div><b>vCPU {cpu}</b> <code>{html.escape(shown)}</code></div>")
        if self.instruction:
            parts.append(f"<div><b>at the program counter</b> <code>{html.escape(self.instruction)}</code></div>")
        parts += [f"<div>{html.escape(note)}</div>" for note in self.tables.get("notes", ())]
        for name in ("gdt", "idt"):
            if self.tables.get(name):
                parts.append(f"<details><summary>{name.upper()}</summary>{table_html(self.tables[name])}</details>")
        if self.oops is not None:
            trace = "\n".join(self.oops.call_trace)
            parts.append(f"<div><b>{html.escape(self.oops.message)}</b> RIP {html.escape(self.oops.rip or '?')}"
                         f"<pre>{html.escape(trace)}</pre></div>")
        parts.append(f"<pre>{html.escape(self.console_tail)}</pre>")
        if self.errors:
            unreadable = ", ".join(f"{k}: {v}" for k, v in self.errors.items())
            parts.append(f"<div>unreadable: {html.escape(unreadable)}</div>")
        return "\n".join(parts)

    def summary(self) -> str:
        what = f"{len(self.registers)} vCPU(s)"
        if self.oops is not None:
            what += f", {self.oops.kind}: {self.oops.message}"
        return what + (f", unreadable: {', '.join(self.errors)}" if self.errors else "")


def table_html(rows: list[dict[str, Any]]) -> str:
    """A decoded descriptor table as an HTML table (numbers in hex)."""
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(hex(v) if type(v) is int else str(v))}</td>"
                                    for v in row.values()) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=6)  # ~2 KB for a text screen
    return out.getvalue()


def from_timeline(frame: pd.DataFrame) -> list[Diagnosis]:
    """The diagnoses on a timeline (one run's, or ``read_timelines``'), oldest first."""
    rows = frame[(frame["source"] == "halt") & (frame["kind"] == "halt")]
    found = (json.loads(data).get("diagnosis") for data in rows["data"] if data)
    return [Diagnosis.from_dict(d) for d in found if d]
