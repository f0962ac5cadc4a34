"""The Runtime protocol's guest-debugging calls for QEMU: reads over QMP, the rest through gdb."""

from __future__ import annotations

from pathlib import Path

from ...errors import PetriError
from . import cpu
from .gdb import Debugger
from .screen import Execute

#: QEMU run states of a halted VM: only a reset (or restore) makes it run again.
HALTED_STATES = ("shutdown", "guest-panicked", "internal-error")


class GuestDebugCalls:
    """Mixed into QemuRuntime: registers and memory need no debugger; writes, breakpoints and
    steps go through the gdbstub session (petri_nb.backends.qemu.gdb)."""

    rundir: Path | None
    debugger: Debugger
    _execute: Execute

    async def status(self) -> str:
        raise NotImplementedError

    async def _refuse_if_halted(self, call: str) -> None:
        """Stepping or resuming a halted guest would run it on; QEMU itself refuses only shutdown."""
        status = await self.status()
        if status in HALTED_STATES:
            raise PetriError(f"cannot {call}(): the VM is halted ({status}); reset() it first")

    async def registers(self) -> list[cpu.Register]:
        return await cpu.registers(self._execute)

    async def read_memory(self, addr: int, size: int, physical: bool = False, cpu_index: int = 0) -> bytes:
        assert self.rundir is not None
        return await cpu.read_memory(self._execute, self.rundir, addr, size, physical, cpu_index)

    async def write_memory(self, addr: int, data: bytes, physical: bool = False) -> None:
        cpu.check_range(addr, len(data))
        await (await self.debugger.session()).write_memory(addr, data, physical)

    async def break_at(self, addr: int) -> None:
        await self.debugger.break_at(addr)

    async def remove_breakpoint(self, addr: int) -> None:
        await self.debugger.delete(addr)

    async def step(self) -> int:
        await self._refuse_if_halted("step")
        return await self.debugger.step()

    async def continue_(self) -> None:
        await self._refuse_if_halted("continue_")
        await (await self.debugger.session()).continue_()
