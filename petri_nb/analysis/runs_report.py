"""One self-contained HTML file about many runs: what each ran on, swimlanes, every event, every halt's diagnosis.

For sharing a failure with someone who has no Jupyter (a bug report, a CI artifact): the
file opens from disk with no network, since images are data: URIs and the CSS and the
little filter script are inline. A Content-Security-Policy allows only that script (by
hash) and data: images, so guest text that slipped past escaping still could not run.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import os
import re
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import BadArgument, PetriError
from ..records.run_meta import META_COLUMNS, petri_nb_version
from ..runtime.validation import checked
from .runs_report_rows import THUMB_WIDTH, ScreenCache, rows_html
from .runs_report_summary import MAX_RUN_SECTIONS, run_count, summarise
from .runsets import by_run, timeline_of

#: Console lines shown per run by default; the rest (far from halts) are counted, not shown.
MAX_CONSOLE_LINES = 1000
#: Tallest swimlane figure (inches): many runs share it rather than growing the page.
MAX_FIGURE_HEIGHT = 14.0
FIGURE_DPI = 72
#: Runs whose lanes are labelled with their names; more get numbers (names would not fit).
LABELLED_LANES = 20
_ASSETS = Path(__file__).resolve().parent / "assets"
_SLUG = re.compile(r"[^A-Za-z0-9_-]")


def _asset(name: str) -> str:
    return (_ASSETS / name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _slugs(runs: list[str]) -> dict[str, str]:
    """A short id-safe name per run (its first 8 id characters), unique within the report."""
    out: dict[str, str] = {}
    for n, run in enumerate(runs):
        slug = _SLUG.sub("", run)[:8] or "run"
        out[run] = slug if slug not in out.values() else f"{slug}-{n}"
    return out


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _first(rows: pd.DataFrame, column: str) -> str:
    if column not in rows:
        return ""
    values = rows[column].dropna()
    return str(values.iloc[0]) if len(values) else ""


def _meta(runs: dict[str, pd.DataFrame]) -> tuple[dict[str, str], list[str]]:
    """Metadata all runs share (shown once), and the columns that differ between runs (shown per run)."""
    values = {col: {_first(rows, col) for rows in runs.values()} for col in META_COLUMNS}
    common = {col: next(iter(v)) for col, v in values.items() if len(v) == 1 and v != {""}}
    differing = [col for col, v in values.items() if len(v) > 1]
    return common, differing


def _started(rows: pd.DataFrame) -> str:
    if "wall" not in rows or rows["wall"].isna().all():
        return ""
    return pd.Timestamp(rows["wall"].min()).strftime("%Y-%m-%d %H:%M:%S")


def _halts(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[(rows["source"].astype(str) == "halt") & (rows["kind"] == "halt")]


def _runs_table(runs: dict[str, pd.DataFrame], slugs: dict[str, str], differing: list[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in ["#", "vm", "run", "started (UTC)", "seconds", "events", "halts",
                                                     *differing])
    body = []
    for number, (run, rows) in enumerate(runs.items(), start=1):
        reasons = _halts(rows)["reason"].fillna("?").astype(str).value_counts()
        halts = ", ".join(f"{escape(r)} ×{n}" if n > 1 else escape(r) for r, n in reasons.items())
        cells = [str(number), f'<a href="#run-{slugs[run]}">{escape(_first(rows, "vm") or run)}</a>', escape(run[:8]),
                 _started(rows), f"{rows['t'].max():.3f}" if len(rows) else "", str(len(rows)), halts,
                 *(escape(_first(rows, col)) for col in differing)]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f'<table class="runs"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _swimlanes(frame: pd.DataFrame, lanes: int) -> str:
    """plot.timeline drawn headless (a Figure of its own: the caller's pyplot backend is left alone), first run
    on top as in the runs table; past LABELLED_LANES, lanes are labelled by the table's run number."""
    from matplotlib.figure import Figure

    from .plot import timeline

    fig = Figure(figsize=(11, min(MAX_FIGURE_HEIGHT, 1.4 + 0.5 * lanes)), layout="constrained")
    ax = timeline(frame, ax=fig.subplots())
    ax.invert_yaxis()
    if lanes > LABELLED_LANES and len(ax.get_yticks()) == lanes:
        ax.set_yticks(range(lanes), [str(n) for n in range(1, lanes + 1)], fontsize=max(5, 9 - lanes // 25))
        ax.set_ylabel("run # (the table above)")
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=FIGURE_DPI)
    uri = "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")
    return f'<img class="swimlanes" alt="swimlanes: one lane per run, halts as crosses" src="{uri}">'


def _filters(frame: pd.DataFrame) -> str:
    sources = sorted({*frame["source"].dropna().astype(str).unique(), "console"})
    kinds = sorted(frame["kind"].dropna().astype(str).unique())
    boxes = "".join(f'<label><input type="checkbox" name="source" value="{escape(s)}" checked>{escape(s)}</label>'
                    for s in sources)
    options = "".join(f'<option value="{escape(k)}">{escape(k)}</option>' for k in kinds)
    return (f'<nav id="filters"><span>source:</span>{boxes}<label>kind: <select id="kind"><option value="">all'
            f'</option>{options}</select></label><label>text: <input type="search" id="text" '
            f'placeholder="filter rows"></label><span id="shown"></span></nav>')


def _run_section(run: str, rows: pd.DataFrame, slug: str, differing: list[str], budget: int | None,
                 screens: ScreenCache) -> tuple[str, int]:
    """A run's heading, facts and event table; and how many of its console lines were left out."""
    trs, hidden = rows_html(rows.reset_index(drop=True), slug, budget, screens)
    facts = [f"run {escape(run)}", _count(len(rows), "event"), _count(len(_halts(rows)), "halt")]
    facts += [f"{escape(col)} {escape(_first(rows, col))}" for col in differing if _first(rows, col)]
    if hidden:
        facts.append(f'<b class="cut">{_count(hidden, "console line")} not shown</b> (only the {budget} nearest '
                     "the halts and the end are)")
    name = escape(_first(rows, "vm") or run)
    return (f'<section class="run" id="run-{slug}"><h2>{name}</h2><p>{"; ".join(facts)}</p>'
            '<table class="events"><thead><tr><th></th><th>t (s)</th><th>source</th><th>kind</th><th>reason</th>'
            f'<th>detail</th></tr></thead><tbody>{"".join(trs)}</tbody></table></section>', hidden)


def _page(title: str, head: str, body: str) -> str:
    css, js = _asset("runs_report.css"), _asset("runs_report.js")
    policy = (f"default-src 'none'; img-src data:; style-src {_csp_hash(css)}; script-src {_csp_hash(js)}; "
              "base-uri 'none'; form-action 'none'")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
            f'<meta name="viewport" content="width=device-width"><title>{escape(title)}</title>'
            f"<style>{css}</style></head>\n<body><header>{head}</header>\n{body}\n<script>{js}</script></body></html>\n")


def _check_options(out: Any, max_console_lines: int | None, thumb_width: int) -> Path:
    if max_console_lines is not None and max_console_lines < 0:
        raise BadArgument(f"runs_report(): max_console_lines must be >= 0 or None (all), not {max_console_lines}")
    if thumb_width < 16:
        raise BadArgument(f"runs_report(): thumb_width must be at least 16 pixels, not {thumb_width}")
    path = Path(out).expanduser()
    if path.is_dir():
        raise PetriError(f"runs_report(): out {path} is a directory; give the HTML file to write")
    return path


def _head(title: str, frame: pd.DataFrame, runs: dict[str, pd.DataFrame], slugs: dict[str, str], hidden: int,
          budget: int | None, summary: str = "") -> str:
    """The title, counts, what all runs share, and one line per run with what differs."""
    common, differing = _meta(runs)
    made = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    counts = ", ".join([_count(len(runs), "run"), _count(len(frame), "event"), _count(len(_halts(frame)), "halt")])
    cut = f'<b class="cut">{_count(hidden, "console line")} not shown</b> (at most {budget} per run). '
    cut = cut if hidden else ""
    shared = "; ".join(f"{escape(k)} <code>{escape(v)}</code>" for k, v in common.items())
    return (f"<h1>{escape(title)}</h1><p>{counts}. {cut}Made {made} by petri_nb {escape(petri_nb_version() or '?')}"
            "</p>" + summary + (f"<p>All runs: {shared}</p>" if shared else "") + _runs_table(runs, slugs, differing))


@checked
def runs_report(runs: Any, out: str | os.PathLike[str], *, title: str | None = None,
                max_console_lines: int | None = MAX_CONSOLE_LINES, thumb_width: int = THUMB_WIDTH) -> Path:
    """Write one self-contained HTML report of ``runs`` to ``out``; returns its path.

    ``runs`` is what ``read_timelines`` takes (run directories, folders of them, .parquet
    files, globs, or a list of those), a timeline DataFrame or a FleetResult. At most
    ``max_console_lines`` console lines per run are shown (None: all), those nearest the
    halts first; the report says how many it left out. Screenshots are ``thumb_width`` px
    thumbnails that open to the full screen.
    """
    path = _check_options(out, max_console_lines, thumb_width)
    frame = timeline_of(runs, "runs_report() runs")
    total = run_count(frame)
    summary = ""
    if total > MAX_RUN_SECTIONS:  # thousands of runs: a summary, and sections only for the unusual ones
        frame, summary = summarise(frame, path)
    runs_by_id = by_run(frame)
    slugs = _slugs(list(runs_by_id))
    _, differing = _meta(runs_by_id)
    screens = ScreenCache(thumb_width)
    sections = [_run_section(run, rows, slugs[run], differing, max_console_lines, screens)
                for run, rows in runs_by_id.items()]
    title = title or f"petri_nb runs report: {_count(total, 'run')}"
    head = _head(title, frame, runs_by_id, slugs, sum(n for _, n in sections), max_console_lines, summary)
    lanes = _swimlanes(frame, len(runs_by_id)) if runs_by_id else "<p>No runs to draw.</p>"
    body = (f'<section id="timeline"><h2>Timeline</h2>{lanes}</section>\n'
            + _filters(frame) + "\n" + "\n".join(html for html, _ in sections))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_page(title, head, body), encoding="utf-8")
    except OSError as e:
        raise PetriError(f"runs_report(): cannot write {path}: {e.strerror or e}") from e
    return path
