"""Thin matplotlib plots over timeline frames (``vm.timeline()`` or ``read_timelines``).

Each function takes a frame, draws on ``ax`` (or a new figure) and returns the
Axes, so it works inline in a notebook and headless (Agg) into a PNG alike.
matplotlib is imported on first use: ``import petri_nb`` stays fast.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import PetriError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: Marker per event source; halts are drawn separately, coloured by reason.
MARKERS = {"qmp": "s", "runtime": "o", "console": "|", "inspect": "D", "agent": "^", "boot": "v", "screen": "P",
           "input": "x"}
SOURCE_COLORS = {"qmp": "tab:blue", "runtime": "tab:gray", "console": "tab:green", "inspect": "tab:purple",
                 "agent": "tab:olive", "boot": "tab:pink", "screen": "tab:cyan",
                 "input": "tab:brown"}
#: Sources sit above/below the lane centre (where halts are), so events at one instant stay visible.
OFFSETS = {"qmp": 0.3, "runtime": 0.15, "console": -0.15, "inspect": -0.3, "agent": -0.3, "boot": 0.3,
           "screen": 0.0, "input": -0.15}
#: Screen watchdog thumbnails drawn on one timeline plot (spread evenly over the screen rows).
MAX_THUMBNAILS = 12
VERDICT_COLORS = {"slower": "tab:red", "faster": "tab:green", "higher": "tab:orange", "lower": "tab:blue",
                  "different": "tab:orange", "no evidence": "tab:gray"}
REASON_COLORS = {"POWER_OFF": "tab:blue", "RESET": "tab:orange", "HIBERNATE": "tab:cyan",
                 "TRIPLE_FAULT": "tab:red", "PANIC": "darkred", "OTHER": "tab:brown"}


def _axes(ax: Axes | None, size: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=size, layout="constrained")
    return ax


def _check(df: Any, needed: set[str]) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise PetriError(f"expected a timeline DataFrame, not {type(df).__name__}")
    missing = needed - set(df.columns)
    if missing:
        raise PetriError(f"not a timeline frame: missing column(s) {', '.join(sorted(missing))}")
    return df


def _lanes(df: pd.DataFrame) -> tuple[pd.Series, list[str]]:
    """One lane per VM run: label 'vm' when each VM has one run, else 'vm run[:8]'."""
    runs_per_vm = df.groupby("vm", observed=True)["run"].nunique()
    multi = set(runs_per_vm[runs_per_vm > 1].index)
    label = df["vm"].astype(str).where(~df["vm"].isin(multi), df["vm"].astype(str) + " " + df["run"].str[:8])
    order = list(dict.fromkeys(label))
    return label, order


def timeline(df: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Swimlanes, one per VM run: a marker per event (shape by source), halts as big crosses coloured by reason."""
    df = _check(df, {"vm", "run", "t", "source", "reason"})
    label, order = _lanes(df)
    ax = _axes(ax, (10, max(3.2, 1.2 + 0.6 * len(order))))  # tall enough for the legend
    y = label.map({name: i for i, name in enumerate(order)})
    source = df["source"].astype(str)
    for src, marker in MARKERS.items():
        sel = source == src
        if sel.any():
            ax.scatter(df["t"][sel], y[sel] + OFFSETS[src], marker=marker, s=30 if marker != "|" else 150,
                       linewidths=2 if marker == "|" else None, color=SOURCE_COLORS[src], alpha=0.7, label=src,
                       zorder=2)
    halts = df[source == "halt"]
    for reason, rows in halts.groupby(halts["reason"].fillna("OTHER").astype(str), sort=True):
        ys = y[rows.index]
        ax.scatter(rows["t"], ys, marker="X", s=140, color=REASON_COLORS.get(reason, "black"),
                   edgecolors="black", linewidths=0.5, label=f"halt: {reason}", zorder=3)
    _thumbnails(ax, df[source == "screen"], y)
    ax.set_yticks(range(len(order)), order)
    ax.set_ylim(-0.6, len(order) - 0.4)
    ax.set_xlabel("seconds since launch")
    ax.set_title("VM timeline")
    ax.grid(axis="x", alpha=0.3)
    if len(df):
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", frameon=False)
    return ax


def _thumbnails(ax: Axes, screens: pd.DataFrame, y: pd.Series) -> None:
    """The screen watchdog's screenshots as small images on their lane, at their moment."""
    if screens.empty:
        return
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    from ..records.timeline import screen_image

    step = max(1, -(-len(screens) // MAX_THUMBNAILS))
    for index, row in screens.iloc[::step].iterrows():
        image = screen_image(row["data"])
        if image is None:
            continue
        image.thumbnail((80, 60))
        thumb = OffsetImage(np.asarray(image.convert("RGB")), zoom=0.6)
        box = AnnotationBbox(thumb, (row["t"], y[index] - 0.22), frameon=True, pad=0.1,
                             bboxprops={"edgecolor": SOURCE_COLORS["screen"], "linewidth": 0.8}, zorder=4)
        ax.add_artist(box)


def halt_reasons(df: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Stacked bar per run: how many halts of each reason."""
    df = _check(df, {"vm", "run", "source", "reason"})
    halts = df[df["source"].astype(str) == "halt"]
    label, _ = _lanes(halts) if len(halts) else (pd.Series(dtype=str), [])
    counts = pd.crosstab(label, halts["reason"].fillna("OTHER").astype(str)) if len(halts) else pd.DataFrame()
    ax = _axes(ax, (7, 3.5))
    if counts.empty:
        ax.text(0.5, 0.5, "no halts", ha="center", va="center", transform=ax.transAxes)
    else:
        counts.plot.bar(stacked=True, ax=ax, color=[REASON_COLORS.get(c, "black") for c in counts.columns], rot=0)
        # Outside the axes: inside, it covers the bars of the first runs.
        ax.legend(title="reason", fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("run")
    ax.set_ylabel("halts")
    ax.set_title("Halt reasons per run")
    return ax


def call_durations(df: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Duration (ms) of each runtime call, one row of points per call kind."""
    df = _check(df, {"source", "kind", "data"})
    calls = df[(df["source"].astype(str) == "runtime") & df["data"].fillna("").str.contains("duration_s")]
    ms = calls["data"].map(lambda d: json.loads(d)["duration_s"] * 1000.0)
    kinds = list(dict.fromkeys(sorted(calls["kind"].astype(str))))
    ax = _axes(ax, (8, 1.2 + 0.4 * max(1, len(kinds))))
    if not kinds:
        ax.text(0.5, 0.5, "no runtime calls", ha="center", va="center", transform=ax.transAxes)
    else:
        pos = calls["kind"].astype(str).map({k: i for i, k in enumerate(kinds)})
        ax.scatter(ms, pos, marker="|", s=120, color="tab:gray")
        med = ms.groupby(calls["kind"].astype(str)).median()
        ax.scatter([med[k] for k in kinds], range(len(kinds)), marker="D", color="tab:red", s=25, label="median",
                   zorder=3)
        ax.set_yticks(range(len(kinds)), kinds)
        ax.invert_yaxis()  # alphabetical from the top
        if (ms > 0).all() and ms.max() / max(ms.min(), 1e-9) > 100:
            ax.set_xscale("log")
        ax.legend(fontsize="small", frameon=False)
    ax.set_xlabel("duration (ms)")
    ax.set_title("Runtime call durations")
    ax.grid(axis="x", alpha=0.3)
    return ax


def compare(result_or_a: Any, b: Any = None, ax: Axes | None = None, **options: Any) -> Axes:
    """Ratio B/A of each metric (and key) with its confidence interval, coloured by verdict; 1.0 is "no change".

    Pass a ``petri_nb.analysis.compare`` table, or two run sets (and ``compare`` options) to compare them here."""
    from .compare import check_result
    from .compare import compare as run_compare

    result = check_result(run_compare(result_or_a, b, **options) if b is not None else result_or_a)
    rows = result[result["ratio"].notna()].reset_index(drop=True)
    labels = (rows["metric"].astype(str) + " " + rows["key"].fillna("").astype(str)).str.strip()
    ax = _axes(ax, (8, 1.2 + 0.4 * max(1, len(rows))))
    ax.axvline(1.0, color="black", linewidth=1, alpha=0.6)
    if rows.empty:
        ax.text(0.5, 0.5, "nothing to compare", ha="center", va="center", transform=ax.transAxes)
    for verdict, part in rows.groupby(rows["verdict"].astype(str), sort=True):
        low = (part["ratio"] - part["ci_low"]).clip(lower=0).fillna(0)
        high = (part["ci_high"] - part["ratio"]).clip(lower=0).fillna(0)
        ax.errorbar(part["ratio"], part.index, xerr=[low, high], fmt="D", capsize=3,
                    color=VERDICT_COLORS.get(verdict, "black"), label=verdict)
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    if len(rows) and (rows["ratio"] > 0).all() and rows["ratio"].max() / rows["ratio"].min() > 10:
        ax.set_xscale("log")  # 0.1x and 10x equally far from 1
    ax.set_xlabel("B / A (ratio of medians; halt mix: ratio of shares)")
    ax.set_title("Run set B against A")
    ax.grid(axis="x", alpha=0.3)
    if len(rows):
        ax.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax
