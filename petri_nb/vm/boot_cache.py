"""``launch(boot_cache=True)``: a second launch of the same guest starts where the first became ready.

A miss boots normally and, at the ready moment, stores the backend's ready state plus
what the guest had printed and the firmware's boot events, so that a hit looks to the
user like the boot they skipped: ``console.expect(banner)`` finds the banner, and
``boot_events`` lists the boot. The key comes from the backend (``Runtime.boot_identity``):
any change to an image, kernel, firmware, option or QEMU is a miss. What a restored
guest shares with its siblings (RNG state, clock, machine-id, MAC) is described in
docs/boot-cache.md; with a qemu-ga agent a hit steps the guest clock to the host's and
stirs the guest's RNG (``freshen``).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ..backends.base import EventSink, Runtime
from ..errors import PetriError
from ..guests import Guest
from ..model.boot_event import BootEvent
from ..records.boot_cache import BootCache, Building, Entry, key_of
from .console import AsyncConsole

CONSOLE_FILE = "console.txt"
BOOT_EVENTS_FILE = "boot_events.json"
#: Bound on writing one entry (a Linux guest's state is a hundred MB or so, written by QEMU to a file).
STORE_TIMEOUT = 120.0
#: Bytes written into the guest's /dev/urandom after a hit, so siblings' RNG outputs differ.
STIR_BYTES = 64


class Cached(Protocol):
    """What the boot cache needs of a VM (seen from below: no facade import)."""

    name: str
    guest: Guest
    runtime: Runtime
    console: AsyncConsole
    boot_events: list[BootEvent]


@dataclass
class Plan:
    """One launch's use of the cache: an entry to start from, or permission to build one."""

    store: BootCache
    key: str
    entry: Entry | None = None
    building: Building | None = None

    @property
    def outcome(self) -> str:
        """For run metadata: ``hit``, ``stored`` (this run built the entry), ``miss`` (another built it)."""
        return "hit" if self.entry is not None else "stored" if self.building is not None else "miss"

    def release(self) -> None:
        if self.building is not None:
            self.building.release()


async def plan(runtime: Runtime) -> Plan:
    """Look the guest up (NotSupported if it cannot be cached); on a miss, try to become its builder."""
    def look() -> Plan:
        store = BootCache()
        key = key_of(runtime.boot_identity())  # stats files and asks QEMU its version: off the loop
        found = Plan(store, key, store.lookup(key))
        if found.entry is None:
            found.building = store.building(key)
        return found
    with warnings.catch_warnings(record=True) as caught:  # a damaged entry: shown in the caller's thread
        warnings.simplefilter("always")
        found = await asyncio.to_thread(look)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return found


def replay_output(sink: EventSink, entry: Entry) -> None:
    """Tell the VM what the skipped boot printed and reported, before the restored guest goes on."""
    if text := entry.path(CONSOLE_FILE).read_bytes():  # both files are in every entry (store writes them)
        sink.console_data(text)
    for event in json.loads(entry.path(BOOT_EVENTS_FILE).read_text()):
        sink.boot_event(BootEvent(**event))


async def start(vm: Cached, sink: EventSink, found: Plan) -> bool:
    """Start from the plan's entry (after ``replay_output``); False if the backend refused it and
    booted normally instead (the entry is discarded, and this boot rebuilds it)."""
    assert found.entry is not None
    if await vm.runtime.start_from(sink, found.entry.folder):
        return True
    found.store.discard(found.key, f"boot cache entry {found.key} was refused by the backend; "
                                   "it is discarded and rebuilt from this boot")
    found.entry, found.building = None, await asyncio.to_thread(found.store.building, found.key)
    return False


async def store(vm: Cached, found: Plan, console_mark: int, boot_events_mark: int, boot_s: float) -> int | None:
    """At the ready moment: write the entry (the VM pauses for it); its size, or None if it failed.
    The caller releases the plan's lock (``Plan.release``) whatever happens."""
    assert found.building is not None
    folder = found.building.folder
    console = vm.console
    text = console.text[max(0, console_mark - console.dropped_chars):]
    events = [asdict(e) for e in vm.boot_events[boot_events_mark:]]
    try:
        await asyncio.wait_for(vm.runtime.save_ready_state(folder), STORE_TIMEOUT)

        def write() -> int:
            (folder / CONSOLE_FILE).write_bytes(text.encode())
            (folder / BOOT_EVENTS_FILE).write_text(json.dumps(events))
            entry = found.building.commit({"guest": vm.guest.name, "boot_s": boot_s, "ready": vm.guest.ready})  # type: ignore[union-attr]
            return entry.size
        return await asyncio.to_thread(write)
    except (TimeoutError, PetriError, OSError) as e:
        found.building.abort()
        warnings.warn(f"boot cache: could not store {vm.name}'s ready state ({e}); the VM runs on", stacklevel=2)
        return None


async def freshen(qga: Any) -> list[str]:
    """After a hit, through qemu-ga (a ``QgaClient``): step the guest clock to the host's and stir
    its RNG, so siblings started from one entry differ. Returns what was done (best effort)."""
    done = []
    try:
        await qga.execute("guest-set-time", {"time": time.time_ns()}, timeout=10.0)
        done.append("clock set to the host's")
    except PetriError:
        pass
    try:
        await qga.write_file("/dev/urandom", os.urandom(STIR_BYTES), timeout=10.0)
        done.append(f"{STIR_BYTES} random bytes written to /dev/urandom")
    except PetriError:
        pass
    return done
