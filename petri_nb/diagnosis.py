"""A diagnosis at every halt: registers of every vCPU, the screen, the console's last lines, a kernel oops.

Taken once, right when the halt is reported (QEMU keeps the CPUs' state after a halt,
``-action shutdown=pause``), so nobody has to reproduce a failure to look at it. It rides
on the ``Halt`` (``halt.diagnosis``) and on the halt's timeline row (``data["diagnosis"]``,
JSON with the screen as base64 PNG), so it survives
Parquet save and ``read_timelines``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import html
import io
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from PIL import Image

from . import x86
from .oops import Oops, parse_oops

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

    def registers_frame(self) -> pd.DataFrame:
        rows = [(cpu, name, value) for cpu, regs in self.registers.items() for name, value in regs.items()]
        return pd.DataFrame(rows, columns=["cpu", "register", "value"])

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


async def collect(registers: Callable[[], Awaitable[list[Any]]], screenshot: Callable[[], Awaitable[Image.Image]],
                  console_text: str, read_memory: ReadMemory | None = None) -> Diagnosis:
    """Read registers and the screen concurrently; parse the console. With ``read_memory`` (a triple
    fault) also the instruction at the program counter and the descriptor tables. A part that
    fails is named in ``errors``."""
    start = time.perf_counter()
    errors: dict[str, str] = {}

    async def part(name: str, aw: Awaitable[Any]) -> Any:
        try:
            return await asyncio.wait_for(aw, DIAGNOSIS_TIMEOUT)
        except Exception as e:  # a diagnosis must never hide the halt it describes
            errors[name] = f"{type(e).__name__}: {e}"
            return None

    regs, image = await asyncio.gather(part("registers", registers()), part("screen", screenshot()))
    by_cpu: dict[int, dict[str, int]] = {}
    for r in regs or []:
        by_cpu.setdefault(r.cpu, {})[r.name] = r.value
    png = None
    if image is not None:
        png = await asyncio.to_thread(png_bytes, image)
    instruction, tables = "", {}
    if read_memory is not None and 0 in by_cpu:
        found = await part("tables", cpu_tables(by_cpu[0], read_memory))
        instruction, tables = found or ("", {})
    recent = console_text[-OOPS_WINDOW:]
    tail = "\n".join(recent.splitlines()[-CONSOLE_LINES:])
    return Diagnosis(by_cpu, png, tail, parse_oops(recent), errors, time.perf_counter() - start, instruction, tables)


async def cpu_tables(regs: dict[str, int], read_memory: ReadMemory) -> tuple[str, dict[str, Any]]:
    """The instruction at the program counter, and the GDT and IDT decoded (linear addresses)."""
    mode, long = x86.cpu_mode(regs), x86.long_mode(regs)
    pc = x86.program_counter(regs)
    instruction = f"{pc:#x}: {x86.decode_instruction(await read_memory(pc, 16, False), pc, mode)}"
    tables: dict[str, Any] = {}
    for name, size in (("gdt", 16 * x86.MAX_ENTRIES), ("idt", 16 * x86.MAX_ENTRIES)):
        limit = regs.get(f"{name.upper()}.limit", 0)
        data = await read_memory(regs.get(f"{name.upper()}.base", 0), min(limit + 1, size), False) if limit else b""
        tables[name] = x86.gdt_entries(data, long) if name == "gdt" else x86.idt_entries(data, mode, long)
    tables["notes"] = x86.table_notes(regs, tables["gdt"], tables["idt"])
    return instruction, tables


def from_timeline(frame: pd.DataFrame) -> list[Diagnosis]:
    """The diagnoses on a timeline (one run's, or ``read_timelines``'), oldest first."""
    rows = frame[(frame["source"] == "halt") & (frame["kind"] == "halt")]
    found = (json.loads(data).get("diagnosis") for data in rows["data"] if data)
    return [Diagnosis.from_dict(d) for d in found if d]


class Diagnoser:
    """Diagnoses each halt before it is reported, in order (one QMP round trip or two: ~10 ms)."""

    def __init__(self, registers: Callable[[], Awaitable[list[Any]]],
                 screenshot: Callable[[], Awaitable[Image.Image]], console_text: Callable[[], str],
                 read_memory: ReadMemory) -> None:
        self._registers = registers
        self._read_memory = read_memory
        self._screenshot = screenshot
        self._console_text = console_text
        self._last: asyncio.Future[None] | None = None
        self._pending = 0

    def then_report(self, halt: Any, report: Callable[[Any], None]) -> None:
        """Diagnose ``halt`` (a Halt), then ``report`` it with ``halt.diagnosis`` set."""
        previous = self._last
        self._pending += 1

        async def run() -> None:
            try:
                if previous is not None:
                    await asyncio.gather(previous, return_exceptions=True)  # halts stay in order
                deep = halt.reason.name == "TRIPLE_FAULT"  # its cause is in the tables and the instruction
                diagnosis = await collect(self._registers, self._screenshot, self._console_text(),
                                          self._read_memory if deep else None)
            except Exception as e:  # never lose the halt itself
                diagnosis = Diagnosis(errors={"diagnosis": f"{type(e).__name__}: {e}"})
            finally:
                self._pending -= 1
            # On the halt's own timeline row too: its data (JSON) carries the diagnosis.
            report(dataclasses.replace(halt, diagnosis=diagnosis, data={**halt.data, "diagnosis": diagnosis.to_dict()}))

        self._last = asyncio.ensure_future(run())

    @property
    def busy(self) -> bool:
        """A halt is being diagnosed: the QMP STOP that came with it is no pause."""
        return self._pending > 0

    async def settled(self) -> None:
        """Wait until every halt seen so far is diagnosed and reported (before a reset changes the state)."""
        if self._last is not None:
            await asyncio.gather(self._last, return_exceptions=True)
