"""Run frames with the real timeline schema and known statistics, for the analysis tests.

Each run looks like a tmk reset soak as ``vm.timeline()`` records it: a runtime ``ready``
row at boot, then cycles of a guest halt, a host ``reset()`` call (its duration in
``data``) and the console's ``tmk: ready`` line. Durations are lognormal around
``scale`` times a base, with a per-run factor (a run's host load), so a set's spread
is like real runs'.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from petri_nb.timeline import Timeline

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
