"""A/B comparison of two run sets: is B faster, slower, or not measurably different from A?

``compare(a, b)`` measures each metric on every run of both sets (petri_nb.analysis.metrics) and
gives, per metric and key, the medians, their ratio B/A with a bootstrap confidence
interval, a p-value and a verdict. The statistical choices, and why:

* **The run is the unit.** Samples within one run share its host, its load and its QEMU
  process, so they are not independent; pooling them would make a noisy host look like
  a regression. Each run is reduced to its median per key, and sets of those medians are
  compared (``n_a``/``n_b`` count runs, ``samples_a``/``samples_b`` the raw samples).
* **Mann-Whitney U (two-sided) for the p-value.** Latencies are skewed, with rare long
  stalls: a rank test is not thrown by a single 10x outlier as a t-test is, needs no
  normality, is exact for small sets without ties, and costs no resampling. Its direction
  (the U statistic) gives the verdict: "slower" when B's runs tend to take longer.
* **Percentile bootstrap for the ratio of medians** (``scipy.stats.bootstrap``, runs
  resampled within each set, seeded). Not BCa: its acceleration comes from the jackknife,
  which is inconsistent for medians.
* **The halt-reason mix** is a contingency table (set x reason, halts counted): Fisher's
  exact test when it is 2x2, else a chi-square test; verdict "different" or "no evidence".
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
from typing import Any

import numpy as np
import pandas as pd

from ..errors import BadArgument, PetriError
from .metrics import READY, Metric, UserMetric, resolve
from .runsets import timeline_of

COLUMNS = ("metric", "key", "unit", "n_a", "n_b", "samples_a", "samples_b", "median_a", "median_b", "ratio",
           "ci_low", "ci_high", "p_value", "verdict")
#: Bootstrap resamples: 2x100 runs take well under a second per metric key at this count.
N_RESAMPLES = 4999


def compare(a: Any, b: Any, metric: str | UserMetric | list[str | UserMetric] | None = None, *,
            alpha: float = 0.01, confidence: float = 0.95, n_resamples: int = N_RESAMPLES, seed: int = 0,
            ready: str = READY) -> pd.DataFrame:
    """Compare run set ``b`` against run set ``a`` (each: paths/glob/list, a timeline frame or a FleetResult).

    ``metric``: a built-in name (``call_durations``, ``reset_to_ready``, ``boot_to_ready``,
    ``halt_reasons``), a callable on one run's frame returning a number or list of numbers,
    or a list of those; default all built-ins. One row per metric and key; ``ratio`` is
    median_b / median_a. A verdict other than "no evidence" needs ``p_value < alpha``.
    """
    _check_fraction("alpha", alpha)
    _check_fraction("confidence", confidence)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 100:
        raise BadArgument(f"n_resamples must be an integer >= 100, not {n_resamples!r}")
    try:
        re.compile(ready)
    except (re.error, TypeError) as e:
        raise BadArgument(f"ready= must be a regular expression for the guest's ready line, not {ready!r}: {e}") \
            from None
    metrics = resolve(metric)
    fa, fb = timeline_of(a, "run set a"), timeline_of(b, "run set b")
    _warn_if_boot_cache_mixed(fa, fb)
    rows: list[dict[str, Any]] = []
    for m in metrics:
        sa, sb = m.measure(fa, ready), m.measure(fb, ready)
        if m.kind == "mix":
            rows += _mix_rows(m, sa, sb, alpha)
        else:
            rows += _size_rows(m, sa, sb, alpha, confidence, n_resamples, seed)
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    return out.astype({"metric": "string", "key": "string", "unit": "string", "verdict": "string",
                       "n_a": "int64", "n_b": "int64", "samples_a": "int64", "samples_b": "int64"})


def _warn_if_boot_cache_mixed(fa: pd.DataFrame, fb: pd.DataFrame) -> None:
    """Runs started from the boot cache skip the boot: timing them against booted runs says little."""
    counts = []
    for frame in (fa, fb):
        if "boot_cache" not in frame or frame.empty:
            counts.append((0, frame["run"].nunique() if "run" in frame else 0))
            continue
        per_run = frame.groupby("run", observed=True)["boot_cache"].first()
        counts.append((int((per_run == "hit").sum()), int((per_run != "hit").sum() + per_run.isna().sum())))
    hits, booted = sum(c[0] for c in counts), sum(c[1] for c in counts)
    if hits and booted:
        warnings.warn(f"compare: the run sets mix {hits} runs started from the boot cache with {booted} that booted "
                      f"(a: {counts[0][0]} cached of {sum(counts[0])}, b: {counts[1][0]} of {sum(counts[1])}); "
                      "boot and ready times of the two are not alike", stacklevel=3)


def _check_fraction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise BadArgument(f"{name} must be a number strictly between 0 and 1, not {value!r}")


def _size_rows(m: Metric, sa: pd.DataFrame, sb: pd.DataFrame, alpha: float, confidence: float,
               n_resamples: int, seed: int) -> list[dict[str, Any]]:
    per_run_a = sa.groupby(["key", "run"])["value"].median()
    per_run_b = sb.groupby(["key", "run"])["value"].median()
    count_a, count_b = sa.groupby("key").size(), sb.groupby("key").size()
    rows = []
    for key in sorted(set(count_a.index) | set(count_b.index)):
        x = per_run_a.loc[key].to_numpy() if key in count_a.index else np.empty(0)
        y = per_run_b.loc[key].to_numpy() if key in count_b.index else np.empty(0)
        rows.append({"metric": m.name, "key": key, "unit": m.unit, "n_a": len(x), "n_b": len(y),
                     "samples_a": int(count_a.get(key, 0)), "samples_b": int(count_b.get(key, 0)),
                     **_two_samples(x, y, m.kind, alpha, confidence, n_resamples, seed)})
    return rows


def _two_samples(x: np.ndarray, y: np.ndarray, kind: str, alpha: float, confidence: float, n_resamples: int,
                 seed: int) -> dict[str, Any]:
    from scipy import stats

    nan = math.nan
    med_a = float(np.median(x)) if len(x) else nan
    med_b = float(np.median(y)) if len(y) else nan
    ratio = med_b / med_a if med_a > 0 and not math.isnan(med_b) else nan
    p, low, high, verdict = nan, nan, nan, "no evidence"
    if len(x) and len(y):
        test = stats.mannwhitneyu(x, y, alternative="two-sided")
        p = float(test.pvalue)
        if p < alpha:  # U counts pairs where a's run is the larger: under half, b tends larger
            larger = test.statistic < len(x) * len(y) / 2
            verdict = ("slower" if larger else "faster") if kind == "duration" else ("higher" if larger else "lower")
    if len(x) >= 2 and len(y) >= 2 and med_a > 0:
        low, high = _ratio_interval(x, y, confidence, n_resamples, seed)
    return {"median_a": med_a, "median_b": med_b, "ratio": ratio, "ci_low": low, "ci_high": high, "p_value": p,
            "verdict": verdict}


def _ratio_of_medians(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.median(y, axis=axis) / np.median(x, axis=axis)


def _ratio_interval(x: np.ndarray, y: np.ndarray, confidence: float, n_resamples: int,
                    seed: int) -> tuple[float, float]:
    from scipy import stats

    # scipy >= 1.15 takes rng=, older releases random_state=: same seeded generator either way.
    seeding = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-equal resamples warn; the interval is then just that value
        res = stats.bootstrap((x, y), _ratio_of_medians, n_resamples=n_resamples, confidence_level=confidence,
                              method="percentile", vectorized=True,
                              **{seeding: np.random.default_rng(seed)})
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _mix_rows(m: Metric, sa: pd.DataFrame, sb: pd.DataFrame, alpha: float) -> list[dict[str, Any]]:
    from scipy import stats

    table = pd.DataFrame({"a": sa.groupby("key").size(), "b": sb.groupby("key").size()}).fillna(0).astype(int)
    if table.empty:
        return []
    total_a, total_b = int(table["a"].sum()), int(table["b"].sum())
    p = math.nan
    if total_a and total_b:
        counts = table.to_numpy().T  # sets x reasons
        if counts.shape[1] == 1:
            p = 1.0  # one reason in both sets: the same mix
        elif counts.shape == (2, 2):
            p = float(stats.fisher_exact(counts).pvalue)
        else:
            p = float(stats.chi2_contingency(counts).pvalue)
    verdict = "different" if p < alpha else "no evidence"
    rows = []
    for key, (na, nb) in table.iterrows():
        share_a = na / total_a if total_a else math.nan
        share_b = nb / total_b if total_b else math.nan
        rows.append({"metric": m.name, "key": str(key), "unit": m.unit, "n_a": total_a, "n_b": total_b,
                     "samples_a": int(na), "samples_b": int(nb), "median_a": share_a, "median_b": share_b,
                     "ratio": share_b / share_a if share_a > 0 else math.nan, "ci_low": math.nan,
                     "ci_high": math.nan, "p_value": p, "verdict": verdict})
    return rows


def check_result(result: Any) -> pd.DataFrame:
    """``result`` if it is a ``compare`` table (for plotting), else a PetriError saying what it is."""
    if not isinstance(result, pd.DataFrame) or not set(COLUMNS) <= set(result.columns):
        raise PetriError(f"expected the table petri_nb.compare() returns, not {type(result).__name__}")
    return result
