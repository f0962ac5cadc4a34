"""A runs report of thousands of runs: a summary, sections only for the unusual runs, every run in a CSV.

A section per run made a 16 MB page for 10,000 tiny runs, and nobody reads 10,000 event
tables. Past ``MAX_RUN_SECTIONS`` runs the report shows, per experiment, how the outcomes
split, and the sections (and swimlanes) of at most that many runs that failed (a panic, a
triple fault) or whose outcome is not their experiment's majority, rarest outcome first.
Every run, with its outcome, is one line of a CSV file written beside the report and linked.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import PetriError
from ..model.halt import HaltReason
from .flakiness import run_outcomes

#: More runs than this and the report summarises (it lists every run in its CSV instead).
MAX_RUN_SECTIONS = 200
#: Outcomes (last halt reasons) that get a section even when most runs of their experiment end so.
FAILING = {HaltReason.TRIPLE_FAULT.name, HaltReason.PANIC.name}


def _per_run(frame: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """One row per run, computed over all rows at once."""
    g = frame.groupby("run", sort=False, observed=True)
    halt = (frame["source"].astype(str) == "halt") & (frame["kind"] == "halt")
    table = pd.DataFrame({"vm": g["vm"].first() if "vm" in frame else None,
                          "started": g["wall"].min() if "wall" in frame else None,
                          "seconds": g["t"].max(), "events": g.size(),
                          "halts": halt.groupby(frame["run"], sort=False, observed=True).sum()})
    table.index = table.index.astype(str)
    return outcomes.set_index("run").join(table)


def summarise(frame: pd.DataFrame, out: Path) -> tuple[pd.DataFrame, str]:
    """The rows of the runs worth a section, and the summary's HTML; writes ``<out>.runs.csv``."""
    outcomes, table = run_outcomes(frame)
    runs = _per_run(frame, outcomes)
    majority = runs["experiment"].map(table["majority"])
    share = runs.groupby("outcome")["outcome"].transform("size")
    odd = (runs["outcome"] != majority) | runs["outcome"].str.upper().isin(FAILING)
    unusual = runs[odd].assign(share=share).sort_values("share", kind="stable")
    shown = unusual.index[:MAX_RUN_SECTIONS]
    csv = out.with_name(out.stem + ".runs.csv")
    try:
        runs.assign(unusual=runs.index.isin(unusual.index)).to_csv(csv, index_label="run")
    except OSError as e:
        raise PetriError(f"runs_report(): cannot write {csv}: {e.strerror or e}") from e
    keep = frame["run"].astype(str).isin(set(shown))
    rows = frame[keep.to_numpy()]
    note = (f"<p><b>{len(runs)} runs</b>: too many for a section each. Below, the "
            f"{len(shown)} of the {len(unusual)} runs that failed (a panic or triple fault) or whose outcome "
            f"is not their experiment's majority (rarest outcome first). Every run, with its outcome: "
            f'<a href="{escape(csv.name)}">{escape(csv.name)}</a>.</p>')
    return rows, "<h2>Outcomes by experiment</h2>" + note + _outcome_table(table)


def _outcome_table(table: pd.DataFrame) -> str:
    counts = [c for c in table.columns if c not in ("runs", "majority", "unstable", "majority_share")]
    head = "".join(f"<th>{escape(str(h))}</th>" for h in ["experiment", "runs", "majority", "unstable", *counts])
    body = []
    for name, row in table.sort_values("unstable", ascending=False, kind="stable").head(MAX_RUN_SECTIONS).iterrows():
        cells = [escape(str(name)), str(row["runs"]), escape(str(row["majority"])),
                 "yes" if bool(row["unstable"]) else "", *(str(int(row[c])) for c in counts)]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    more = f"<p>and {len(table) - len(body)} more experiments (see the CSV).</p>" if len(table) > len(body) else ""
    return f'<table class="runs"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>{more}'


def run_count(frame: pd.DataFrame) -> int:
    return int(pd.unique(np.asarray(frame["run"].dropna())).size)
