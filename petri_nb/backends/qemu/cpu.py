"""CPU registers and guest memory through QMP, without a debugger attached.

Registers come from HMP ``info registers -a`` (via ``human-monitor-command``):
one call covers every vCPU, works on paused, running and halted-but-kept VMs
(QEMU keeps CPU state after ``-action shutdown=pause``) and needs no gdbstub.
The text format is stable across QEMU releases and parsed here. Memory comes
from ``memsave`` (guest-virtual, through the CPU's current page tables) and
``pmemsave`` (guest-physical), written to a file in the private run directory.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ...errors import PetriError, QemuRefused
from .screen import Execute

#: Refuse reads larger than this: memsave goes through a file, and notebooks want small views.
MAX_READ = 64 << 20

_CPU = re.compile(r"^CPU#(\d+)")
_SEGMENT = re.compile(r"^(ES|CS|SS|DS|FS|GS|LDT|TR) ?=([0-9a-f]{4}) ([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+)\s*(.*)$")
_TABLE = re.compile(r"^(GDT|IDT)=\s+([0-9a-f]+) ([0-9a-f]+)")
_PAIR = re.compile(r"\b([A-Z][A-Z0-9]*)=([0-9a-fA-F]+)(?: ([0-9a-fA-F]{4,16})(?= |$))?")
_FILE_IDS = itertools.count(1)


@dataclass(frozen=True)
class Register:
    """One register of one vCPU as QEMU printed it; ``text`` is QEMU's own decoding, if any."""

    cpu: int
    name: str
    value: int
    text: str = ""


def parse_info_registers(out: str) -> list[Register]:
    """Parse ``info registers [-a]`` output (32- and 64-bit x86 layouts)."""
    regs: list[Register] = []
    cpu = 0
    for line in out.splitlines():
        line = line.rstrip()
        if m := _CPU.match(line):
            cpu = int(m[1])
            continue
        if m := _SEGMENT.match(line):
            name = m[1]
            regs += [Register(cpu, name, int(m[2], 16), m[6].strip()),
                     Register(cpu, f"{name}.base", int(m[3], 16)),
                     Register(cpu, f"{name}.limit", int(m[4], 16)),
                     Register(cpu, f"{name}.flags", int(m[5], 16), m[6].strip())]
            continue
        if m := _TABLE.match(line):
            regs += [Register(cpu, f"{m[1]}.base", int(m[2], 16)), Register(cpu, f"{m[1]}.limit", int(m[3], 16))]
            continue
        flags = re.search(r"\[([-A-Z]{7})\]", line)
        for m in _PAIR.finditer(line):
            name, first, second = m[1], m[2], m[3]
            if name.startswith("XMM") and second:
                regs.append(Register(cpu, name, int(first, 16) << 64 | int(second, 16)))
            elif name.startswith("FPR") and second:
                regs.append(Register(cpu, name, int(second, 16) << 64 | int(first, 16), "exponent:mantissa"))
            else:
                text = flags[1] if flags and name == "EFL" else ""
                regs.append(Register(cpu, name, int(first, 16), text))
    return regs


async def registers(execute: Execute) -> list[Register]:
    out = await execute("human-monitor-command", {"command-line": "info registers -a"})
    regs = parse_info_registers(out)
    if not regs:
        raise PetriError(f"could not read registers: QEMU said {out.strip()[:200]!r}")
    return regs


def _qmp_int(addr: int) -> int:
    """QMP integers are int64: addresses in the upper half go as their two's complement."""
    return addr - (1 << 64) if addr >= 1 << 63 else addr


def check_range(addr: int, size: int) -> None:
    if not isinstance(addr, int) or isinstance(addr, bool) or not 0 <= addr < 1 << 64:
        raise PetriError(f"address must be an int in [0, 2**64), not {addr!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise PetriError(f"size must be a positive int, not {size!r}")
    if size > MAX_READ:
        raise PetriError(f"size {size} is larger than the {MAX_READ >> 20} MiB limit for one read")
    if addr + size > 1 << 64:
        raise PetriError(f"range 0x{addr:x}+{size} runs past the end of the address space")


async def read_memory(execute: Execute, scratch: Path, addr: int, size: int, physical: bool = False,
                      cpu: int = 0) -> bytes:
    """Guest memory through a file in ``scratch`` (the VM's private run dir)."""
    check_range(addr, size)
    path = scratch / f"mem-{next(_FILE_IDS)}.bin"
    args: dict[str, object] = {"val": _qmp_int(addr), "size": size, "filename": str(path)}
    if not physical:
        args["cpu-index"] = cpu
    try:
        await execute("pmemsave" if physical else "memsave", args)
        with open(path, "rb") as f:
            data = f.read()
    except QemuRefused as e:
        space = "physical" if physical else "virtual"
        raise PetriError(
            f"cannot read {size} bytes at {space} address 0x{addr:x}: {e} "
            "(not mapped by the guest's page tables, or no memory there)"
        ) from e
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    if len(data) != size:
        raise PetriError(f"read {len(data)} of {size} bytes at 0x{addr:x}")
    return data
