"""Run metadata: what a run ran on (host, QEMU version, accel, firmware, guest, petri_nb, Python).

Runs are compared across machines and releases (``petri_nb.analysis.compare``), so each run
records the facts that can explain a difference. The VM fills ``Timeline.meta`` at
launch from this module and from its runtime's ``facts``; ``persist`` writes it to
the run directory's ``meta.json`` and ``read_timelines`` puts it back as columns.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import platform
import socket
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

#: The metadata columns ``read_timelines`` adds after the timeline schema's columns (all ``string``).
META_COLUMNS = ("host", "qemu_version", "accel", "firmware", "guest_hash", "petri_nb_version", "git_commit",
                "boot_cache")
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # petri_nb/
SOURCE_TREE = PACKAGE_DIR.parent


@functools.cache
def petri_nb_version() -> str | None:
    try:
        return metadata.version("petri_nb")
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def git_commit() -> str | None:
    """HEAD of the petri_nb source tree when it is a git checkout (once per process: it forks git)."""
    if not (SOURCE_TREE / ".git").exists():  # a directory, or a file in a worktree
        return None
    try:
        proc = subprocess.run(["git", "-C", str(SOURCE_TREE), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and commit else None


def _canonical(value: Any) -> Any:
    """A JSON-able form of a guest description field that is the same on every machine."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        # A preset's files live in the installed package: name them relative to it, so the
        # same preset hashes alike wherever petri_nb is installed.
        return f"petri_nb/{value.relative_to(PACKAGE_DIR)}" if value.is_relative_to(PACKAGE_DIR) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if callable(value):  # e.g. a liveness probe: its name, not its address
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__name__)}"
    return value


def guest_hash(guest: Any) -> str:
    """A short stable hash of a guest description (a ``Guest``): equal descriptions, equal hashes."""
    text = json.dumps(_canonical(guest), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@functools.cache
def process_facts() -> dict[str, Any]:
    """What every run of this process shares. The first call forks git: call it off the event loop."""
    return {"host": socket.gethostname(), "petri_nb_version": petri_nb_version(), "git_commit": git_commit(),
            "python_version": platform.python_version()}


def describe_run(guest: Any, facts: Mapping[str, Any], process: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata of a run of ``guest`` on a runtime reporting ``facts`` (``Runtime.facts``) in a
    process described by ``process`` (``process_facts()``)."""
    return {
        **process,
        "qemu_version": facts.get("qemu_version"),
        "accel": facts.get("accel"),
        "firmware": getattr(guest, "firmware", None),
        "guest_hash": guest_hash(guest),
        **{k: v for k, v in facts.items() if k not in META_COLUMNS},
    }


def with_meta_columns(frame: pd.DataFrame, source: Mapping[str, Any] | pd.DataFrame | None) -> pd.DataFrame:
    """``frame`` plus the META_COLUMNS (``string``): constants from a meta dict (one run's
    ``meta.json``), or copied from a frame read from disk that carries them (fleet Parquet
    files); missing values are nulls."""
    n = len(frame)
    columns = {}
    for col in META_COLUMNS:
        if isinstance(source, pd.DataFrame):
            values = source[col].to_numpy() if col in source else [None] * n
        else:
            value = (source or {}).get(col)
            values = [None if value is None else str(value)] * n
        columns[col] = pd.array(values, dtype="string")
    return frame.assign(**columns)
