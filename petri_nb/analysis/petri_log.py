"""Our runs written as petri test folders, in petri's own layout, and read back through read_petri_results.

A test folder holds ``petri.test`` (the test name, written when the test starts),
``petri.jsonl`` (one JSON object per line: ``timestamp``, ``source``, ``severity``,
``message``; or ``timestamp`` and ``attachment`` naming a file beside it), one
``<source>.log`` per source with that source's text, and a result marker: an empty
``petri.passed``, or ``petri.failed`` holding the error. CI puts the folders at
``<run_id>_<attempt>/<job>-vmm-tests-logs/<test with :: as __>/``; so does
``export_petri_results``. Each line also carries a ``petri_nb`` object with the row's
own columns, so reading an export gives the original timeline back. (logview reads
only from its blob store, so it can't open these folders; our reader can.)
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import pandas as pd

from ..errors import PetriError
from ..records.persist import _atomic_write
from ..records.timeline import COLUMNS
from .petri_format import FAILED, FAILED_UNSTABLE, JOB_SUFFIX, LOG, PASSED, TEST, test_folder

#: Halts that mean the test failed (a power-off, reset or hibernate may be the point of a test).
FAILING_HALTS = ("TRIPLE_FAULT", "PANIC", "OTHER")
_PNG_DATA = re.compile(r'("png":\s*")([A-Za-z0-9+/=]*)(")')


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


def _attachment_name(used: dict[str, int], name: str) -> str:
    """petri's rule for a repeated attachment name: ``screenshot.png``, then ``screenshot_1.png``, ..."""
    n = used.get(name, 0)
    used[name] = n + 1
    stem, dot, ext = name.rpartition(".")
    return name if n == 0 else f"{stem}_{n}{dot}{ext}"


def export_petri_log(frame: pd.DataFrame, directory: str | os.PathLike[str], test_name: str | None = None,
                     passed: bool | None = None) -> Path:
    """Write one run's timeline as a petri test folder; returns it.

    ``passed=None`` decides from the rows: the test failed if any row is ERROR
    (a triple fault, panic or unexplained halt, a failed call, a lost VM).
    Screen rows become PNG files beside the log, named as petri names screenshots.
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
    lines, errors, logs, used = [], [], {}, {}
    for row in frame[list(COLUMNS)].itertuples(index=False):
        reason = None if pd.isna(row.reason) else str(row.reason)
        source, kind, detail = str(row.source), str(row.kind), "" if pd.isna(row.detail) else str(row.detail)
        data = "" if pd.isna(row.data) else str(row.data)
        sev = severity(source, kind, reason, data)
        message = _message(kind, reason, detail)
        ours = {"vm": row.vm, "run": row.run, "t": row.t, "wall_ns": row.wall.value, "source": source,
                "kind": kind, "reason": reason, "detail": detail, "data": data}
        stamp = row.wall.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        png = _PNG_DATA.search(data) if source == "screen" else None
        if png:
            file = _attachment_name(used, "screenshot.png")
            blob = base64.b64decode(png.group(2))
            _atomic_write(out / file, lambda tmp, b=blob: tmp.write_bytes(b))
            ours["data"] = data[:png.start(2)] + data[png.end(2):]
            lines.append(json.dumps({"timestamp": stamp, "attachment": file, "petri_nb": ours}))
            continue
        if sev == "ERROR":
            errors.append(message)
        logs.setdefault(source, []).append(message)
        lines.append(json.dumps({"timestamp": stamp, "source": source, "severity": sev, "message": message,
                                 "petri_nb": ours}))
    ok = not errors if passed is None else passed
    _atomic_write(out / TEST, lambda tmp: tmp.write_text(name))
    _atomic_write(out / LOG, lambda tmp: tmp.write_text("".join(line + "\n" for line in lines)))
    for source, texts in logs.items():
        _atomic_write(out / f"{source}.log", lambda tmp, t=texts: tmp.write_text("".join(x + "\n" for x in t)))
    for stale in (PASSED, FAILED, FAILED_UNSTABLE):
        (out / stale).unlink(missing_ok=True)
    if ok:
        _atomic_write(out / PASSED, lambda tmp: tmp.write_bytes(b""))
    else:
        _atomic_write(out / FAILED, lambda tmp: tmp.write_text(errors[0] if errors else "failed"))
    return out


def export_petri_results(frame: pd.DataFrame, root: str | os.PathLike[str], run_id: int | str, attempt: int = 1,
                         job: str = "petri-nb") -> Path:
    """Write every run of ``frame`` as one CI run's test folders (``<run_id>_<attempt>/<job>-vmm-tests-logs/``,
    each test named by its ``vm``); returns the run folder."""
    if not isinstance(frame, pd.DataFrame) or "vm" not in frame.columns or "run" not in frame.columns:
        raise PetriError("export_petri_results() needs a timeline frame (vm.timeline() or read_timelines())")
    if not str(run_id).isdigit() or isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise PetriError(f"a CI run is <run_id>_<attempt> with a numeric run id and attempt >= 1, not "
                         f"{run_id!r}_{attempt!r}")
    runs = {str(run): rows for run, rows in frame.groupby("run", sort=False, observed=True)}
    names = {run: str(rows["vm"].iloc[0]) for run, rows in runs.items()}
    twice = sorted({n for n in names.values() if list(names.values()).count(n) > 1})
    if twice:
        raise PetriError(f"one CI run holds each test once; {', '.join(twice)} ran more than once: export each "
                         "run with its own run_id")
    folder = Path(root) / f"{run_id}_{attempt}" / f"{job}{JOB_SUFFIX}"
    for run, rows in runs.items():
        export_petri_log(rows, folder / test_folder(names[run]), test_name=names[run])
    return folder.parent


def read_petri_log(directory: str | os.PathLike[str]) -> pd.DataFrame:
    """One petri test folder (ours or petri's own) as a timeline frame, the schema's columns only.

    ``frame.attrs`` has ``test``, ``outcome`` (passed, failed, failed_unstable or
    incomplete) and ``error``. ``read_petri_results`` keeps the rest of petri's columns.
    """
    from .petri_results import read_petri_results

    full = read_petri_results(directory, workers=1)
    if full["run"].nunique() != 1:
        raise PetriError(f"{directory} holds {full['run'].nunique()} petri tests; read_petri_log() reads one "
                         "(read_petri_results() reads many)")
    frame = full[list(COLUMNS)].copy()
    error = full["error"].iloc[0]
    frame.attrs = {"test": str(full["test"].iloc[0]), "outcome": str(full["outcome"].iloc[0]),
                   "error": None if pd.isna(error) else str(error)}
    return frame
