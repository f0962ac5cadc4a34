"""Boot events (petri's ``wait_for_boot_event``) parsed from what the firmware prints.

Where the evidence is, checked with Debian 12's builds under QEMU 7.2 (q35, TCG):

- **SeaBIOS** (``seabios`` 1.16.2) writes its debug log to the ISA debug port 0x402
  (``-device isa-debugcon,iobase=0x402``) and nothing to the serial port unless asked::

      Booting from Hard Disk...            -> attempt   (one per boot-order entry)
      Boot failed: not a bootable disk     -> failed
      Booting from 0000:7c00               -> success   (jumped to the boot sector)
      No bootable device.                  -> no_boot_device (often without a newline: it then waits)

- **OVMF** (``ovmf`` 2022.11 release build) prints *nothing* on 0x402 (its DEBUG output is
  compiled out). Its boot manager, BdsDxe, prints to the console, which includes the
  serial port, wrapped in ANSI escape sequences::

      BdsDxe: failed to load Boot0001 "UEFI QEMU DVD-ROM QM00005 " from ...: Not Found
                                           -> attempt + failed (there was no "loading" line first)
      BdsDxe: loading Boot0002 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x3,0x0)   -> attempt
      BdsDxe: starting Boot0002 "UEFI Misc Device" from ...                        -> success
      BdsDxe: starting Boot0003 "EFI Internal Shell" from ...   -> no_boot_device (see below)
      BdsDxe: No bootable option or device was found.           -> no_boot_device

  Debian's OVMF has the UEFI Shell as its last boot option, so with nothing bootable it
  starts the Shell instead of stopping: reaching the built-in Shell is reported as
  ``no_boot_device``. Under secure boot an unsigned loader gives ``loading`` then
  ``failed to load ...: Access Denied`` (a ``failed`` event whose detail says so), and the
  Shell itself ``failed to start ...: Security Violation``.

So feed the 0x402 log for SeaBIOS and the serial console for OVMF; the parser accepts
either (or both mixed) and tags each event with the firmware whose wording matched.
It is pure: text in, events out, no I/O; chunks may split lines anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from collections.abc import Awaitable, Callable, Iterable

from qemu.qmp import QMPError

from ...model.boot_event import BootEvent

#: Terminal escape sequences (OVMF's console clears the screen and moves the cursor).
_ANSI = re.compile(r"\x1b\[[0-9;=?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>]")
_SHELL = "EFI Internal Shell"


def _seabios(line: str) -> list[BootEvent]:
    if m := re.fullmatch(r"Booting from ([0-9a-fA-F]{4}:[0-9a-fA-F]{4})", line):
        return [BootEvent("success", "seabios", f"jumped to the boot code at {m.group(1)}", line)]
    if m := re.fullmatch(r"Booting from (.+?)\.\.\.", line):
        return [BootEvent("attempt", "seabios", m.group(1), line)]
    if m := re.fullmatch(r"Boot failed: (.+)", line):
        return [BootEvent("failed", "seabios", m.group(1), line)]
    if line.startswith("No bootable device."):
        return [BootEvent("no_boot_device", "seabios", "No bootable device.", line)]
    return []


def _ovmf(line: str) -> list[BootEvent]:
    if not line.startswith("BdsDxe: "):
        return []
    if m := re.fullmatch(r'BdsDxe: failed to (load|start) (Boot[0-9A-Fa-f]{4}) "(.*?)" from (.*): (.+)', line):
        verb, option, name, path, why = m.groups()
        option = f'{option} "{name.strip()}"'
        failed = BootEvent("failed", "ovmf", f"{option}: {why}", line)
        # A failed load may have no "loading" line before it; the parser drops a repeated attempt.
        return [BootEvent("attempt", "ovmf", f"{option} from {path}", line), failed] if verb == "load" else [failed]
    if m := re.fullmatch(r'BdsDxe: (loading|starting) (Boot[0-9A-Fa-f]{4}) "(.*?)" from (.*)', line):
        verb, option, name, path = m.groups()
        detail = f'{option} "{name.strip()}" from {path}'
        if verb == "loading":
            return [BootEvent("attempt", "ovmf", detail, line)]
        if name.strip() == _SHELL:
            return [BootEvent("no_boot_device", "ovmf", f"nothing bootable: fell back to the {_SHELL}", line)]
        return [BootEvent("success", "ovmf", detail, line)]
    if "No bootable option or device was found" in line:
        return [BootEvent("no_boot_device", "ovmf", "No bootable option or device was found.", line)]
    return []


def _complete_tail(line: str) -> bool:
    """Messages the firmware may leave without a newline (it stops or waits after them)."""
    return line.startswith("No bootable device.") or line.endswith("No bootable option or device was found.")


def clean(line: str) -> str:
    """A console line without escape sequences, carriage returns or other control characters."""
    line = _ANSI.sub("", line)
    return "".join(ch for ch in line if ch >= " " or ch == "\t").strip()


def events_in_line(line: str) -> list[BootEvent]:
    """The events one (already split) line reports; none for ordinary output."""
    text = clean(line)
    return _seabios(text) or _ovmf(text) if text else []


class BootEventParser:
    """Incremental: ``feed`` chunks as they arrive, get the events of every finished line.

    It keeps a little state so that one boot step gives one event: OVMF prints
    ``loading`` and then ``failed to load`` for the same option (one attempt), and
    after starting the fallback Shell it may also print "No bootable option" (one
    no_boot_device until something else is attempted).
    """

    def __init__(self) -> None:
        self._tail = ""
        self._tail_reported = False
        self._open_attempt = ""  # the attempt's detail until it succeeds or fails
        self._no_boot_reported = False

    def _dedupe(self, events: list[BootEvent]) -> list[BootEvent]:
        kept: list[BootEvent] = []
        for event in events:
            option = event.detail.split(" from ")[0]
            if event.kind == "attempt":
                if event.firmware == "ovmf" and option == self._open_attempt:
                    continue
                self._open_attempt = option
                if _SHELL not in option:
                    self._no_boot_reported = False
            elif event.kind == "no_boot_device":
                if self._no_boot_reported:
                    continue
                self._no_boot_reported = True
                self._open_attempt = ""
            else:
                self._open_attempt = ""
            kept.append(event)
        return kept

    def feed(self, data: str | bytes) -> list[BootEvent]:
        if isinstance(data, bytes):
            data = data.decode("utf-8", errors="replace")
        *lines, self._tail = (self._tail + data).split("\n")
        events: list[BootEvent] = []
        for line in lines:
            if not self._tail_reported:
                events += events_in_line(line)
            self._tail_reported = False
        if not self._tail_reported and _complete_tail(clean(self._tail)):
            events += events_in_line(self._tail)
            self._tail_reported = True
        return self._dedupe(events)

    def close(self) -> list[BootEvent]:
        """Events in a last line that never got its newline."""
        tail, reported = self._tail, self._tail_reported
        self._tail, self._tail_reported = "", False
        return [] if reported else self._dedupe(events_in_line(tail))


def parse_boot_events(text: str | bytes | Iterable[str]) -> list[BootEvent]:
    """All events in a whole log (a string, bytes, or an iterable of lines)."""
    parser = BootEventParser()
    if isinstance(text, (str, bytes)):
        return parser.feed(text) + parser.close()
    events: list[BootEvent] = []
    for line in text:
        events += parser.feed(line if line.endswith("\n") else line + "\n")
    return events + parser.close()


#: Seconds between reads of the firmware's debug-port ring while it fills, and at most when quiet.
RING_FAST = 0.05
RING_SLOW = 1.0


class BootWatcher:
    """Turns one VM's firmware output into boot events for its sink: SeaBIOS's debug port always,
    the serial console (OVMF's evidence) only until the firmware handed over, since after that
    the console is the OS's and can be busy."""

    def __init__(self, report: Callable[[BootEvent], None]) -> None:
        self._report = report
        self._debug = BootEventParser()
        self._console = BootEventParser()
        self._booting = True
        self._wake = asyncio.Event()

    def restarted(self) -> None:
        """The firmware runs again (start, reset, relaunch): watch the console again, read the port soon."""
        self._console = BootEventParser()
        self._booting = True
        self._wake.set()

    def console(self, chunk: bytes) -> None:
        if self._booting:
            self._emit(self._console.feed(chunk))

    async def pump_debug_port(self, read_ring: Callable[[], Awaitable[str]]) -> None:
        """Drain QEMU's debug-port ring (``read_ring`` returns base64) often while the firmware
        talks, backing off while it is quiet; ``restarted()`` makes it look often again."""
        self._debug = BootEventParser()  # a new QEMU: its port starts a new stream
        pause = RING_FAST
        while True:
            try:
                chunk = base64.b64decode(await read_ring())
            except (ConnectionError, EOFError, QMPError):  # this QEMU is gone or being replaced
                return
            if chunk:
                self._emit(self._debug.feed(chunk))
                pause = RING_FAST
            else:
                pause = min(pause * 2, RING_SLOW)
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)  # a poll period, or a restart

    def _emit(self, events: list[BootEvent]) -> None:
        for event in events:
            if event.ok:
                self._booting = False
            self._report(event)
