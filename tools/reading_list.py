"""The petri_nb modules a newcomer reads to follow ``%petri reset`` end to end, counted from the code that runs.

    PYTHONPATH=. .venv/bin/python tools/reading_list.py [-v]   # boots tmk, profiles one %petri reset

It boots tmk from an in-process IPython shell (as a notebook would), then profiles one
``%petri reset``: every petri_nb module in which a function runs during it, on any thread
(the kernel's and the runtime loop's), is one to read. A module that is only imported, or
whose code ran only at launch, is not counted; ``-v`` lists the modules.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "petri_nb"


def _module_of(filename: str) -> str | None:
    path = Path(filename)
    if not path.is_relative_to(PACKAGE) or path.suffix != ".py":
        return None
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_run_by(line: str, shell: Any) -> set[str]:
    """The petri_nb modules with a function call while ``%petri <line>`` runs."""
    seen: set[str] = set()
    files: dict[str, str | None] = {}
    on = threading.Event()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and on.is_set():
            name = frame.f_code.co_filename
            if name not in files:
                files[name] = _module_of(name)
            if (module := files[name]) is not None:
                seen.add(module)

    threading.setprofile(profile)  # threads started during the call
    _on_runtime_loop(lambda: sys.setprofile(profile))  # the runtime loop's thread, already running
    sys.setprofile(profile)
    on.set()
    try:
        shell.run_line_magic("petri", line)
    finally:
        on.clear()
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
        _on_runtime_loop(lambda: sys.setprofile(None))
    return seen


def _on_runtime_loop(fn: Any) -> None:
    """Run ``fn`` on the runtime loop's thread and wait for it (a profiler is set per thread)."""
    from petri_nb.runtime.loop import runtime_loop

    done = threading.Event()

    def run() -> None:
        fn()
        done.set()

    runtime_loop().call_soon_threadsafe(run)
    done.wait(10)


def main() -> int:
    from IPython.core.interactiveshell import InteractiveShell

    import petri_nb
    from petri_nb.vm.facade import live_vms

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "petri_nb")
    shell.run_line_magic("petri", "launch tmk")
    try:
        modules = modules_run_by("reset", shell)
    finally:
        for aio in live_vms():
            petri_nb.Vm(aio).teardown()
    if "-v" in sys.argv[1:]:
        for module in sorted(modules):
            print(module)
    print(f"%petri reset runs code in {len(modules)} petri_nb modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
