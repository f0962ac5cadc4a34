"""Interop with petri's per-test log directories, so petri's own log viewer can open our runs.

A petri test directory holds ``petri.jsonl`` (one JSON object per line with
``timestamp``, ``source``, ``severity`` and ``message``), ``petri.test`` (the test
name, written when the test starts) and a result marker: ``petri.passed``, or
``petri.failed`` whose text is the error. We write the same layout; each line
also carries a ``petri_nb`` object with the row's own columns, so importing our
export gives the original timeline back, and a foreign petri log imports too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from ..errors import PetriError
from ..records.persist import _atomic_write
from ..records.timeline import COLUMNS, conform

LOG = "petri.jsonl"
TEST = "petri.test"
PASSED = "petri.passed"
FAILED = "petri.failed"
#: Halts that mean the test failed (a power-off, reset or hibernate may be the point of a test).
FAILING_HALTS = ("TRIPLE_FAULT", "PANIC", "OTHER")


def severity(source: str, kind: str, reason: str | None, data: str) -> str:
    """petri's severity for a row: failures are ERROR, resets and save problems WARN, the rest INFO."""
    if source == "halt":
        return "ERROR" if reason in FAILING_HALTS else "WARN" if reason == "RESET" else "INFO"
    if source == "runtime" and (kind == "gone" or '"outcome":"error"' in (data or "")):
        return "ERROR"
    if kind.endswith("failed"):
        return "WARN"
    return "INFO"


def _message(kind: str, reason: str | None, detail: str) -> str:
    head = f"{kind} {reason}" if reason else kind
    return f"{head}: {detail}" if detail else head


def export_petri_log(frame: pd.DataFrame, directory: str | os.PathLike[str], test_name: str | None = None,
                     passed: bool | None = None) -> Path:
    """Write one run's timeline as a petri test directory; returns it.

    ``passed=None`` decides from the rows: the test failed if any row is ERROR
    (a triple fault, panic or unexplained halt, a failed call, a lost VM).
    """
    if not isinstance(frame, pd.DataFrame) or not set(COLUMNS) <= set(frame.columns):
        raise PetriError("export_petri_log() needs a timeline frame (vm.timeline() or read_timelines())")
    if frame["run"].nunique() > 1:
        raise PetriError(f"export_petri_log() writes one run per directory; the frame has {frame['run'].nunique()} "
                         "runs: export each frame.groupby('run') group to its own directory")
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PetriError(f"cannot create petri log directory {out}: {e.strerror or e}") from e
    name = test_name or (str(frame["vm"].iloc[0]) if len(frame) else out.name)
    lines, errors = [], []
    for row in frame.itertuples(index=False):
        reason = None if pd.isna(row.reason) else str(row.reason)
        source, kind, detail, data = str(row.source), str(row.kind), str(row.detail), str(row.data or "")
        sev = severity(source, kind, reason, data)
        message = _message(kind, reason, detail)
        if sev == "ERROR":
            errors.append(message)
        lines.append(json.dumps({
            "timestamp": row.wall.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "source": source,
            "severity": sev,
            "message": message,
            "petri_nb": {"vm": row.vm, "run": row.run, "t": row.t, "wall_ns": row.wall.value, "kind": kind,
                         "reason": reason, "detail": detail, "data": data},
        }))
    ok = not errors if passed is None else passed
    _atomic_write(out / TEST, lambda tmp: tmp.write_text(name))
    _atomic_write(out / LOG, lambda tmp: tmp.write_text("".join(line + "\n" for line in lines)))
    for stale in (PASSED, FAILED):
        (out / stale).unlink(missing_ok=True)
    if ok:
        _atomic_write(out / PASSED, lambda tmp: tmp.write_text(name))
    else:
        _atomic_write(out / FAILED, lambda tmp: tmp.write_text(errors[0] if errors else "failed"))
    return out


def read_petri_log(directory: str | os.PathLike[str]) -> pd.DataFrame:
    """A petri test directory (ours or petri's own) as a timeline frame.

    Foreign lines map ``source == "petri"`` to ``runtime`` and every other source
    (guest, firmware and paravisor logs) to ``console``, keeping petri's source name
    in ``kind`` and its severity in ``data``. ``frame.attrs`` has ``test``,
    ``outcome`` (passed, failed or incomplete) and ``error``.
    """
    path = Path(directory)
    log = path / LOG
    if not log.is_file():
        raise PetriError(f"{path} is not a petri test directory (no {LOG})")
    test = (path / TEST).read_text().strip() if (path / TEST).exists() else path.name
    rows = []
    first_ns = None
    for n, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            ours = entry.get("petri_nb")
            wall = pd.Timestamp(entry["timestamp"])
            wall = wall.tz_localize("UTC") if wall.tzinfo is None else wall.tz_convert("UTC")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise PetriError(f"{log}:{n}: not a petri log line ({e})") from None
        if isinstance(ours, dict):
            rows.append({**ours, "wall": pd.Timestamp(ours["wall_ns"], tz="UTC"), "source": entry.get("source")})
            continue
        first_ns = wall.value if first_ns is None else first_ns
        source = str(entry.get("source", ""))
        rows.append({
            "vm": test, "run": path.name, "t": (wall.value - first_ns) / 1e9, "wall": wall,
            "source": "runtime" if source == "petri" else "console", "kind": source, "reason": None,
            "detail": str(entry.get("message", "")).rstrip("\n"),
            "data": json.dumps({"severity": entry.get("severity")}),
        })
    frame = conform(pd.DataFrame(rows, columns=list(COLUMNS)))
    frame.attrs["test"] = test
    if (path / PASSED).exists():
        frame.attrs["outcome"], frame.attrs["error"] = "passed", None
    elif (path / FAILED).exists():
        frame.attrs["outcome"], frame.attrs["error"] = "failed", (path / FAILED).read_text()
    else:
        frame.attrs["outcome"], frame.attrs["error"] = "incomplete", None
    return frame
