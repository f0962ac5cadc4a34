"""A host reset of a running or halted QEMU, and the firmware's own reboot that may follow.

Guest resets are halts (``-action reboot=shutdown``), so a host reset switches the action
to a real reset while it runs. SeaBIOS finds its RAM already initialised after any reset
and reboots once more itself ("Attempting a hard reboot"); that guest reset belongs to
this reset, not to the guest. qboot and OVMF do not, so their resets skip that wait
(decided by the firmware, firmware.reboots_itself_after_reset).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

from qemu.qmp import EventListener

from ...errors import PetriTimeout
from .screen import Execute

RESET_TIMEOUT = 30.0
FIRMWARE_REBOOT_TIMEOUT = 5.0
#: Without the console to watch: quiet time after the firmware's reboot before guest resets are halts again.
SETTLE = 0.5


async def host_reset(execute: Execute, listen: Callable[[EventListener], AbstractContextManager[None]],
                     status: Callable[[], Awaitable[str]], console_seen: asyncio.Event | None,
                     firmware_reboots: bool) -> None:
    """``system_reset`` and wait for QEMU's RESET (and, after SeaBIOS, for its own reboot to settle).

    ``console_seen`` is set on the guest's console output (the kernel's runtime); without one
    (the view server reads no console) the reboot has settled once guest resets stop coming."""
    resets = EventListener(("RESET",))
    with listen(resets):
        await execute("set-action", {"reboot": "reset"})
        try:
            await execute("system_reset")
            await _next_reset(resets, False, "QEMU's RESET event", RESET_TIMEOUT)
            if await status() != "running":
                await execute("cont")
            if firmware_reboots:
                with contextlib.suppress(PetriTimeout):
                    await _next_reset(resets, True, "the firmware's reboot", FIRMWARE_REBOOT_TIMEOUT)
                    # SeaBIOS's hard reboot fires 0xCF9 and then a triple fault; either may land
                    # late, even mid-POST, which starts another hard reboot. Only the guest's own
                    # first console output (SeaBIOS prints none on COM1) proves the firmware is done.
                    if console_seen is None:
                        while True:  # ends with the PetriTimeout of a quiet SETTLE
                            await _next_reset(resets, True, "another firmware reboot", SETTLE)
                    console_seen.clear()
                    await bounded(console_seen.wait(), "the guest's console output", FIRMWARE_REBOOT_TIMEOUT)
        finally:
            await execute("set-action", {"reboot": "shutdown"})


async def _next_reset(resets: EventListener, by_guest: bool, what: str, timeout: float) -> None:
    """The next RESET event caused by the guest (``by_guest``) or by the host."""
    async def matching() -> None:
        async for event in resets:
            if bool(event.get("data", {}).get("guest")) == by_guest:
                return
    await bounded(matching(), what, timeout)


async def bounded(aw: Awaitable[Any], what: str, timeout: float) -> None:
    try:
        await asyncio.wait_for(aw, timeout)
    except TimeoutError:
        raise PetriTimeout(f"timed out after {timeout:g} s waiting for {what}") from None
