"""``petri-nb``: the command line. ``petri-nb demo`` is the README's main job."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from . import HaltReason, PetriError, launch

#: tmk command -> the halt it must produce.
HALT_COMMANDS = {
    "poweroff": HaltReason.POWER_OFF,
    "reset": HaltReason.RESET,
    "triplefault": HaltReason.TRIPLE_FAULT,
    "panic": HaltReason.PANIC,
    "hibernate": HaltReason.HIBERNATE,
}


def demo(out: Path, accel: str) -> int:
    """Boot tmk, drive it through every halt reason, write a screenshot and the timeline."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    started = time.monotonic()
    with launch("tmk", accel=accel) as vm:
        print(f"launched {vm.name} ({accel}); guest ready after {vm.aio.uptime:.3f} s")
        vm.console.write("draw 5\n")
        vm.console.expect("drawn 5")
        shot = out / "screenshot.png"
        vm.screenshot().save(shot)
        for command, expected in HALT_COMMANDS.items():
            vm.console.write(command + "\n")
            halt = vm.wait_for_halt(timeout=30)
            rows.append({"command": command, "reason": halt.reason.name, "detail": halt.detail,
                         "t": round(halt.t, 3), "as_expected": halt.reason is expected})
            vm.reset()
            vm.console.expect("tmk: ready", timeout=30)
        timeline = vm.timeline()
    halts = pd.DataFrame(rows)
    print()
    print(halts.to_string(index=False))
    parquet = out / "timeline.parquet"
    timeline.to_parquet(parquet, index=False)
    timeline.to_csv(out / "timeline.csv", index=False)
    print()
    print(f"{len(timeline)} timeline events in {time.monotonic() - started:.2f} s")
    print(f"screenshot: {shot}")
    print(f"timeline:   {parquet} (and timeline.csv)")
    return 0 if halts["as_expected"].all() else 1


def runs_report_main(runs: list[str], out: Path, title: str | None, max_console_lines: int | None) -> int:
    from .analysis.runs_report import MAX_CONSOLE_LINES, runs_report

    if not runs:
        raise PetriError("runs-report: no RUNS given (run directories, folders of them, .parquet files or globs)")
    started = time.perf_counter()
    path = runs_report(runs, out, title=title,
                       max_console_lines=MAX_CONSOLE_LINES if max_console_lines is None else max_console_lines)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s")
    return 0


def cache_main(action: str) -> int:
    from .records.boot_cache import BootCache

    store = BootCache()
    if action == "clear":
        print(f"{store.root}: removed {store.clear()} boot cache entries")
        return 0
    table = store.table()
    if table.empty:
        print(f"{store.root}: no boot cache entries")
    else:
        print(table.to_string(index=False))
        print(f"{store.root}: {len(table)} entries, {table['MiB'].sum():.1f} of {store.limit / (1 << 20):.0f} MiB")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="petri-nb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="boot the tiny test kernel through every halt reason")
    p_demo.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default: out/demo)")
    p_demo.add_argument("--accel", default="tcg", choices=["tcg", "kvm", "auto"])
    sub.add_parser("build-tmk", help="rebuild the tiny test kernel from source into the package")
    p_report = sub.add_parser("report", help="run a notebook headless; write it as .ipynb, HTML and PNG figures")
    p_report.add_argument("notebook", help="a .ipynb path or a shipped notebook's name (quickstart, reset_soak, ...)")
    p_report.add_argument("--out", type=Path, default=None,
                          help="output folder, also the notebook's working directory (default: out/<notebook name>)")
    p_report.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                          help="set a parameter; VALUE is read as YAML (5, 2.5, true, text)")
    p_report.add_argument("--timeout", type=float, default=600, help="seconds each cell may take (default 600)")
    p_runs = sub.add_parser("runs-report", help="write one self-contained HTML file about saved runs")
    p_runs.add_argument("runs", nargs="*", metavar="RUNS",
                        help="run directories, folders of them, .parquet files or globs (as read_timelines takes)")
    p_runs.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    p_runs.add_argument("--title", default=None, help="the page title (default: petri_nb runs report: N runs)")
    p_runs.add_argument("--max-console-lines", type=int, default=None, metavar="N",
                        help="console lines shown per run, those nearest the halts first (default 1000)")
    p_cache = sub.add_parser("cache", help="list or clear the boot cache (launch(boot_cache=True))")
    p_cache.add_argument("action", choices=["ls", "clear"])
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return demo(args.out, args.accel)
        if args.command == "report":
            from .headless import main as report_main

            return report_main(args.notebook, args.out, args.parameter, args.timeout)
        if args.command == "cache":
            return cache_main(args.action)
        if args.command == "runs-report":
            return runs_report_main(args.runs, args.out, args.title, args.max_console_lines)
        from .guests.tmk import build

        print(build())
        return 0
    except PetriError as e:
        print(f"petri-nb: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
