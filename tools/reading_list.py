"""The petri_nb modules a newcomer reads to follow ``%petri reset`` end to end, counted from the code that runs.

    PYTHONPATH=. .venv/bin/python tools/reading_list.py [-v] [--json] [LINE]   # default LINE: reset

It boots tmk from an in-process IPython shell (as a notebook would), then profiles one
``%petri reset`` and counts three rings of modules:

- **the spine**, the reading list: every module with a frame on the stack whenever the call
  waits (on QEMU through qemu.qmp, on an asyncio wait, or the kernel's thread on the runtime
  loop). These are the calls the reset goes down through, from the magic to QMP and back;
- **the call path**: the spine plus the leaves it calls on the way, which return without waiting
  (argument parsing, the timeline's record, the run state's transition). A reader meets each
  as one named call with a docstring;
- **while it runs**: every module with a function running on any thread in that time, adding
  the VM's standing machinery (the QMP event pump, the serial tap, the console readers) that
  serves every call alike.

The call's own code is told from the standing machinery by a context variable set for the call:
asyncio copies the context into every task and callback the call starts, threads started before
it do not have it. A module that is only imported, or whose code ran only at launch, is not
counted; ``-v`` lists the modules.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import qemu.qmp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "petri_nb"
QMP_PACKAGE = Path(qemu.qmp.__file__).parent
#: (file, function) of the waits that are not qemu.qmp's: the call's task waiting, the kernel's thread waiting.
WAITS = {
    (str(Path(asyncio.__file__).parent / "locks.py"), "wait"),
    (str(Path(asyncio.__file__).parent / "tasks.py"), "wait"),
    (str(Path(asyncio.__file__).parent / "tasks.py"), "wait_for"),
    (str(Path(asyncio.__file__).parent / "tasks.py"), "sleep"),
    (str(Path(concurrent.futures.__file__).parent / "_base.py"), "result"),
    (threading.__file__, "wait"),
}

LOCK = type(threading.Lock())

IN_CALL: contextvars.ContextVar[bool] = contextvars.ContextVar("in_call", default=False)


def _module_of(filename: str) -> str | None:
    path = Path(filename)
    if not path.is_relative_to(PACKAGE) or path.suffix != ".py":
        return None
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_wait(frame: FrameType) -> bool:
    name = frame.f_code.co_filename
    return Path(name).is_relative_to(QMP_PACKAGE) or (name, frame.f_code.co_name) in WAITS


@dataclass
class Rings:
    spine: set[str] = field(default_factory=set)
    call_path: set[str] = field(default_factory=set)
    running: set[str] = field(default_factory=set)


def modules_run_by(line: str, shell: Any) -> Rings:
    """The petri_nb modules in each ring while ``%petri <line>`` runs."""
    rings = Rings()
    modules: dict[str, str | None] = {}
    on = threading.Event()

    def module(frame: FrameType) -> str | None:
        name = frame.f_code.co_filename
        if name not in modules:
            modules[name] = _module_of(name)
        return modules[name]

    def down_to(frame: FrameType | None) -> None:
        while frame is not None:
            if (name := module(frame)) is not None:
                rings.spine.add(name)
            frame = frame.f_back

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if not on.is_set():
            return
        if event == "c_call":  # a thread blocking on a lock (the kernel's, on the runtime loop)
            if IN_CALL.get() and getattr(arg, "__self__", None).__class__ is LOCK and arg.__name__ == "acquire":
                down_to(frame)
            return
        if event != "call":
            return
        if (own := module(frame)) is not None:
            rings.running.add(own)
        if not IN_CALL.get():
            return
        if own is not None:
            rings.call_path.add(own)
        elif _is_wait(frame):
            down_to(frame.f_back)

    threading.setprofile(profile)  # threads started during the call
    _on_runtime_loop(lambda: sys.setprofile(profile))  # the runtime loop's thread, already running
    sys.setprofile(profile)
    on.set()
    token = IN_CALL.set(True)
    try:
        shell.run_line_magic("petri", line)
    finally:
        IN_CALL.reset(token)
        on.clear()
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
        _on_runtime_loop(lambda: sys.setprofile(None))
    return rings


def _on_runtime_loop(fn: Any) -> None:
    """Run ``fn`` on the runtime loop's thread and wait for it (a profiler is set per thread)."""
    from petri_nb.runtime.loop import runtime_loop

    done = threading.Event()

    def run() -> None:
        fn()
        done.set()

    runtime_loop().call_soon_threadsafe(run)
    done.wait(10)


def main(argv: list[str]) -> int:
    from IPython.core.interactiveshell import InteractiveShell

    import petri_nb
    from petri_nb.vm.facade import live_vms

    words = [a for a in argv if not a.startswith("-")]
    line = " ".join(words) or "reset"
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "petri_nb")
    shell.run_line_magic("petri", "launch tmk")
    try:
        rings = modules_run_by(line, shell)
    finally:
        for aio in live_vms():
            petri_nb.Vm(aio).teardown()
    if "--json" in argv:
        print(json.dumps({ring: sorted(names) for ring, names in vars(rings).items()}))
        return 0
    if "-v" in argv:
        for name in sorted(rings.running):
            where = ("spine" if name in rings.spine else "leaf" if name in rings.call_path
                     else "beside the call")
            print(f"{name:45} {where}")
    print(f"%petri {line}: {len(rings.spine)} modules to read (its spine), {len(rings.call_path)} on its "
          f"call path with the leaves, {len(rings.running)} with code running while it runs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
