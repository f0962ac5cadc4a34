"""The screen watchdog keeps changed screens on the timeline; the stall detector marks console silence
(real QEMU, tmk)."""

from __future__ import annotations

import io
import json

import matplotlib
import pytest
from conftest import wait_until
from PIL import Image

import petri_nb
from petri_nb.errors import BadArgument
from petri_nb.records.timeline import screen_image

matplotlib.use("Agg")


def rows(vm: petri_nb.Vm, source: str, kind: str) -> list[dict]:
    df = vm.timeline()
    return df[(df["source"] == source) & (df["kind"] == kind)].to_dict("records")


def test_screen_rows_only_when_the_screen_changed(tmp_path) -> None:
    with petri_nb.launch("tmk", screen_watchdog=0.3, console_stall=None) as vm:
        wait_until(lambda: rows(vm, "screen", "screenshot"), timeout=15, what="the first screen row")
        vm.wait_for_screen(still_for=1.5, timeout=20)  # five looks at one still screen
        still = len(rows(vm, "screen", "screenshot"))
        vm.wait_for_screen(still_for=1.5, timeout=20)
        assert len(rows(vm, "screen", "screenshot")) == still  # an unchanged screen adds nothing
        vm.console.write("draw 7\n")
        vm.console.expect("drawn 7")
        drawn = vm.wait_for_screen(still_for=1.0, timeout=20)
        wait_until(lambda: len(rows(vm, "screen", "screenshot")) > still, timeout=15, what="a row for the drawing")
        newest = rows(vm, "screen", "screenshot")[-1]
        assert screen_image(newest["data"]).convert("RGB").tobytes() == drawn.tobytes()
        assert json.loads(newest["data"])["width"] == drawn.width
        vm.pause()  # a paused guest draws nothing: no looks
        vm.save_timeline(tmp_path)
        ax = petri_nb.plot.timeline(vm.timeline())
        buf = io.BytesIO()
        ax.figure.savefig(buf, format="png")
        assert len(ax.artists) == len(rows(vm, "screen", "screenshot"))  # one thumbnail per screen row
    saved = petri_nb.read_timelines(tmp_path)
    shots = saved[saved["source"] == "screen"]
    assert len(shots) >= 2 and all(isinstance(screen_image(d), Image.Image) for d in shots["data"])


def test_stall_is_marked_once_per_silence_and_not_while_paused() -> None:
    with petri_nb.launch("tmk", screen_watchdog=None, console_stall=1.0) as vm:
        wait_until(lambda: rows(vm, "console", "stall"), timeout=10, what="a stall row")
        stall = rows(vm, "console", "stall")[0]
        assert stall["detail"] == "no console output for 1 s"
        vm.wait_for_screen(still_for=2.5, timeout=20)
        assert len(rows(vm, "console", "stall")) == 1  # one silence, one row
        vm.console.write("echo again\n")
        vm.console.expect("again")
        wait_until(lambda: len(rows(vm, "console", "stall")) == 2, timeout=10, what="the next silence")
        vm.pause()
        vm.wait_for_screen(still_for=2.5, timeout=20)
        assert len(rows(vm, "console", "stall")) == 2  # paused time is not silence
        with pytest.raises(BadArgument):
            vm.watch_console(stall_after=-1)
        with pytest.raises(BadArgument, match=r"watch_console\(\): stall_after must be seconds > 0, or None"):
            vm.watch_console(stall_after=0)  # 0 is a time, but no period
        vm.watch_console(None)
        vm.watch_screen(None)
