"""Diagnoser: each halt is diagnosed (registers, screen, console, oops) before it is reported, in order."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

from PIL import Image

from ..model import x86
from ..model.diagnosis import CONSOLE_LINES, DIAGNOSIS_TIMEOUT, OOPS_WINDOW, Diagnosis, ReadMemory, png_bytes
from ..model.oops import parse_oops


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
