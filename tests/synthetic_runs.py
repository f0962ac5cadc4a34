"""Run frames with the real timeline schema and known statistics, for the analysis tests.

Each run looks like a tmk reset soak as ``vm.timeline()`` records it: a runtime ``ready``
row at boot, then cycles of a guest halt, a host ``reset()`` call (its duration in
``data``) and the console's ``tmk: ready`` line. Durations are lognormal around
``scale`` times a base, with a per-run factor (a run's host load), so a set's spread
is like real runs'.

``crashing_run`` is a Linux-like boot that oopses, with screens and a diagnosis: the
material of a runs report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from petri_nb.model.diagnosis import CONSOLE_LINES, Diagnosis, png_bytes
from petri_nb.model.oops import parse_oops
from petri_nb.model.screen import screen_row
from petri_nb.records.timeline import Timeline

RESET_S = 0.010
READY_AFTER_RESET_S = 0.004
BOOT_S = 0.080


def soak_run(rng: np.random.Generator, name: str, cycles: int, scale: float = 1.0,
             halts: tuple[str, ...] = ("RESET", "POWER_OFF")) -> pd.DataFrame:
    tl = Timeline(name)
    run_factor = rng.lognormal(0, 0.05)
    t = BOOT_S * scale * run_factor * rng.lognormal(0, 0.1)
    tl.record("console", "line", "tmk: ready", t=t - 0.0005)
    tl.record("runtime", "ready", "guest ready", t=t)
    for c in range(cycles):
        t += 0.001
        tl.record("runtime", "console.write()", "ok", {"duration_s": 5e-5 * rng.lognormal(0, 0.3)}, t=t)
        reason = halts[c % len(halts)]
        tl.record("halt", "halt", reason.lower(), reason=reason, t=t + 0.0005)
        t += 0.002
        duration = RESET_S * scale * run_factor * rng.lognormal(0, 0.3)
        tl.record("runtime", "reset()", "ok", {"duration_s": duration, "outcome": "ok", "error": None}, t=t)
        tl.record("qmp", "RESET", "guest=False", {"guest": False}, t=t + duration / 2)
        t += duration + READY_AFTER_RESET_S * scale * run_factor
        tl.record("console", "line", "tmk: ready", t=t)
    return tl.to_frame()


def soak_set(rng: np.random.Generator, runs: int, cycles: int = 20, scale: float = 1.0, name: str = "soak",
             halts: tuple[str, ...] = ("RESET", "POWER_OFF")) -> pd.DataFrame:
    """``runs`` runs named ``<name>-0``, ``<name>-1``... in one frame (as read_timelines returns them)."""
    return pd.concat([soak_run(rng, f"{name}-{i}", cycles, scale, halts) for i in range(runs)], ignore_index=True)


def _screen(text: str) -> Image.Image:
    """A 720x400 text-mode-like screen showing ``text``."""
    image = Image.new("RGB", (720, 400), "black")
    ImageDraw.Draw(image).multiline_text((8, 8), text, fill=(170, 170, 170))
    return image


def crashing_run(rng: np.random.Generator, name: str, lines: int = 300, screens: int = 3) -> pd.DataFrame:
    """A Linux-like boot that oopses: ``lines`` console lines, ``screens`` changed screens, a halt with a
    diagnosis (registers, screen, console tail, parsed oops), as the watchdogs and the diagnoser record them."""
    tl = Timeline(name)
    tl.record("runtime", "ready", "guest ready", t=0.05)
    t = 0.1
    said: list[str] = []
    for i in range(lines):
        t += rng.exponential(0.01)
        said.append(f"[{t:12.6f}] boot step {i}: probing device {rng.integers(1 << 16):04x}")
        tl.record("console", "line", said[-1], t=t)
        if screens and i % max(1, lines // screens) == 0:
            detail, data = screen_row(_screen("\n".join(said[-20:])))
            tl.record("screen", "screenshot", detail, data, t=t)
    oops = ["BUG: kernel NULL pointer dereference, address: 0000000000000008",
            "RIP: 0010:ext4_fill_super+0x1a2/0x2c0", "Call Trace:", " <TASK>",
            " mount_bdev+0x1c2/0x200", " legacy_get_tree+0x2b/0x50", " </TASK>",
            "Kernel panic - not syncing: Fatal exception"]
    for line in oops:
        t += 0.001
        said.append(line)
        tl.record("console", "line", line, t=t)
    regs = {"RIP": 0xFFFFFFFF81234567, "RSP": 0xFFFFC90000013E40, "EFL": 0x246, "CR0": 0x80050033,
            "CR2": 0x8, "CR3": 0x1A0A000, "CR4": 0x3406F0}
    tail = "\n".join(said[-CONSOLE_LINES:])
    diagnosis = Diagnosis({0: regs}, png_bytes(_screen(tail)), tail, parse_oops(tail), {}, 0.01)
    tl.record("halt", "halt", "guest panicked", {"diagnosis": diagnosis.to_dict()}, reason="PANIC", t=t + 0.01)
    return tl.to_frame()
