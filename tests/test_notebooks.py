"""The shipped notebooks run headless (papermill, real kernels, real QEMU) and compute the right things.

Each notebook prints a JSON summary in its cell tagged ``summary``; the tests assert on
those values, on the report files (HTML, PNG figures) and on the saved runs.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from PIL import Image

import petri_nb
from petri_nb import PetriError, report

NOTEBOOKS = sorted(report.NOTEBOOKS_DIR.glob("*.ipynb"))
HALTS = {"poweroff": "POWER_OFF", "reset": "RESET", "triplefault": "TRIPLE_FAULT", "panic": "PANIC",
         "hibernate": "HIBERNATE"}


def test_every_notebook_is_shipped() -> None:
    assert {p.stem for p in NOTEBOOKS} >= {"quickstart", "reset_soak", "shared_analysis", "linux_agent", "own_guest",
                                           "petri_results", "screens", "time_travel"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_notebook_has_no_outputs_a_parameters_cell_and_a_summary_cell(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "commit notebooks without outputs"
    tags = [t for c in code for t in c.metadata.get("tags", [])]
    assert tags.count("parameters") == 1 and tags.count("summary") == 1
    assert nb.metadata.kernelspec.name == "python3"
    assert not nb.metadata.get("widgets"), "no stored widget state"


def check_figures(rep: report.Report, at_least: int) -> None:
    assert len(rep.figures) >= at_least
    for fig in rep.figures:
        with Image.open(fig) as im:
            assert im.format == "PNG" and im.width > 200 and im.height > 100
    html = rep.html.read_text()
    assert html.count('src="data:image/png;base64,') >= at_least  # figures inline: one file to share


def test_quickstart_report_shows_every_halt_reason_and_writes_html_and_figures(tmp_path: Path) -> None:
    rep = report.run("quickstart", tmp_path / "out")
    s = rep.summary
    assert s is not None
    assert s["halts"] == HALTS and s["all_halts_as_expected"]
    assert s["magic_halt"] == "PANIC" and s["paused_status"] == "paused"
    assert s["inspect_cpu_rows"] > 0
    assert {"qmp", "runtime", "console", "halt", "inspect"} <= set(s["timeline_sources"])
    # Figures: the screen from %petri screenshot, the timeline swimlane, the call durations.
    check_figures(rep, 3)
    with Image.open(rep.figures[0]) as screen:
        assert screen.size == (720, 400)
    assert "Every halt reason" in rep.html.read_text()
    executed = nbformat.read(rep.notebook, as_version=4)
    assert all(o.output_type != "error" for c in executed.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.slow
def test_reset_soak_saves_runs_that_shared_analysis_reads_from_another_folder(tmp_path: Path) -> None:
    vms, cycles = 2, 5
    soak = report.run("reset_soak", tmp_path / "soak", {"vms": vms, "cycles": cycles, "data_dir": "runs"})
    s = soak.summary
    assert s is not None and s["all_as_expected"]
    assert s["halts"] == vms * cycles == sum(s["halt_counts"].values())
    assert set(s["halt_counts"]) == set(HALTS.values())  # vms * cycles >= 5 covers every command
    assert s["resets_timed"] == vms * cycles
    assert 0 < s["ready_ms_median"] <= s["ready_ms_p95"] < 30_000
    assert 0 <= s["outliers"] < vms * cycles
    runs = tmp_path / "soak" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == sorted(s["run_dirs"])
    check_figures(soak, 2)

    # Another machine: the run folder moved elsewhere, the notebook given a path relative to its cwd.
    elsewhere = tmp_path / "colleague"
    elsewhere.mkdir()
    shutil.move(runs, elsewhere / "team-data")
    shared = report.run("shared_analysis", tmp_path / "shared", {"data_dir": "team-data"}, cwd=elsewhere)
    t = shared.summary
    assert t is not None
    assert t["runs"] == vms and t["vms"] == [f"soak-{i}" for i in range(vms)]
    assert sorted(t["halts_per_run"].values()) == [cycles] * vms
    assert set(t["halt_reasons"]) == set(s["halt_counts"])
    assert {"reset()", "wait_for_halt()", "inspect()"} <= set(t["call_kinds"])
    assert t["reset_ms_median"] > 0
    # The two runs are two QEMU processes: their CPU threads differ in the inspect diff.
    assert "cpus/0/thread-id" in t["diff_paths"]
    check_figures(shared, 2)


def soak(folder: Path, firmware: str, runs: int, commands: tuple[str, ...]) -> None:
    """A small reset soak as reset_soak.ipynb runs it, one VM at a time: halt, reset, wait for the banner."""
    for i in range(runs):
        with petri_nb.launch("tmk", firmware=firmware, name=f"{firmware}-{i}") as vm:
            vm.save_timeline(folder, interval=30)
            for command in commands:
                vm.console.write(command + "\n")
                vm.wait_for_halt(timeout=30)
                vm.reset()
                vm.console.expect(r"tmk: ready\r?\n", timeout=30)


def test_shared_analysis_compares_qboot_and_seabios_reset_soaks(tmp_path: Path) -> None:
    # 8 runs a set: the run is the comparison's unit, and 8 against 8 can reach p < 0.01.
    data = tmp_path / "team-data"
    soak(data / "qboot", "qboot", 8, ("reset", "poweroff", "reset"))
    soak(data / "bios", "bios", 8, ("reset", "poweroff", "reset"))
    rep = report.run("shared_analysis", tmp_path / "out", {"data_dir": str(data), "set_a": "qboot",
                                                             "set_b": str(data / "bios")})
    s = rep.summary
    assert s is not None and s["runs"] == 16
    assert s["hosts"] == [socket.gethostname()] and len(s["qemu_versions"]) == 1
    assert {k: (v["runs"], v["majority"], v["unstable"]) for k, v in s["flaky"].items()} == \
        {"qboot": (8, "RESET", False), "bios": (8, "RESET", False)}
    ab = s["ab"]
    assert ab["runs"] == {"A": 8, "B": 8} and ab["firmware"] == {"A": ["qboot"], "B": ["bios"]}
    assert ab["hosts"] == {"A": [socket.gethostname()], "B": [socket.gethostname()]}
    ready = ab["metrics"]["reset_to_ready"]
    assert (ready["n_a"], ready["n_b"]) == (8, 8)
    assert 0 < ready["median_a"] < ready["median_b"] < 30  # seconds: SeaBIOS reboots slower than qboot
    assert ready["verdict"] == "slower" and ready["p_value"] < 0.01 and ready["ci"][0] > 1
    assert ab["metrics"]["halt_reasons RESET"]["verdict"] == "no evidence"  # same commands, same halts
    assert s["diff_paths"] == []  # these runs took no inspect snapshot: nothing to diff, no error
    check_figures(rep, 3)  # halt reasons, call durations, the comparison
    shared = tmp_path / "out" / "runs_report.html"  # the notebook's working directory is its report folder
    assert shared.stat().st_size == s["report_bytes"] and shared.read_text().count('class="run"') >= 16


@pytest.mark.slow
def test_linux_agent_notebook_runs_the_agent_saves_restores_hotplugs_and_shuts_down(tmp_path: Path) -> None:
    rep = report.run("linux_agent", tmp_path / "out", timeout=300)
    s = rep.summary
    assert s is not None
    assert s["uname"].startswith("Linux ") and s["agent_exit_code"] == 0
    assert s["note_after_restore"] == "written before save"
    assert s["disk_sectors"] == 8 * 2048 and s["disk_gone_after_unplug"]
    assert s["halt"] == "POWER_OFF"
    check_figures(rep, 1)


@pytest.mark.slow
def test_own_guest_notebook_boots_a_uefi_disk_to_its_agent_and_leaves_the_image_unchanged(tmp_path: Path) -> None:
    rep = report.run("own_guest", tmp_path / "out", timeout=400)
    s = rep.summary
    assert s is not None
    assert s["boot_events"][-1] == "success" and "attempt" in s["boot_events"]
    assert s["uname"].startswith("Linux ") and s["agent_exit_code"] == 0
    assert bytes.fromhex(s["note"]) == b"\x00written by the notebook\xff"
    assert s["halt"] == "POWER_OFF" and s["image_unchanged"]
    check_figures(rep, 1)


def test_time_travel_notebook_steps_back_from_the_fault_to_its_cause(tmp_path: Path) -> None:
    rep = report.run("time_travel", tmp_path / "out", {"out_dir": str(tmp_path / "shared")})
    s = rep.summary
    assert s is not None
    assert s["halt"] == "TRIPLE_FAULT" and s["instruction"] == "int3" and s["notes"] >= 1
    assert s["at_fault"] == "int3" and s["one_step_back"] == "lidt" and s["idt_limit_before"] > 0
    assert s["screen_rows"] >= 1 and s["end_icount"] > 1000
    assert round((tmp_path / "shared" / "crash.html").stat().st_size / 1e3) == s["report_kb"] > 0
    check_figures(rep, 1)


def test_unknown_notebook_and_unknown_parameter_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(PetriError, match="no notebook 'nope'.*quickstart"):
        report.run("nope", tmp_path)
    with pytest.raises(PetriError, match="has no parameter.*cylces.*cycles"):
        report.run("reset_soak", tmp_path, {"cylces": 3})
    with pytest.raises(PetriError, match="not a Python identifier"):
        report.parse_parameters([("a-b", "1")])
    assert report.parse_parameters([("n", "5"), ("x", "2.5"), ("on", "true"), ("s", "runs")]) == \
        {"n": 5, "x": 2.5, "on": True, "s": "runs"}


def test_a_failing_cell_is_reported_by_name_and_the_html_is_still_written(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("n = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("print('<b>guest</b> says', n)"),
                nbformat.v4.new_code_cell("raise ValueError('boom ' + str(n))")]
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(report.NotebookFailed, match="ValueError: boom 7"):
        report.run(path, tmp_path / "out", {"n": 7}, timeout=60)
    html = (tmp_path / "out" / "bad.html").read_text()
    assert "&lt;b&gt;guest&lt;/b&gt; says 7" in html and "<b>guest</b>" not in html  # output text is escaped


def test_cli_report_bad_input_exits_2_with_a_message() -> None:
    proc = subprocess.run([sys.executable, "-m", "petri_nb.cli", "report", "no-such-notebook"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "petri-nb: no notebook 'no-such-notebook'" in proc.stderr


def test_petri_results_notebook_finds_the_flaky_test_and_groups_failures_in_real_runs_and_petris_own(
        tmp_path: Path) -> None:
    """A folder of petri results: two CI runs written as petri writes them (tests/petri_fixture.py), plus a
    run of our own tmk guest exported in petri's layout (a real triple fault)."""
    from petri_fixture import ci_tree

    from petri_nb.analysis.petri_log import export_petri_results

    results = ci_tree(tmp_path / "results")
    with petri_nb.launch("tmk", name="tmk_triplefault") as vm:
        vm.console.write("triplefault\n")
        vm.wait_for_halt(timeout=30)
        ours = vm.timeline()
    export_petri_results(ours, results, 1003)
    rep = report.run("petri_results", tmp_path / "out", {"results_dir": str(results)})
    s = rep.summary
    assert s is not None and s["runs"] == 3 and s["tests"] == 5
    assert s["unstable"] == ["x86_64::openvmm_uefi_x64_flaky"]
    assert s["failure_halts"] == ["TRIPLE_FAULT"]
    assert s["outcomes"]["failed_unstable"] == 1 and s["outcomes"]["incomplete"] == 2
    check_figures(rep, 1)
    assert "tmk_triplefault" in (tmp_path / "out" / "petri_results.html").read_text()


def test_screens_notebook_drives_grub_by_keyboard_and_checks_by_text_and_needle(tmp_path: Path) -> None:
    rep = report.run("screens", tmp_path / "out")
    s = rep.summary
    assert s is not None and s["menu_has_linux"] and s["menu_source"] == "vga-text"
    assert s["typed_boxes"] >= 1  # the command's output, found on the screen with its box
    assert not s["on_prompt_matched"] and s["back_matched"] and s["back_score"] >= 0.99
    assert s["inputs"] == ["down up", "c", "echo hello from a notebook\n", "esc"]
    assert (tmp_path / "out" / "needles" / "grub-menu.png").exists()
