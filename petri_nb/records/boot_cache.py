"""The boot cache's store: folders of files under a key, written atomically, checked when read,
bounded in size with least-recently-used eviction.

A key is the digest of everything that shapes a guest (the backend says what that is); an
entry is what the backend saved at the ready moment plus a manifest with each file's size
and SHA-256, so a damaged entry is found before anything starts from it. Entries are
built in a hidden folder and renamed into place, so a crash never leaves half an entry;
a lock file per key makes concurrent launches of one guest build it once (the others boot
normally). This module knows nothing of QEMU or of VMs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import BadArgument

#: Bumped when what an entry holds changes: older entries are then misses.
FORMAT = 1
MANIFEST = "entry.json"
DEFAULT_MAX_MIB = 4096
#: Files up to this size are checksummed at lookup; larger ones (a RAM image) by ``verify_large``,
#: which the reader runs while it loads them, so the check costs no time to ready.
CHECK_AT_LOOKUP = 16 << 20


def cache_root() -> Path:
    """``$PETRI_NB_BOOT_CACHE``, else ``$XDG_CACHE_HOME/petri_nb/boot`` (``~/.cache`` when unset)."""
    if override := os.environ.get("PETRI_NB_BOOT_CACHE"):
        return Path(override)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "petri_nb" / "boot"


def max_bytes() -> int:
    """The store's size bound: ``$PETRI_NB_BOOT_CACHE_MAX_MIB`` (default 4096 MiB)."""
    text = os.environ.get("PETRI_NB_BOOT_CACHE_MAX_MIB", str(DEFAULT_MAX_MIB))
    try:
        mib = float(text)
    except ValueError:
        raise BadArgument(f"PETRI_NB_BOOT_CACHE_MAX_MIB must be a number of MiB, not {text!r}") from None
    if not mib >= 0:
        raise BadArgument(f"PETRI_NB_BOOT_CACHE_MAX_MIB must be 0 or more, not {text!r}")
    return int(mib * (1 << 20))


def key_of(material: dict[str, Any]) -> str:
    """The entry key for ``material`` (JSON-able; what shapes the guest)."""
    text = json.dumps({"format": FORMAT, **material}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify_large(folder: Path) -> None:
    """Checksum an entry's files too large for lookup to check; ValueError naming a damaged one."""
    try:
        _check_sums(folder, json.loads((folder / MANIFEST).read_text())["files"], large=True)
    except ValueError as e:
        raise ValueError(f"boot cache entry {folder.name}: {e}") from None


def _check_sums(folder: Path, files: dict[str, Any], *, large: bool) -> None:
    """Checksum the files over CHECK_AT_LOOKUP bytes (``large``) or the others; ValueError naming a bad one."""
    for name, want in files.items():
        if (want["size"] > CHECK_AT_LOOKUP) == large and _digest(folder / name) != want["sha256"]:
            raise ValueError(f"{name} does not match its checksum")


@dataclass(frozen=True)
class Entry:
    """A checked entry: its folder, manifest (``files``, ``meta``, ``created``, ``hits``...)."""

    key: str
    folder: Path
    manifest: dict[str, Any]

    def path(self, name: str) -> Path:
        return self.folder / name

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.manifest.get("meta", {}))

    @property
    def size(self) -> int:
        return sum(int(f["size"]) for f in self.manifest["files"].values())


class Building:
    """An entry being written: put files in ``folder``, then ``commit``; dropped if not committed."""

    def __init__(self, store: BootCache, key: str, lock: Any) -> None:
        self.store, self.key, self._lock = store, key, lock
        self.folder = store.root / f".building-{key}-{uuid.uuid4().hex[:8]}"
        self.folder.mkdir(mode=0o700)

    def commit(self, meta: dict[str, Any]) -> Entry:
        """Write the manifest and move the folder into place (atomically); evict to the bound."""
        files = {p.name: {"size": p.stat().st_size, "sha256": _digest(p)}
                 for p in sorted(self.folder.iterdir()) if p.is_file()}
        now = time.time()
        manifest = {"format": FORMAT, "key": self.key, "created": now, "used": now, "hits": 0,
                    "files": files, "meta": meta}
        _write_json(self.folder / MANIFEST, manifest)
        final = self.store.root / self.key
        shutil.rmtree(final, ignore_errors=True)  # a damaged one, discarded by lookup meanwhile
        os.rename(self.folder, final)
        self.store.evict(keep=self.key)
        return Entry(self.key, final, manifest)

    def abort(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def release(self) -> None:
        self.abort()
        self._lock.close()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)


class BootCache:
    """The store at ``root`` (default ``cache_root()``), bounded by ``limit`` bytes."""

    def __init__(self, root: Path | None = None, limit: int | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root()
        self.limit = max_bytes() if limit is None else limit

    def _ensure(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def lookup(self, key: str) -> Entry | None:
        """The entry for ``key`` if it is whole; a damaged one is discarded with a warning."""
        folder = self.root / key
        if not folder.is_dir():
            return None
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
            if manifest.get("format") != FORMAT or manifest.get("key") != key:
                raise ValueError(f"format {manifest.get('format')!r}, key {manifest.get('key')!r}")
            for name, want in manifest["files"].items():
                if (size := (folder / name).stat().st_size) != want["size"]:
                    raise ValueError(f"{name} has {size} bytes, not {want['size']}")
            _check_sums(folder, manifest["files"], large=False)
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.discard(key, f"boot cache entry {key} is damaged ({e}); it is discarded and rebuilt")
            return None
        manifest["used"], manifest["hits"] = time.time(), int(manifest.get("hits", 0)) + 1
        with contextlib.suppress(OSError):  # a read-only store still serves its entries
            _write_json(folder / MANIFEST, manifest)
        return Entry(key, folder, manifest)

    def discard(self, key: str, why: str) -> None:
        """Remove entry ``key`` and say why (a warning: the launch goes on with a normal boot)."""
        warnings.warn(why, stacklevel=3)
        shutil.rmtree(self.root / key, ignore_errors=True)

    def building(self, key: str) -> Building | None:
        """Permission to build entry ``key``, or None when another launch is building it now."""
        self._ensure()
        lock = open(self.root / f".lock-{key}", "w")  # noqa: SIM115 (held until the build ends)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            return None
        return Building(self, key, lock)

    def entries(self) -> list[Entry]:
        """Whole entries, most recently used first (not checked: see lookup)."""
        found = []
        for folder in self.root.iterdir() if self.root.is_dir() else ():
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            with contextlib.suppress(OSError, ValueError):
                manifest = json.loads((folder / MANIFEST).read_text())
                found.append(Entry(folder.name, folder, manifest))
        return sorted(found, key=lambda e: -float(e.manifest.get("used", 0)))

    def table(self) -> pd.DataFrame:
        """One row per entry, most recently used first: what ``petri-nb cache ls`` prints."""
        rows = [{"key": e.key, "guest": e.meta.get("guest"), "MiB": round(e.size / (1 << 20), 1),
                 "boot_s": e.meta.get("boot_s"), "hits": int(e.manifest.get("hits", 0)),
                 "created": pd.Timestamp(float(e.manifest.get("created", 0)), unit="s").floor("s"),
                 "used": pd.Timestamp(float(e.manifest.get("used", 0)), unit="s").floor("s")}
                for e in self.entries()]
        return pd.DataFrame(rows, columns=["key", "guest", "MiB", "boot_s", "hits", "created", "used"])

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least recently used entries (never ``keep``) until the store fits its bound."""
        entries = self.entries()
        total = sum(e.size for e in entries)
        removed = []
        for entry in reversed(entries):
            if total <= self.limit:
                break
            if entry.key == keep:
                continue
            shutil.rmtree(entry.folder, ignore_errors=True)
            total -= entry.size
            removed.append(entry.key)
        return removed

    def clear(self) -> int:
        """Remove every entry (not ones being built right now); returns how many."""
        entries = self.entries()
        for entry in entries:
            shutil.rmtree(entry.folder, ignore_errors=True)
        return len(entries)


@contextlib.contextmanager
def build(store: BootCache, key: str) -> Iterator[Building | None]:
    """``with build(store, key) as b:`` b is None when another launch builds it; never left locked."""
    building = store.building(key)
    try:
        yield building
    finally:
        if building is not None:
            building.release()
