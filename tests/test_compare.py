"""petri_nb.analysis.compare: known differences are found, identical sets are not told apart, bad input is named."""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from synthetic_runs import soak_set  # noqa: E402

import petri_nb  # noqa: E402
from petri_nb.analysis.compare import COLUMNS  # noqa: E402
from petri_nb.analysis.metrics import reset_to_ready  # noqa: E402
from petri_nb.errors import BadArgument  # noqa: E402
from petri_nb.fleet import FleetResult, outcomes_frame  # noqa: E402
from petri_nb.records.persist import write_parquet  # noqa: E402
from petri_nb.records.timeline import Timeline  # noqa: E402


def row(result: pd.DataFrame, metric: str, key: str = "") -> pd.Series:
    found = result[(result["metric"] == metric) & (result["key"] == key)]
    assert len(found) == 1, result
    return found.iloc[0]


def test_a_ten_percent_slower_reset_is_detected_as_slower_with_p_below_0_01():
    rng = np.random.default_rng(7)
    a, b = soak_set(rng, 40, name="a"), soak_set(rng, 40, scale=1.1, name="b")
    result = petri_nb.compare(a, b)
    assert list(result.columns) == list(COLUMNS)
    reset = row(result, "call_durations", "reset()")
    print(f"10% shift, 40 runs x 20 resets each: p = {reset['p_value']:.2e}, ratio {reset['ratio']:.3f} "
          f"[{reset['ci_low']:.3f}, {reset['ci_high']:.3f}]")
    assert reset["p_value"] < 0.01 and reset["verdict"] == "slower"
    assert (reset["n_a"], reset["n_b"], reset["samples_a"]) == (40, 40, 800)  # runs are the unit
    assert 1.0 < reset["ci_low"] < 1.1 < reset["ci_high"] < 1.25
    assert row(result, "reset_to_ready")["verdict"] == "slower"
    assert row(result, "call_durations", "console.write()")["verdict"] == "no evidence"  # unchanged
    backwards = petri_nb.compare(b, a, metric="call_durations")
    assert row(backwards, "call_durations", "reset()")["verdict"] == "faster"
    assert row(backwards, "call_durations", "reset()")["ratio"] < 1


def test_identical_sets_give_no_evidence_in_at_least_90_of_100_trials():
    verdicts = []
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        a, b = soak_set(rng, 30, cycles=5, name="a"), soak_set(rng, 30, cycles=5, name="b")
        verdicts.append(row(petri_nb.compare(a, b, metric="call_durations", n_resamples=200),
                            "call_durations", "reset()")["verdict"])
    false_positives = sum(v != "no evidence" for v in verdicts)
    print(f"false positives at alpha=0.01 over 100 trials of identical sets: {false_positives}")
    assert false_positives <= 10


def test_reset_to_ready_times_each_reset_to_the_next_ready_line_before_the_next_reset():
    tl = Timeline("r")
    tl.record("runtime", "ready", "guest ready", t=0.5)
    tl.record("runtime", "reset()", "ok", {"duration_s": 0.01}, t=1.0)
    tl.record("console", "line", "tmk: ready", t=1.25)
    tl.record("runtime", "reset()", "ok", {"duration_s": 0.01}, t=2.0)  # never ready: not timed
    tl.record("runtime", "reset()", "ok", {"duration_s": 0.01}, t=3.0)
    tl.record("console", "line", "something else", t=3.05)
    tl.record("console", "line", "tmk: ready", t=3.1)
    samples = reset_to_ready(tl.to_frame())
    assert samples["value"].round(6).tolist() == [0.25, 0.1]
    result = petri_nb.compare(tl.to_frame(), tl.to_frame(), metric=["boot_to_ready", "reset_to_ready"])
    assert row(result, "boot_to_ready")["median_a"] == 0.5
    assert row(result, "reset_to_ready")[["n_a", "samples_a"]].tolist() == [1, 2]


def test_a_changed_halt_mix_is_different_and_an_equal_one_is_not():
    rng = np.random.default_rng(3)
    a = soak_set(rng, 30, cycles=4, name="a", halts=("RESET",))
    b = soak_set(rng, 30, cycles=4, name="b", halts=("RESET", "PANIC"))
    result = petri_nb.compare(a, b, metric="halt_reasons")
    panic = row(result, "halt_reasons", "PANIC")
    assert (panic["samples_a"], panic["samples_b"], panic["n_b"]) == (0, 60, 120)
    assert panic["median_b"] == 0.5 and panic["verdict"] == "different" and panic["p_value"] < 1e-6
    same = petri_nb.compare(a, soak_set(rng, 10, cycles=4, halts=("RESET",)), metric="halt_reasons")
    assert same["verdict"].tolist() == ["no evidence"] and same["p_value"].tolist() == [1.0]


def console_lines(run: pd.DataFrame) -> int:
    return int((run["source"] == "console").sum())


def test_a_user_metric_is_measured_per_run_and_its_verdict_says_higher_or_lower():
    rng = np.random.default_rng(5)
    a, b = soak_set(rng, 12, cycles=3), soak_set(rng, 12, cycles=6)
    result = petri_nb.compare(a, b, metric=[console_lines, lambda run: [1.0, 2.0]])
    lines = row(result, "console_lines")
    assert (lines["median_a"], lines["median_b"], lines["verdict"]) == (4.0, 7.0, "higher")
    assert row(result, "<lambda>")["verdict"] == "no evidence"


def test_saved_run_folders_and_a_fleet_result_are_run_sets(tmp_path: Path):
    rng = np.random.default_rng(11)
    frames = {"a": soak_set(rng, 8, cycles=3, name="a"), "b": soak_set(rng, 8, cycles=3, scale=3, name="b")}
    for side, frame in frames.items():
        for run, rows in frame.groupby("run"):  # laid out as save_timeline lays out a run
            run_dir = tmp_path / side / f"x-{run}"
            run_dir.mkdir(parents=True)
            write_parquet(rows, run_dir / "part-000000.parquet")
            (run_dir / "meta.json").write_text(json.dumps({"vm": rows["vm"].iloc[0], "run": run, "format": 1}))
    from_disk = petri_nb.compare(tmp_path / "a", str(tmp_path / "b" / "*"), metric="reset_to_ready")
    assert row(from_disk, "reset_to_ready")[["n_a", "n_b", "verdict"]].tolist() == [8, 8, "slower"]
    outcomes = outcomes_frame([{"index": i, "run": r, "worker": "w", "status": "ok", "halt_reason": None,
                                "error": None, "duration_s": 1.0, "value": None}
                               for i, r in enumerate(frames["b"]["run"].unique())])
    fleet = FleetResult(frames["b"], outcomes, tmp_path)
    assert row(petri_nb.compare(frames["a"], fleet, metric="reset_to_ready"), "reset_to_ready")["n_b"] == 8


def test_bad_input_is_a_petri_error_naming_the_problem():
    rng = np.random.default_rng(1)
    a = soak_set(rng, 3, cycles=2)
    with pytest.raises(petri_nb.PetriError, match="run set b holds no runs"):
        petri_nb.compare(a, a.iloc[:0])
    with pytest.raises(petri_nb.PetriError, match="run set a is an empty list"):
        petri_nb.compare([], a)
    with pytest.raises(petri_nb.PetriError, match="unknown metric 'latency'; built-in metrics: call_durations"):
        petri_nb.compare(a, a, metric="latency")

    def explodes(run: pd.DataFrame) -> float:
        raise KeyError("no such column")

    with pytest.raises(petri_nb.PetriError, match="metric 'explodes' failed on run .*KeyError"):
        petri_nb.compare(a, a, metric=explodes)
    with pytest.raises(petri_nb.PetriError, match="must return a finite number.*'fast'"):
        petri_nb.compare(a, a, metric=lambda run: "fast")
    with pytest.raises(BadArgument, match="alpha must be a number strictly between 0 and 1"):
        petri_nb.compare(a, a, alpha=5)
    with pytest.raises(BadArgument, match="run set a must be a path.*not int"):
        petri_nb.compare(3, a)
    with pytest.raises(BadArgument, match="not a timeline frame: it has no run, t"):
        petri_nb.compare(pd.DataFrame({"x": [1]}), a)
    with pytest.raises(petri_nb.PetriError, match="no saved run at"):
        petri_nb.compare("/nonexistent/runs", a)


def test_compare_of_two_sets_of_100_runs_of_500_rows_takes_under_5_s():
    rng = np.random.default_rng(2)
    a, b = soak_set(rng, 100, cycles=100, name="a"), soak_set(rng, 100, cycles=100, scale=1.05, name="b")
    assert 450 <= len(a) / 100 <= 550
    petri_nb.compare(a.head(50), b.head(50))  # imports scipy: not what a notebook pays per comparison
    start = time.perf_counter()
    result = petri_nb.compare(a, b)
    elapsed = time.perf_counter() - start
    print(f"compare() of 2 x 100 runs x {len(a) // 100} rows: {elapsed:.2f} s")
    assert elapsed < 5 and len(result) == 6


def test_plot_compare_draws_a_ratio_per_metric_with_its_interval(tmp_path: Path):
    rng = np.random.default_rng(4)
    a, b = soak_set(rng, 10, cycles=5, name="a"), soak_set(rng, 10, cycles=5, scale=1.5, name="b")
    ax = petri_nb.plot.compare(a, b, metric=["call_durations", "reset_to_ready"])
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["call_durations console.write()", "call_durations reset()", "reset_to_ready"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["no evidence", "slower"]
    ax.figure.savefig(tmp_path / "compare.png")
    assert (tmp_path / "compare.png").stat().st_size > 5000
    with pytest.raises(petri_nb.PetriError, match="expected the table petri_nb.compare"):
        petri_nb.plot.compare(a)


def test_rows_with_nan_times_do_not_break_compare():
    rng = np.random.default_rng(27)
    a, b = soak_set(rng, 10, cycles=5, name="a"), soak_set(rng, 10, cycles=5, name="b")
    a.loc[a.index[::7], "t"] = np.nan  # a damaged file's rows: no time
    result = petri_nb.compare(a, b, "reset_to_ready")
    assert row(result, "reset_to_ready")["verdict"] in ("same", "faster", "slower", "no evidence")
