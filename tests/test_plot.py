"""petri_nb.analysis.plot draws timeline frames headless (Agg) into PNGs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import petri_nb  # noqa: E402
from petri_nb import HaltReason  # noqa: E402
from petri_nb.analysis.plot import REASON_COLORS  # noqa: E402
from petri_nb.records.timeline import empty_frame  # noqa: E402


@pytest.fixture(scope="module")
def two_runs() -> pd.DataFrame:
    """Two real tmk runs: one triple-faults, one is reset by its guest and then powers off."""
    frames = []
    for commands in (["triplefault"], ["reset", "poweroff"]):
        with petri_nb.launch("tmk") as vm:
            for command in commands:
                vm.console.write(command + "\n")
                halt = vm.wait_for_halt(timeout=20)
                if halt.reason is HaltReason.RESET:
                    vm.reset()
                    vm.console.expect("tmk: ready", timeout=20)
        frames.append(vm.timeline())
    return pd.concat(frames, ignore_index=True)


def _colors_in(png: Path) -> set[tuple[int, int, int]]:
    img = Image.open(png).convert("RGB")
    return {c for _, c in img.getcolors(maxcolors=1 << 20)}


def _rgb(name: str) -> tuple[int, int, int]:
    return tuple(round(v * 255) for v in mcolors.to_rgb(name))


def test_timeline_plot_has_a_lane_per_run_and_halt_colours(two_runs: pd.DataFrame, tmp_path: Path):
    ax = petri_nb.plot.timeline(two_runs)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(dict.fromkeys(two_runs["vm"]))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"qmp", "runtime", "console", "halt: TRIPLE_FAULT", "halt: RESET", "halt: POWER_OFF"} <= set(legend)
    png = tmp_path / "timeline.png"
    ax.figure.savefig(png, dpi=80)
    colors = _colors_in(png)
    for reason in ("TRIPLE_FAULT", "RESET", "POWER_OFF"):
        assert _rgb(REASON_COLORS[reason]) in colors, reason


def test_halt_reasons_counts_per_run(two_runs: pd.DataFrame, tmp_path: Path):
    ax = petri_nb.plot.halt_reasons(two_runs)
    heights = sorted(round(p.get_height()) for p in ax.patches if p.get_height() > 0)
    assert heights == [1, 1, 1]  # run 1: TRIPLE_FAULT; run 2: RESET and POWER_OFF
    ax.figure.savefig(tmp_path / "halts.png", dpi=80)
    assert (tmp_path / "halts.png").stat().st_size > 1000


def test_call_durations_one_row_per_call_kind(two_runs: pd.DataFrame, tmp_path: Path):
    ax = petri_nb.plot.call_durations(two_runs)
    kinds = [t.get_text() for t in ax.get_yticklabels()]
    assert {"reset()", "wait_for_halt()", "console.write()"} <= set(kinds)
    ax.figure.savefig(tmp_path / "calls.png", dpi=80)


def test_plots_of_empty_and_wrong_frames(tmp_path: Path):
    empty = empty_frame()
    for fn in (petri_nb.plot.timeline, petri_nb.plot.halt_reasons, petri_nb.plot.call_durations):
        fn(empty).figure.savefig(tmp_path / f"{fn.__name__}.png")
        with pytest.raises(petri_nb.PetriError, match="timeline"):
            fn(pd.DataFrame({"x": [1]}))
