"""Why a VM stopped: typed halts (mirroring petri's PetriHaltReason / PetriHaltReasonDetail) and
debugger stops."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .diagnosis import Diagnosis


class HaltReason(enum.Enum):
    """Why a VM stopped running guest code."""

    POWER_OFF = "power_off"
    RESET = "reset"
    HIBERNATE = "hibernate"
    TRIPLE_FAULT = "triple_fault"
    PANIC = "panic"
    OTHER = "other"


@dataclass(frozen=True)
class Halt:
    """One halt: its reason, a human-readable detail and the backend's raw evidence."""

    reason: HaltReason
    detail: str
    t: float = 0.0
    data: dict = field(default_factory=dict, compare=False, repr=False)
    #: Registers, screen, console tail and kernel oops when it halted (petri_nb.model.diagnosis).
    diagnosis: Diagnosis | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.reason.name}: {self.detail}"

    def __repr__(self) -> str:
        return f"Halt({self.reason.name}, {self.detail!r}, t={self.t:.3f})"


@dataclass(frozen=True)
class Stop:
    """Where and why a debugger reported the guest stopped (not a halt: it can continue)."""

    addr: int
    reason: str
    t: float
    data: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
