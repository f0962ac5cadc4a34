"""Finding petri test folders in a result tree and reading each into plain column lists.

Plain Python on purpose (no pandas): this is what a worker process runs, so it must be
cheap to import and its output cheap to send back. ``petri_results`` turns the
columns into a frame. Bad input never stops a read: a damaged line, a missing
attachment or an overlong line becomes a row saying so, and the rest is kept.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .petri_format import (
    FAILED,
    FAILED_UNSTABLE,
    JOB_SUFFIX,
    LOG,
    PASSED,
    RUN_FOLDER,
    TEST,
    TEST_FILES,
    attachment_source,
    halt_from_failure,
    halt_from_line,
    parse_line,
    source_kind,
    test_from_folder,
)

#: A petri.jsonl line longer than this is cut: its head is kept and the row says how long it was.
MAX_LINE = 1 << 20
#: Characters of a cut line's message that are kept.
MAX_DETAIL = 1 << 16
#: Bytes of a marker's failure text that are read.
MAX_ERROR = 1 << 20
ROW_FIELDS = ("wall_text", "wall_ns", "t", "source", "kind", "reason", "detail", "data", "level", "petri_source")
TEST_FIELDS = ("vm", "run", "run_id", "attempt", "job", "test", "outcome", "error", "rows")
_PNG = b"\x89PNG\r\n\x1a\n"
_HEAD_FIELD = re.compile(rb'"(timestamp|source|severity)":"([^"\\]{0,200})"')
_PNG_DATA = re.compile(r'("png":\s*")(")')


@dataclass(frozen=True)
class Found:
    """One test folder and where it sits in a CI tree (``<run_id>_<attempt>/<job>-vmm-tests-logs/<folder>``)."""

    path: str
    names: frozenset[str]
    run_id: str | None
    attempt: int | None
    job: str | None
    run: str


def find(root: Path) -> list[Found]:
    """Every petri test folder at or under ``root`` (a folder holding petri.jsonl, petri.test or a marker)."""
    found: list[tuple[str, frozenset[str]]] = []
    stack = [str(root)]
    while stack:
        here = stack.pop()
        try:
            with os.scandir(here) as it:
                entries = list(it)
        except OSError:
            continue
        names = frozenset(e.name for e in entries)
        if not names.isdisjoint(TEST_FILES):
            found.append((here, names))
            continue
        stack.extend(sorted((e.path for e in entries if e.is_dir(follow_symlinks=False)), reverse=True))
    return [_place(path, names) for path, names in found]


def _place(path: str, names: frozenset[str]) -> Found:
    folder = Path(path)
    parent, grand = folder.parent.name, folder.parent.parent.name
    run_id = attempt = job = None
    if RUN_FOLDER.match(grand) and folder.parent.parent != folder.parent:
        run_id, attempt = grand.split("_")
        job = parent.removesuffix(JOB_SUFFIX)
        run = f"{grand}/{parent}/{folder.name}"
    elif parent.endswith(JOB_SUFFIX):
        job, run = parent.removesuffix(JOB_SUFFIX), f"{parent}/{folder.name}"
    elif RUN_FOLDER.match(parent):
        run_id, attempt = parent.split("_")
        run = f"{parent}/{folder.name}"
    else:
        run = folder.name
    return Found(path, names, run_id, int(attempt) if attempt else None, job, run)


def read_folders(found: list[Found]) -> dict[str, list[Any]]:
    """The rows of many test folders as columns: ROW_FIELDS per row, TEST_FIELDS per test."""
    out: dict[str, list[Any]] = {f: [] for f in (*ROW_FIELDS, *TEST_FIELDS)}
    for one in found:
        read_folder(one, out)
    return out


def _read_text(path: Path, limit: int) -> str:
    with open(path, "rb") as f:
        raw = f.read(limit + 1)
    text = raw[:limit].decode("utf-8", errors="replace")
    return text + f" … [cut at {limit} bytes]" if len(raw) > limit else text


def read_folder(one: Found, out: dict[str, list[Any]]) -> None:
    """Append one test folder's rows (and its test's facts) to ``out``."""
    folder = Path(one.path)
    test = _read_text(folder / TEST, 4096).strip() if TEST in one.names else ""
    test = test or test_from_folder(folder.name)
    outcome, error = "incomplete", None
    if PASSED in one.names:
        outcome = "passed"
    elif FAILED in one.names:
        outcome, error = "failed", _read_text(folder / FAILED, MAX_ERROR)
    elif FAILED_UNSTABLE in one.names:
        outcome, error = "failed_unstable", _read_text(folder / FAILED_UNSTABLE, MAX_ERROR)
    rows = _Rows(out, folder)
    if LOG in one.names:
        rows.read_log(folder / LOG)
    if error and not rows.ours:
        rows.failure_halt(error)
    if rows.count == 0:  # keep the test in the frame: it started (or ended) but logged nothing
        marker = next((folder / n for n in (TEST, PASSED, FAILED, FAILED_UNSTABLE) if n in one.names), folder)
        rows.add(None, "runtime", "no log", f"no {LOG}: the test logged nothing ({outcome})", "", "WARN", "petri",
                 wall_ns=_mtime_ns(marker), t=0.0)
    vm, run = rows.ours or (test, one.run)
    for field, value in zip(TEST_FIELDS, (vm, run, one.run_id, one.attempt, one.job, test, outcome, error,
                                          rows.count), strict=True):
        out[field].append(value)


class _Rows:
    """Rows of one test folder being appended to the shared columns."""

    def __init__(self, out: dict[str, list[Any]], folder: Path) -> None:
        self.out, self.folder = out, folder
        self.count = 0
        self.last_wall: str | None = None
        self.halts: set[str] = set()
        #: (vm, run) of our own export, once a line carries a petri_nb object.
        self.ours: tuple[str, str] | None = None

    def add(self, wall_text: str | None, source: str, kind: str, detail: str, data: str, level: str,
            petri_source: str, reason: str | None = None, wall_ns: int | None = None, t: float | None = None) -> None:
        for field, value in zip(ROW_FIELDS, (wall_text, wall_ns, t, source, kind, reason, detail, data, level,
                                             petri_source), strict=True):
            self.out[field].append(value)
        self.count += 1

    def read_log(self, log: Path) -> None:
        try:
            f = open(log, "rb")  # noqa: SIM115 - closed below; lines are read with a length cap
        except OSError as e:
            self.add(None, "runtime", "bad file", f"{LOG}: cannot be read: {e.strerror or e}", "", "ERROR", "petri")
            return
        with f:
            n = 0
            while line := f.readline(MAX_LINE):
                n += 1
                if len(line) == MAX_LINE and not line.endswith(b"\n"):
                    self.long_line(n, line, len(line) + _skip_rest(f))
                elif line.strip():
                    self.line(n, line)

    def line(self, n: int, raw: bytes) -> None:
        try:
            entry = json.loads(raw)
            if not isinstance(entry, dict) or not isinstance(entry.get("timestamp"), str):
                raise ValueError("no timestamp")
        except ValueError as e:
            text = raw.decode("utf-8", errors="replace").strip()
            self.add(self.last_wall, "runtime", "bad line", f"{LOG}:{n}: not a petri log line ({e}): {text[:200]}",
                     "", "ERROR", "petri")
            return
        wall = entry["timestamp"]
        self.last_wall = wall
        ours = entry.get("petri_nb")
        if isinstance(ours, dict):
            self.our_line(n, entry, ours)
        elif "attachment" in entry:
            self.attachment(n, wall, str(entry["attachment"]))
        else:
            self.log_line(wall, str(entry.get("source") or "unknown"), str(entry.get("severity") or "INFO"),
                          str(entry.get("message") or ""))

    def log_line(self, wall: str, source: str, severity: str, message: str, data: str = "") -> None:
        level, text, kernel_t = parse_line(severity, message)
        if kernel_t is not None:
            data = json.dumps({"kernel_time": kernel_t}, separators=(",", ":"))
        petri = source == "petri"
        self.add(wall, "runtime" if petri else "console", "log" if petri else "line", text, data, level, source)
        halt = halt_from_line(text) if petri else None
        if halt:
            self.halts.add(halt[0])
            self.add(wall, "halt", "halt", halt[1], json.dumps({"from": LOG}), level, source, reason=halt[0])

    def long_line(self, n: int, head: bytes, size: int) -> None:
        fields = {k.decode(): v.decode("utf-8", "replace") for k, v in _HEAD_FIELD.findall(head[:1024])}
        start = head.find(b'"message":"')
        message = head[start + 11:start + 11 + MAX_DETAIL * 2].decode("utf-8", "replace") if start >= 0 else ""
        message = message[:MAX_DETAIL] + f" … [cut: {LOG}:{n} is {size} bytes, the first {MAX_DETAIL} characters kept]"
        wall = fields.get("timestamp") or self.last_wall
        self.last_wall = wall
        self.log_line(wall or "", fields.get("source", "unknown"), fields.get("severity", "INFO"), message,
                      json.dumps({"cut_bytes": size}))

    def attachment(self, n: int, wall: str, name: str, ours: dict[str, Any] | None = None) -> str | None:
        """Add an attachment row (unless ``ours``); returns the PNG as base64 for a screen."""
        source, kind = attachment_source(name)
        path = self.folder / name
        base = {"path": str(path), "attachment": name}
        problem = None
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            problem, path = "is not a file name in the test folder", None
        else:
            try:
                blob = path.read_bytes()
            except OSError as e:
                problem = "is missing" if isinstance(e, FileNotFoundError) else f"cannot be read ({e.strerror})"
        if problem is None and source == "screen" and not (blob[:8] == _PNG and len(blob) >= 24):
            problem = "is not a PNG"
        if problem:
            self.add(wall, source, "bad file", f"{name}: attachment named in {LOG}:{n} {problem}",
                     json.dumps(base), "WARN", "attachment")
            return None
        if ours is not None:
            return base64.b64encode(blob).decode() if source == "screen" else None
        if source == "screen":
            w, h = int.from_bytes(blob[16:20], "big"), int.from_bytes(blob[20:24], "big")
            data = {"png": base64.b64encode(blob).decode(), "width": w, "height": h, **base}
            detail = f"{name}: {w}x{h}, {len(blob)} bytes"
        else:
            data, detail = {**base, "bytes": len(blob)}, f"{name}: {len(blob)} bytes"
        self.add(wall, source, kind, detail, json.dumps(data, separators=(",", ":")), "INFO", "attachment")
        return None

    def our_line(self, n: int, entry: dict[str, Any], ours: dict[str, Any]) -> None:
        """A line of our own export: its petri_nb object has the row exactly."""
        data = str(ours.get("data") or "")
        if "attachment" in entry:
            png = self.attachment(n, entry["timestamp"], str(entry["attachment"]), ours)
            if png is None and ours.get("source") == "screen":
                return  # the bad-file row says what is wrong with the screenshot
            data = _PNG_DATA.sub(lambda m: m.group(1) + (png or "") + m.group(2), data, count=1)
        self.ours = self.ours or (str(ours.get("vm", "")), str(ours.get("run", "")))
        self.add(None, str(ours.get("source") or entry.get("source") or "runtime"), str(ours.get("kind", "")),
                 str(ours.get("detail", "")), data, str(entry.get("severity") or "INFO"),
                 str(entry.get("source") or "attachment"), reason=ours.get("reason"), wall_ns=int(ours["wall_ns"]),
                 t=float(ours["t"]))

    def failure_halt(self, error: str) -> None:
        """A typed halt row from a failure such as ``Expected PowerOff, got PetriHaltReasonDetail {...}``."""
        halt = halt_from_failure(error)
        if halt is None or halt[0] in self.halts:
            return
        reason, detail, expected = halt
        self.add(self.last_wall, "halt", "halt", detail, json.dumps({"from": "failure", "expected": expected}),
                 "ERROR", "petri", reason=reason)


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _skip_rest(f: Any) -> int:
    """Read past the rest of an overlong line, counting its bytes, never holding more than MAX_LINE."""
    size = 0
    while chunk := f.readline(MAX_LINE):
        size += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return size


def kinds(sources: list[str]) -> list[str]:
    """The source kind of each petri source name (few distinct names: looked up once each)."""
    table = {s: source_kind(s) for s in set(sources)}
    return [table[s] for s in sources]
