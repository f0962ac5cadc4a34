"""The backend-neutral runtime protocol, shaped after petri's ``PetriVmRuntime``.

A backend starts and drives one VM and reports what happens through an
``EventSink``. Everything above it (halt racing, timelines, consoles, the sync
facade) is written once in ``petri_nb.vm.facade`` and works for any backend.
"""

from __future__ import annotations

import abc
import asyncio
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from ..errors import AgentError, NotSupported
from ..model.boot_event import BootEvent
from ..model.halt import Halt
from ..model.inspect_node import InspectNode


class EventSink(Protocol):
    """What a backend calls, on the runtime loop, when something happens."""

    def record(self, source: str, kind: str, detail: str = "", data: Any = None) -> None: ...

    def halted(self, halt: Halt) -> None: ...

    def console_data(self, data: bytes) -> None: ...

    def boot_event(self, event: BootEvent) -> None:
        """The firmware reported a boot attempt, success or failure."""

    def gone(self, reason: str) -> None: ...

    def debug_stopped(self, payload: dict[str, Any]) -> None:
        """A debugger stopped the guest (breakpoint, step); ``payload`` is the debugger's report."""

    def debug_running(self) -> None:
        """The guest runs again under (or without) the debugger."""


class Runtime(abc.ABC):
    """One running VM, as a backend sees it. All methods run on the runtime loop."""

    backend_name = "backend"

    @property
    def pid(self) -> int | None:
        """The process running the VM, if the backend has one."""
        return None

    @property
    def view_sockets(self) -> dict[str, Path]:
        """Unix sockets the live view reaches beside the kernel ("vnc", "control", "serial"), if any."""
        return {}

    @property
    def facts(self) -> dict[str, Any]:
        """What this VM runs on (e.g. ``qemu_version``, ``accel``), saved with its runs so runs from
        different machines can be told apart; read after start(). Keys are the backend's own."""
        return {"backend": self.backend_name}

    @abc.abstractmethod
    async def start(self, sink: EventSink) -> None:
        """Boot the VM; returns once guest code is running."""

    @abc.abstractmethod
    async def teardown(self) -> None:
        """Stop the VM and release everything; must be idempotent."""

    @abc.abstractmethod
    async def reset(self) -> None:
        """Host-initiated reset; also restarts a halted VM."""

    @abc.abstractmethod
    async def pause(self) -> None: ...

    @abc.abstractmethod
    async def resume(self) -> None: ...

    @abc.abstractmethod
    async def status(self) -> str:
        """The backend's run state, e.g. ``running``, ``paused``, ``shutdown``."""

    @abc.abstractmethod
    async def screenshot(self) -> Image.Image: ...

    @abc.abstractmethod
    async def write_console(self, data: bytes) -> None: ...

    async def save_state(self) -> bytes:
        """The paused VM's whole state as bytes (a running VM is paused for it, then resumed)."""
        raise NotSupported(f"save_state() is not implemented by the {self.backend_name} backend")

    async def restore_state(self, data: bytes) -> str:
        """Replace the VM's state by ``data`` from save_state(); returns the run state, not resumed."""
        raise NotSupported(f"restore_state() is not implemented by the {self.backend_name} backend")

    # The boot cache (petri_nb.vm.boot_cache): start a guest from its state at an earlier ready moment.
    def boot_identity(self) -> dict[str, Any]:
        """Everything that shapes this VM up to its ready moment, as JSON-able data (the cache key's
        material): a change in any of it must be a miss. NotSupported if the guest cannot be cached."""
        raise NotSupported(f"boot_cache is not implemented by the {self.backend_name} backend")

    async def save_ready_state(self, folder: Path) -> None:
        """Write into ``folder`` what start_from() needs to resume this VM as it is now (it keeps running)."""
        raise NotSupported(f"boot_cache is not implemented by the {self.backend_name} backend")

    async def start_from(self, sink: EventSink, folder: Path) -> bool:
        """As start(), but from a state save_ready_state() wrote. False if the backend refused that state
        and booted normally instead (the caller should discard it)."""
        raise NotSupported(f"boot_cache is not implemented by the {self.backend_name} backend")

    # Guest debugging (petri_nb.vm.debug): reads need no debugger, the rest a debug stub.
    async def registers(self) -> list[Any]:
        """Every vCPU's registers, as rows with ``cpu``, ``name``, ``value`` and ``text``."""
        raise NotSupported(f"registers() is not implemented by the {self.backend_name} backend")

    async def read_memory(self, addr: int, size: int, physical: bool = False, cpu_index: int = 0) -> bytes:
        """Guest memory; a virtual ``addr`` goes through vCPU ``cpu_index``'s page tables."""
        raise NotSupported(f"read_memory() is not implemented by the {self.backend_name} backend")

    async def write_memory(self, addr: int, data: bytes, physical: bool = False) -> None:
        raise NotSupported(f"write_memory() is not implemented by the {self.backend_name} backend")

    async def break_at(self, addr: int) -> None:
        raise NotSupported(f"break_at() is not implemented by the {self.backend_name} backend")

    async def remove_breakpoint(self, addr: int) -> None:
        raise NotSupported(f"remove_breakpoint() is not implemented by the {self.backend_name} backend")

    async def step(self) -> int:
        """One instruction; returns the new program counter."""
        raise NotSupported(f"step() is not implemented by the {self.backend_name} backend")

    async def continue_(self) -> None:
        raise NotSupported(f"continue_() is not implemented by the {self.backend_name} backend")

    async def send_input(self, events: list[dict[str, Any]]) -> None:
        """Inject keyboard/pointer events (QMP ``input-send-event`` shape) for the live view."""
        raise NotSupported(f"send_input() is not implemented by the {self.backend_name} backend")

    async def firmware_vars(self) -> bytes:
        """The UEFI variable store as it is now (to save as an artifact)."""
        raise NotSupported(f"firmware_vars() is not implemented by the {self.backend_name} backend")

    async def open_agent_channel(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A byte stream to the guest agent's port (see petri_nb.vm.agent)."""
        raise AgentError(f"the {self.backend_name} backend has no guest agent channel")

    async def update_command_line(self, command_line: str) -> None:
        """Use ``command_line`` for the guest kernel from the next reset() on."""
        raise NotSupported(f"update_command_line() is not implemented by the {self.backend_name} backend")

    async def add_pcie_device(self, kind: str, port: str | None = None, **options: Any) -> dict[str, Any]:
        """Hot-plug a device into a free PCIe slot; returns what was plugged where."""
        raise NotSupported(f"add_pcie_device() is not implemented by the {self.backend_name} backend")

    async def remove_pcie_device(self, port: str, timeout: float | None = None) -> dict[str, Any]:
        """Hot-unplug the device in ``port``, waiting for the guest to release it."""
        raise NotSupported(f"remove_pcie_device() is not implemented by the {self.backend_name} backend")

    async def power_button(self) -> None:
        """Press the (ACPI) power button; the guest decides whether to power off."""
        raise NotSupported(f"power_button() is not implemented by the {self.backend_name} backend")

    async def inspect(self, path: str | None = None) -> tuple[InspectNode, dict[str, Any]]:
        """The VM's state as a tree (optionally only the branch at ``path``), plus stats
        such as ``duration_s`` and ``round_trips``."""
        raise NotSupported(f"inspect() is not implemented by the {self.backend_name} backend")

    # Calls that only an OpenHCL paravisor has. QEMU runs no paravisor, so the
    # default says so instead of pretending.
    def _no_paravisor(self, call: str) -> NotSupported:
        return NotSupported(
            f"{call}() needs an OpenHCL paravisor, which the {self.backend_name} backend does not run"
        )

    async def restart_openhcl(self, *args: Any, **kwargs: Any) -> None:
        raise self._no_paravisor("restart_openhcl")

    async def save_openhcl(self, *args: Any, **kwargs: Any) -> None:
        raise self._no_paravisor("save_openhcl")

    async def restore_openhcl(self) -> None:
        raise self._no_paravisor("restore_openhcl")

    async def set_vtl2_settings(self, settings: Any) -> None:
        raise self._no_paravisor("set_vtl2_settings")
