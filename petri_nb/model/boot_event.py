"""Boot events: what the firmware says about booting (petri's ``wait_for_boot_event``).

Backend-neutral records: a backend reads them from its firmware's own channel (QEMU:
the ISA debug console that SeaBIOS and OVMF write to) and reports each one; the VM
puts it on the timeline (source ``boot``) and hands it to ``wait_for_boot_event``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: attempt: the firmware tries a boot device; success: it handed over to a loader or OS;
#: failed: that device did not boot; no_boot_device: nothing left to try.
KINDS = ("attempt", "success", "failed", "no_boot_device")


@dataclass(frozen=True)
class BootEvent:
    """One boot event. ``detail`` and ``line`` are the firmware's own words (untrusted: escape
    before showing); ``t`` is the VM's uptime when it was reported."""

    kind: str
    firmware: str = ""
    detail: str = ""
    line: str = field(default="", compare=False, repr=False)
    t: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind == "success"
