"""read_petri_results on a tree written as petri writes one, the analysis tools on it, our export's round trip,
and bad input (a damaged line, a missing attachment, a folder that is not petri's, a 100 MB line)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from petri_fixture import JOB, TRIPLE, PetriTestDir, ci_tree, linux_boot
from synthetic_runs import crashing_run, soak_run

import petri_nb
from petri_nb.analysis.petri_format import parse_line
from petri_nb.analysis.petri_log import export_petri_results
from petri_nb.analysis.petri_results import EXTRA, petri_tests
from petri_nb.records.timeline import COLUMNS

BOOT, UEFI = "x86_64::openvmm_linux_direct_x64", "x86_64::openhcl_uefi_x64_boot"
FLAKY, KILLED = "x86_64::openvmm_uefi_x64_flaky", "x86_64::openvmm_pcat_x64_killed"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return ci_tree(tmp_path / "results")


def test_a_ci_tree_reads_as_one_frame_with_petris_outcomes_levels_sources_and_attachments(tree: Path):
    frame = petri_nb.read_petri_results(tree)
    assert list(frame.columns) == [*COLUMNS, *EXTRA]
    tests = petri_tests(frame).set_index(["run_id", "test"])
    assert tests["outcome"].astype(str).to_dict() == {
        ("1001", UEFI): "failed", ("1001", BOOT): "passed", ("1001", KILLED): "incomplete",
        ("1001", FLAKY): "failed_unstable", ("1002", BOOT): "passed", ("1002", KILLED): "incomplete",
        ("1002", FLAKY): "passed"}
    assert tests.loc[("1001", UEFI), "error"] == TRIPLE and tests.loc[("1001", FLAKY), "error"] == "Test timed out"
    assert set(frame["job"].astype(str)) == {JOB} and set(frame["attempt"]) == {1}
    assert set(frame["run"]) >= {f"1001_1/{JOB}-vmm-tests-logs/x86_64__openvmm_linux_direct_x64"}

    boot = frame[(frame["test"] == BOOT) & (frame["run_id"] == "1001")].reset_index(drop=True)
    assert boot["t"].tolist() == pytest.approx([0, .1, .2, .3, .35, .4, .5, .7, .9, .9, .95])
    by_text = boot.set_index("detail")
    # openvmm's stderr arrives as INFO with WARN in its text; kmsg lines keep their kernel level and time
    assert by_text.loc["vmm_core: unknown MSR 0x1234", ["level", "petri_source", "source_kind"]].tolist() == \
        ["WARN", "openvmm", "vmm"]
    assert by_text.loc["[2.600123] mana: link down", ["level", "source_kind"]].tolist() == ["ERROR", "paravisor"]
    assert json.loads(by_text.loc["[2.500000] nvme: controller slow to respond", "data"]) == {"kernel_time": 2.5}
    assert by_text.loc["petri::vm: starting vm", ["source", "kind", "level"]].tolist() == ["runtime", "log", "INFO"]
    assert by_text.loc["Linux version 6.6.0 (root@host)", ["source", "source_kind"]].tolist() == ["console", "guest"]

    screens = boot[boot["source"] == "screen"]
    assert screens["kind"].tolist() == ["screenshot"] * 2
    data = json.loads(screens["data"].iloc[1])
    assert (data["width"], data["height"], data["attachment"]) == (64, 48, "screenshot_1.png")
    assert base64.b64decode(data["png"]) == Path(data["path"]).read_bytes()
    assert boot.loc[boot["source"] == "halt", ["reason", "detail"]].values.tolist() == [["POWER_OFF", "PowerOff"]]

    uefi = frame[frame["test"] == UEFI]
    inspect = uefi[uefi["source"] == "inspect"].iloc[0]
    assert inspect["kind"] == "dump" and json.loads(inspect["data"])["path"].endswith("timeout_inspect_vmm.log")
    assert uefi.loc[uefi["kind"] == "file", "detail"].tolist() == ["dumpfile.dmp: 64 bytes"]
    halt = uefi[uefi["source"] == "halt"].iloc[0]
    assert (halt["reason"], halt["detail"]) == ("TRIPLE_FAULT", "TripleFault { vp: 0, registers: None }")
    assert petri_nb.HaltReason[halt["reason"]] is petri_nb.HaltReason.TRIPLE_FAULT
    assert json.loads(halt["data"])["expected"] == "PowerOff"
    assert set(frame.loc[frame["test"] == KILLED, "source_kind"].astype(str)) == {"petri", "guest"}


def test_one_test_folder_a_job_folder_a_glob_and_a_list_read_the_same_tests(tree: Path):
    job = tree / "1001_1" / f"{JOB}-vmm-tests-logs"
    one = petri_nb.read_petri_results(job / "x86_64__openvmm_linux_direct_x64" / "petri.jsonl")
    assert set(one["test"]) == {BOOT} and set(one["run_id"].astype(str)) == {"1001"}
    assert petri_nb.read_petri_results(job)["run"].nunique() == 4
    assert petri_nb.read_petri_results(str(tree / "*_1"))["run"].nunique() == 7
    assert petri_nb.read_petri_results([tree / "1001_1", tree / "1002_1", job])["run"].nunique() == 7
    assert petri_nb.read_petri_results(tree, workers=2).equals(petri_nb.read_petri_results(tree, workers=1))


def test_kmsg_and_syslog_levels_as_petri_maps_them():
    assert parse_line("INFO", "<4>[    1.500000] x: y") == ("WARN", "[    1.500000] x: y", 1.5)
    assert parse_line("INFO", "<3>[0.000001] oops")[0] == "ERROR"
    assert parse_line("INFO", "<7>[0.000001] dbg")[0] == "DEBUG"
    assert parse_line("INFO", "12.5s ERROR vmm: bad") == ("ERROR", "vmm: bad", None)
    assert parse_line("WARN", "plain text") == ("WARN", "plain text", None)


def test_flakiness_compare_and_runs_report_take_petri_results(tree: Path, tmp_path: Path):
    frame = petri_nb.read_petri_results(tree)
    flaky = petri_nb.flakiness(frame)
    assert bool(flaky.loc[FLAKY, "unstable"]) and flaky.loc[FLAKY, "failed_unstable"] == 1
    assert flaky.loc[FLAKY, "passed"] == 1 and flaky.loc[KILLED, "incomplete"] == 2
    assert not flaky.loc[BOOT, "unstable"] and flaky.loc[UEFI, "majority"] == "failed"

    first, second = frame[frame["run_id"] == "1001"], frame[frame["run_id"] == "1002"]
    table = petri_nb.compare(first, second, metric="test_durations", n_resamples=100)
    row = table.set_index("key").loc[BOOT]
    assert (row["n_a"], row["n_b"], row["median_a"]) == (1, 1, pytest.approx(0.95))

    html = petri_nb.runs_report(frame, tmp_path / "report.html").read_text()
    assert html.count('class="shot"') == 2 and "TRIPLE_FAULT" in html and BOOT in html


def test_our_runs_exported_in_petris_layout_read_back_identically(tmp_path: Path):
    rng = np.random.default_rng(3)
    crash, soak = crashing_run(rng, "x86_64::crash", lines=40, screens=3), soak_run(rng, "x86_64::soak", 5)
    frame = pd.concat([crash, soak], ignore_index=True)
    run = export_petri_results(frame, tmp_path, run_id=77, attempt=2, job="petri-nb")
    assert run == tmp_path / "77_2"
    folder = run / "petri-nb-vmm-tests-logs" / "x86_64__crash"
    assert (folder / "petri.test").read_text() == "x86_64::crash" and (folder / "petri.failed").exists()
    assert (run / "petri-nb-vmm-tests-logs" / "x86_64__soak" / "petri.passed").read_bytes() == b""
    names = ["screenshot.png"] + [f"screenshot_{n}.png" for n in range(1, (crash["source"] == "screen").sum())]
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(names) and len(names) >= 3
    assert {"console.log", "runtime.log", "halt.log"} <= {p.name for p in folder.glob("*.log")}
    lines = [json.loads(x) for x in (folder / "petri.jsonl").read_text().splitlines()]
    assert [x["attachment"] for x in lines if "attachment" in x] == names
    back = petri_nb.read_petri_results(tmp_path)
    for original in (crash, soak):
        got = back[back["run"] == original["run"].iloc[0]][list(COLUMNS)].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, original.reset_index(drop=True))
    assert set(back["run_id"].astype(str)) == {"77"} and set(back["job"].astype(str)) == {"petri-nb"}
    with pytest.raises(petri_nb.PetriError, match="more than once"):
        export_petri_results(pd.concat([soak, soak_run(rng, "x86_64::soak", 2)]), tmp_path / "o", run_id=1)


def test_bad_input_is_a_clear_error_or_a_row_saying_what_was_wrong(tmp_path: Path):
    with pytest.raises(petri_nb.PetriError, match="holds no petri test results"):
        (tmp_path / "empty" / "sub").mkdir(parents=True)
        petri_nb.read_petri_results(tmp_path / "empty")
    with pytest.raises(petri_nb.PetriError, match="does not exist"):
        petri_nb.read_petri_results(tmp_path / "nowhere")
    with pytest.raises(petri_nb.PetriError, match="no petri results match"):
        petri_nb.read_petri_results(str(tmp_path / "nothing*"))

    run = tmp_path / "5_1"
    t = PetriTestDir(run, "x86_64::bad")
    t.trace(0.0, "INFO", "petri: first")
    t.log.write('{"timestamp":"2026-03-04T05:06:07.1Z","source":"petri","sev\n')  # cut off mid-line
    t.attach(0.2, "screenshot.png", b"not a png")
    t.log.write('{"timestamp":"2026-03-04T05:06:07.3Z","attachment":"screenshot_1.png"}\n')  # never written
    big = json.dumps({"timestamp": "2026-03-04T05:06:07.4Z", "source": "linux", "severity": "INFO",
                      "message": "x" * (100 << 20)}) + "\n"
    t.log.write(big)
    t.trace(0.5, "INFO", "petri: last")
    t.end("petri.passed")
    linux_boot(run)  # a good test beside the bad one
    frame = petri_nb.read_petri_results(tmp_path / "5_1")
    bad = frame[frame["test"] == "x86_64::bad"].reset_index(drop=True)
    assert bad["kind"].tolist() == ["log", "bad line", "bad file", "bad file", "line", "log"]
    assert bad["detail"][1].startswith("petri.jsonl:2: not a petri log line")
    assert bad["detail"][2] == "screenshot.png: attachment named in petri.jsonl:3 is not a PNG"
    assert bad["detail"][3] == "screenshot_1.png: attachment named in petri.jsonl:4 is missing"
    long = bad.iloc[4]
    assert json.loads(long["data"]) == {"cut_bytes": len(big)}
    assert len(long["detail"]) < 70_000 and "is 10485" in long["detail"]
    assert bad["detail"][5] == "petri: last" and (bad["t"].diff().dropna() >= 0).all()
    assert frame[frame["test"] == BOOT]["run"].nunique() == 1 and len(frame[frame["test"] == BOOT]) == 11
