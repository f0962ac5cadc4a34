"""Guest machine state for debugging: registers, memory, disassembly, breakpoints.

Reads (registers, memory) go through QMP and work on paused, running (paused
for the read, then resumed) and halted-but-kept VMs, with no debugger attached.
Breakpoints, stepping and memory writes go through QEMU's gdbstub, driven by gdb
(backends/qemu/gdb.py). A breakpoint hit is a timeline event and ends pending
``wait_for_halt_or`` calls with ``BreakpointHit``: the guest is stopped, not
halted, until ``continue_()`` / ``step()`` / ``resume()``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pandas as pd

from ..errors import BreakpointHit, PetriError
from ..model.run_state import Fact
from ..model.x86 import cpu_mode, program_counter
from ..runtime.loop import runs_on_runtime_loop
from .core import VmCore

__all__ = ["BreakpointHit", "DebugMixin", "Memory", "decode", "elf_symbols", "hexdump"]

#: Bit names of the registers worth decoding (Intel SDM vol. 3, 2.5 and 2.2.1).
BITS: dict[str, dict[int, str]] = {
    "EFL": {0: "CF", 2: "PF", 4: "AF", 6: "ZF", 7: "SF", 8: "TF", 9: "IF", 10: "DF", 11: "OF", 14: "NT",
            16: "RF", 17: "VM", 18: "AC", 19: "VIF", 20: "VIP", 21: "ID"},
    "CR0": {0: "PE", 1: "MP", 2: "EM", 3: "TS", 4: "ET", 5: "NE", 16: "WP", 18: "AM", 29: "NW", 30: "CD", 31: "PG"},
    "CR4": {0: "VME", 1: "PVI", 2: "TSD", 3: "DE", 4: "PSE", 5: "PAE", 6: "MCE", 7: "PGE", 8: "PCE", 9: "OSFXSR",
            10: "OSXMMEXCPT", 11: "UMIP", 12: "LA57", 13: "VMXE", 16: "FSGSBASE", 17: "PCIDE", 18: "OSXSAVE",
            20: "SMEP", 21: "SMAP", 22: "PKE"},
    "EFER": {0: "SCE", 8: "LME", 10: "LMA", 11: "NXE", 12: "SVME", 14: "FFXSR"},
}
def decode(name: str, value: int, text: str = "") -> str:
    """Human view of a register: set flag names for EFL/CR0/CR4/EFER, QEMU's own text otherwise."""
    base = name.split(".")[0]
    if name in BITS:
        names = [n for bit, n in BITS[name].items() if value >> bit & 1]
        if name == "EFL":
            names.append(f"IOPL={value >> 12 & 3}")
        return " ".join(names)
    if name.endswith(".flags") and base in ("CS", "SS", "DS", "ES", "FS", "GS"):
        bits = {"L": 21, "D/B": 22, "G": 23, "P": 15}
        return " ".join(n for n, b in bits.items() if value >> b & 1) + (f"  {text}" if text else "")
    return text


def hexdump(data: bytes, addr: int = 0, width: int = 16) -> str:
    """Classic offset / hex / ASCII dump (guest bytes shown as printable ASCII only)."""
    lines = []
    for off in range(0, len(data), width):
        chunk = data[off:off + width]
        hexes = " ".join(f"{b:02x}" for b in chunk).ljust(width * 3 - 1)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{addr + off:016x}  {hexes}  |{text}|")
    return "\n".join(lines)


class Memory(bytes):
    """Bytes read from the guest, remembering where from; shows as a hexdump in IPython."""

    addr: int = 0
    physical: bool = False

    def __new__(cls, data: bytes, addr: int = 0, physical: bool = False) -> Memory:
        obj = super().__new__(cls, data)
        obj.addr = addr
        obj.physical = physical
        return obj

    def hexdump(self) -> str:
        return hexdump(self, self.addr)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.hexdump())


@functools.lru_cache(maxsize=8)
def elf_symbols(path: str) -> dict[str, int]:
    """Symbol name -> address from an ELF file's symbol table (e.g. tmk.elf)."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    out: dict[str, int] = {}
    with open(path, "rb") as f:
        for section in ELFFile(f).iter_sections():
            if isinstance(section, SymbolTableSection):
                for sym in section.iter_symbols():
                    if sym.name and sym["st_shndx"] != "SHN_UNDEF" and sym["st_info"]["type"] in (
                            "STT_FUNC", "STT_NOTYPE", "STT_OBJECT"):
                        out.setdefault(sym.name, sym["st_value"])
    return out


class DebugMixin(VmCore):
    """registers / read_memory / write_memory / disassemble / breakpoints for AsyncVm."""

    # -- reads -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _paused_for_read(self) -> AsyncIterator[None]:
        """A running guest is paused for the read and resumed after; others are left as they are."""
        running = await self._call("status", self.runtime.status()) == "running"
        if running:
            await self._call("pause", self.runtime.pause())
        try:
            yield
        finally:
            if running:
                await self._call("resume", self.runtime.resume())

    async def _register_map(self, cpu: int = 0) -> dict[str, int]:
        regs = await self._call("registers", self.runtime.registers())
        found = {r.name: r.value for r in regs if r.cpu == cpu}
        if not found:
            raise PetriError(f"no vCPU {cpu}; this VM has vCPUs {sorted({r.cpu for r in regs})}")
        return found

    @runs_on_runtime_loop
    async def registers(self, cpu: int | None = None) -> pd.DataFrame:
        """One row per vCPU and register: value, hex and a decoded view (flags, control bits, segments)."""
        if cpu is not None and (not isinstance(cpu, int) or isinstance(cpu, bool) or cpu < 0):
            raise PetriError(f"cpu must be a vCPU index (int >= 0) or None, not {cpu!r}")
        async with self._paused_for_read():
            regs = await self._call("registers", self.runtime.registers())
        if cpu is not None:
            cpus = sorted({r.cpu for r in regs})
            regs = [r for r in regs if r.cpu == cpu]
            if not regs:
                raise PetriError(f"no vCPU {cpu}; this VM has vCPUs {cpus}")
        return pd.DataFrame({
            "cpu": pd.array([r.cpu for r in regs], dtype="int64"),
            "register": pd.array([r.name for r in regs], dtype="string"),
            "value": pd.Series([r.value for r in regs], dtype="object"),
            "hex": pd.array([f"0x{r.value:x}" for r in regs], dtype="string"),
            "decoded": pd.array([decode(r.name, r.value, r.text) for r in regs], dtype="string"),
        })

    @runs_on_runtime_loop
    async def register(self, name: str, cpu: int = 0) -> int:
        """One register's value, e.g. ``register("EIP")`` or ``register("IDT.limit")``."""
        async with self._paused_for_read():
            regs = await self._register_map(cpu)
        key = name.upper() if isinstance(name, str) else name
        if isinstance(key, str) and "." in key:
            head, _, tail = key.partition(".")
            key = f"{head}.{tail.lower()}"
        if key not in regs:
            raise PetriError(f"unknown register {name!r}; known: {', '.join(sorted(regs))}")
        return regs[key]

    @runs_on_runtime_loop
    async def read_memory(self, addr: int | str, size: int, physical: bool = False) -> Memory:
        """Guest memory at an address or kernel symbol; virtual (through the current page tables)
        unless ``physical``."""
        addr = await self._resolve(addr)
        data = await self._call("read_memory", self.runtime.read_memory(addr, size, physical))
        return Memory(data, addr, physical)

    @runs_on_runtime_loop
    async def write_memory(self, addr: int | str, data: bytes, physical: bool = False) -> None:
        """Write guest RAM (through the gdbstub: QMP has no memory write). MMIO such as VGA is not written."""
        if not isinstance(data, (bytes, bytearray, memoryview)) or not len(data):
            raise PetriError(f"write_memory() needs non-empty bytes, not {data!r:.60}")
        addr = await self._resolve(addr)
        await self._call("write_memory", self.runtime.write_memory(addr, bytes(data), physical))

    @runs_on_runtime_loop
    async def disassemble(self, addr: int | str | None = None, count: int = 20,
                          cpu: int = 0) -> pd.DataFrame:
        """``count`` instructions from ``addr`` (default: the current instruction), decoded by capstone
        in the CPU's current mode (real / 32-bit / 64-bit)."""
        import capstone

        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10_000:
            raise PetriError(f"count must be an int in [1, 10000], not {count!r}")
        async with self._paused_for_read():
            regs = await self._register_map(cpu)
            pc = program_counter(regs)
            start = pc if addr is None else await self._resolve(addr)
            data = b""
            size = count * 15  # the longest x86 instruction
            while size >= 16 and not data:
                try:
                    data = await self._call("read_memory", self.runtime.read_memory(start, size, False, cpu))
                except PetriError:
                    size //= 2  # near the end of mapped memory: read less
            if not data:
                data = await self._call("read_memory", self.runtime.read_memory(start, 16, False, cpu))
        mode = cpu_mode(regs)
        md = capstone.Cs(capstone.CS_ARCH_X86,
                         {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}[mode])
        names = {a: n for n, a in reversed(list(self.symbols().items()))}
        rows = [(i.address, i.bytes.hex(" "), i.mnemonic, i.op_str, names.get(i.address, ""), i.address == pc)
                for i in itertools.islice(md.disasm(data, start), count)]
        frame = pd.DataFrame(rows, columns=["address", "bytes", "mnemonic", "operands", "symbol", "current"])
        frame = frame.astype({"address": "int64", "bytes": "string", "mnemonic": "string", "operands": "string",
                              "symbol": "string", "current": "bool"})
        frame.attrs["mode"] = mode
        return frame

    def symbols(self) -> dict[str, int]:
        """The guest kernel's ELF symbols (name -> address), if it has any (tmk does)."""
        path = self.guest.symbol_file
        if path is None or not path.is_file():
            return {}
        try:
            return dict(elf_symbols(str(path)))
        except Exception:  # not an ELF (e.g. a bzImage): no symbols
            return {}

    async def _resolve(self, where: int | str) -> int:
        if isinstance(where, str):
            syms = self.symbols()
            if where not in syms:
                raise PetriError(f"unknown symbol {where!r}" + ("" if syms else ": the guest kernel has no symbols"))
            return syms[where]
        if not isinstance(where, int) or isinstance(where, bool) or not 0 <= where < 1 << 64:
            raise PetriError(f"address must be an int in [0, 2**64) or a symbol name, not {where!r}")
        return where

    # -- breakpoints and stepping (gdbstub) -----------------------------------------

    @runs_on_runtime_loop
    async def break_at(self, where: int | str) -> int:
        """Set a breakpoint at an address or kernel symbol; returns the address. A hit is a
        ``breakpoint`` timeline event and raises BreakpointHit in pending ``wait_for_halt_or`` calls."""
        addr = await self._resolve(where)
        await self._call("break_at", self.runtime.break_at(addr))
        return addr

    @runs_on_runtime_loop
    async def remove_breakpoint(self, where: int | str) -> int:
        """Remove the breakpoint at an address or kernel symbol; returns the address."""
        addr = await self._resolve(where)
        await self._call("remove_breakpoint", self.runtime.remove_breakpoint(addr))
        return addr

    @runs_on_runtime_loop
    async def step(self) -> int:
        """Execute one instruction of a stopped guest; returns the new program counter."""
        addr = await self._call("step", self.runtime.step())
        self._on_debug_run()
        return addr

    @runs_on_runtime_loop
    async def continue_(self) -> None:
        """Let a guest stopped at a breakpoint (or paused) run again."""
        await self._call("continue_", self.runtime.continue_())
        self._on_debug_run()
        self._transition(Fact.RESUMED)
