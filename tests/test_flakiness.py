"""petri_nb.flakiness: runs of one experiment that disagree on their outcome are flagged unstable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic_runs import soak_run

import petri_nb
from petri_nb.errors import BadArgument
from petri_nb.fleet import FleetResult, outcomes_frame
from petri_nb.records.timeline import Timeline


def runs_ending_in(rng: np.random.Generator, name: str, last_halts: list[str]) -> list[pd.DataFrame]:
    """One run per entry, named ``<name>-<i>``, whose last halt has that reason."""
    return [soak_run(rng, f"{name}-{i}", cycles=3, halts=("RESET", "PANIC", reason))
            for i, reason in enumerate(last_halts)]


def test_timeline_runs_are_grouped_by_vm_name_and_disagreeing_ones_are_unstable():
    rng = np.random.default_rng(0)
    idle = Timeline("idle-0")
    idle.record("console", "line", "tmk: ready")
    frame = pd.concat([*runs_ending_in(rng, "soak", ["RESET"] * 4),
                       *runs_ending_in(rng, "boot", ["POWER_OFF", "TRIPLE_FAULT", "POWER_OFF"]),
                       idle.to_frame()], ignore_index=True)
    table = petri_nb.flakiness(frame)
    assert table.loc["soak", ["runs", "majority", "unstable", "RESET"]].tolist() == [4, "RESET", False, 4]
    boot = table.loc["boot"]
    assert (boot["runs"], boot["majority"], boot["unstable"]) == (3, "POWER_OFF", True)
    assert (boot["POWER_OFF"], boot["TRIPLE_FAULT"], boot["RESET"]) == (2, 1, 0)
    assert boot["majority_share"] == pytest.approx(2 / 3)
    assert table.loc["idle", ["runs", "majority", "unstable"]].tolist() == [1, "no halt", False]


def test_a_column_or_a_callable_picks_the_experiment():
    rng = np.random.default_rng(1)
    frame = pd.concat(runs_ending_in(rng, "x", ["RESET", "PANIC", "RESET", "PANIC"]), ignore_index=True)
    frame["host"] = frame["vm"].map({"x-0": "alpha", "x-1": "beta", "x-2": "alpha", "x-3": "beta"})
    by_host = petri_nb.flakiness(frame, by="host")
    assert by_host["majority"].to_dict() == {"alpha": "RESET", "beta": "PANIC"}
    assert not by_host["unstable"].any()
    one_group = petri_nb.flakiness(frame, by=lambda run: "all")
    assert one_group.loc["all", ["runs", "unstable", "PANIC", "RESET"]].tolist() == [4, True, 2, 2]


def test_a_fleet_is_unstable_when_some_runs_fail_and_counts_their_halts(tmp_path: Path):
    rows = [{"index": i, "run": f"r{i}", "worker": f"w{i % 2}", "status": status, "halt_reason": halt,
             "error": None if status == "ok" else "ValueError: odd", "duration_s": 1.0, "value": None}
            for i, (status, halt) in enumerate([("ok", "POWER_OFF"), ("ok", "RESET"), ("error", None),
                                                 ("ok", "PANIC"), ("timeout", None)])]
    fleet = FleetResult(pd.DataFrame(), outcomes_frame(rows), tmp_path / "fleet-20260101-abc")
    table = petri_nb.flakiness(fleet)
    assert list(table.index) == ["fleet-20260101-abc"]
    got = table.iloc[0]
    assert (got["runs"], got["majority"], got["unstable"]) == (5, "ok", True)
    assert (got["ok"], got["error"], got["timeout"]) == (3, 1, 1)
    assert (got["halt:POWER_OFF"], got["halt:RESET"], got["halt:PANIC"]) == (1, 1, 1)  # halts do not make it unstable
    by_worker = petri_nb.flakiness(fleet, by="worker")
    assert by_worker["unstable"].to_dict() == {"w0": True, "w1": False}  # w1 ran r1 and r3: both ok
    all_ok = FleetResult(pd.DataFrame(), outcomes_frame([rows[0], rows[1]]), tmp_path / "f2")
    assert not petri_nb.flakiness(all_ok)["unstable"].any()


def test_bad_input_names_the_problem():
    frame = soak_run(np.random.default_rng(2), "x-0", cycles=1)
    with pytest.raises(BadArgument, match="by='nope' is not a column of the timeline"):
        petri_nb.flakiness(frame, by="nope")
    with pytest.raises(BadArgument, match="by= must be a column name or a callable, not 3"):
        petri_nb.flakiness(frame, by=3)
    with pytest.raises(BadArgument, match="by= callable failed on run .*ZeroDivisionError"):
        petri_nb.flakiness(frame, by=lambda run: 1 / 0)
    with pytest.raises(petri_nb.PetriError, match="runs holds no runs"):
        petri_nb.flakiness(frame.iloc[:0])
