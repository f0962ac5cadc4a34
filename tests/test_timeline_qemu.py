"""A real tmk run (console, pause/resume, reset, triple fault) recorded on the timeline, in order."""

from __future__ import annotations

import json

import pandas as pd

import petri_nb
from petri_nb import HaltReason
from petri_nb.records.timeline import DTYPES


def _first(df: pd.DataFrame, **match: str) -> pd.Series:
    sel = pd.Series(True, index=df.index)
    for col, value in match.items():
        sel &= df[col].astype(str) == value
    rows = df[sel]
    assert len(rows), f"no row with {match}"
    return rows.iloc[0]


def test_tmk_run_records_every_source_in_order_with_reasons(vm: petri_nb.Vm):
    vm.console.write("echo hello-timeline\n")
    vm.console.expect(r"(?m)^hello-timeline\r?\n")  # the whole line, so its row exists
    vm.pause()
    vm.resume()
    vm.reset()
    vm.console.expect("tmk: ready", timeout=20)
    vm.console.write("triplefault\n")
    assert vm.wait_for_halt(timeout=20).reason is HaltReason.TRIPLE_FAULT

    df = vm.timeline()
    assert {c: str(t) for c, t in df.dtypes.items()} == {c: str(pd.Series(dtype=d).dtype) for c, d in DTYPES.items()}
    assert {"qmp", "runtime", "console", "halt"} <= set(df["source"].astype(str))
    assert df["t"].is_monotonic_increasing
    assert (df["vm"] == vm.name).all() and df["run"].nunique() == 1

    echo = _first(df, source="console", detail="hello-timeline")
    pause = _first(df, source="runtime", kind="pause()")
    stop = _first(df[df["t"] >= pause["t"]], source="qmp", kind="STOP")
    resume = _first(df, source="runtime", kind="resume()")
    resumed = _first(df[df["t"] >= resume["t"]], source="qmp", kind="RESUME")
    reset = _first(df, source="runtime", kind="reset()")
    reset_event = _first(df[df["t"] >= reset["t"]], source="qmp", kind="RESET")
    shutdown = df[(df["source"] == "qmp") & (df["kind"] == "SHUTDOWN") & (df["t"] > reset_event["t"])].iloc[-1]
    halt = _first(df, source="halt")
    assert echo["t"] < pause["t"] <= stop["t"] < resume["t"] <= resumed["t"] < reset["t"] <= reset_event["t"]
    assert reset_event["t"] < shutdown["t"] <= halt["t"]
    assert json.loads(shutdown["data"])["reason"] == "guest-reset"
    assert halt["reason"] == "TRIPLE_FAULT"
    assert "triple fault" in halt["detail"]
    calls = df[df["source"] == "runtime"]
    ended = calls[calls["kind"].isin(["pause()", "resume()", "reset()"])]
    assert all(json.loads(d)["outcome"] == "ok" and json.loads(d)["duration_s"] >= 0 for d in ended["data"])


def test_failed_call_is_a_row_with_its_error(vm: petri_nb.Vm):
    vm.console.write("poweroff\n")
    vm.wait_for_halt(timeout=20)
    try:
        vm.resume()
    except petri_nb.PetriError:
        pass
    row = vm.timeline().query("kind == 'resume()'").iloc[-1]
    data = json.loads(row["data"])
    assert data["outcome"] == "error" and "reset" in data["error"]
    assert row["detail"].startswith("error in ")
