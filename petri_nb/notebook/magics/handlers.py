"""What each ``%petri`` subcommand does: ``handler(session, vm, args) -> result``.

Handlers only call the public blocking facade (``Vm``, ``petri_nb.launch``), the same
calls a notebook user would type, so the magics cannot grow a second behaviour. Waits
run inside ``waiting(...)``: a progress bar says what is awaited, and Ctrl-C becomes a
one-line message naming it. The only state kept between cells is ``Session.current``.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from IPython.core.error import UsageError

from ...guests import OWN_GUEST_FIELDS
from ...model.halt import Halt
from ...runtime.loop import show_progress
from ...vm import facade
from ...vm.debug import hexdump
from ...vm.facade import Vm, live_vms
from ...vm.needles import Needle
from .arguments import one_line
from .output import PlainText, RunOutput, checkpoints_frame

#: The checkpoint ``%petri save`` writes and ``%petri restore`` reads: one state store, not two.
SAVED = "saved"

#: ``%petri launch`` options (argparse dests) passed to ``petri_nb.launch`` as keywords when given.
LAUNCH_OPTIONS = ("name", "accel", "kernel", "initrd", "append", "disks", "cdrom", "firmware", "firmware_vars",
                  "memory_mib", "cpus", "tpm", "agent", "ready", "ready_timeout", "boot_cache")


class Session:
    """The magics' only memory between cells: the current VM (the last launched or picked with ``use``)."""

    def __init__(self) -> None:
        self.current: Vm | None = None
        self.chosen = False  # a VM was made current (launch, use): no falling back to the newest one

    def vm(self) -> Vm:
        """The current VM (else the newest one running, e.g. launched from Python), or a UsageError
        saying how to get one."""
        vm = self.current
        if vm is None and not self.chosen and (running := live_vms()):
            vm = self.current = Vm(running[-1])  # a notebook that launched from Python and then uses %petri
        if vm is None or vm.torn_down:
            self.current = None
            raise UsageError("%petri: no current VM; start one with `%petri launch` or pick one with `%petri use`")
        return vm

    def make_current(self, vm: Vm) -> Vm:
        self.current = vm
        self.chosen = True
        return vm

    def forget(self, vm: Vm) -> None:
        if self.current is vm:
            self.current = None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a wait, carrying what was awaited (the dispatcher shows it as one line)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@contextlib.contextmanager
def waiting(what: str, timeout: float | None = None) -> Iterator[None]:
    """Blocking calls inside show a bar saying ``what`` once slow; Ctrl-C (the wait is cancelled)
    is re-raised as ``Interrupted(what)``."""
    try:
        with show_progress(what, timeout):
            yield
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(what) from None


# -- VMs: launch, pick, list, stop ------------------------------------------------

def launch(session: Session, _: None, args: argparse.Namespace, record: bool = False) -> Vm:
    # Only the options typed are passed, so a preset keeps its own defaults for the rest. With no
    # GUEST but the user's own files (--kernel, --disk, --cdrom), the guest is theirs, not tmk.
    options = {key: getattr(args, key) for key in LAUNCH_OPTIONS if hasattr(args, key)}
    if record:
        options["record"] = True
    guest = args.guest or ("your guest" if any(options.get(f) for f in OWN_GUEST_FIELDS) else "tmk")
    vm = None
    try:
        with waiting(f"launching {guest}" + (" (recording)" if record else ""), options.get("ready_timeout")):
            vm = facade.launch(args.guest, **options)
    except KeyboardInterrupt:  # after launch() returned, the VM is ours to take down
        if vm is not None:
            vm.teardown()
        raise
    return session.make_current(vm)


def use(session: Session, _: None, args: argparse.Namespace) -> Vm:
    vms = [Vm(aio) for aio in live_vms()]
    for vm in vms:
        if vm.name == args.name and not vm.torn_down:
            return session.make_current(vm)
    names = ", ".join(vm.name for vm in vms) or "none"
    raise UsageError(f"%petri use: no running VM named {args.name!r} (running: {names})")


def ls(session: Session, _: None, args: argparse.Namespace) -> pd.DataFrame:
    rows = [{
        "name": vm.name,
        "guest": vm.guest.name,
        "state": vm.state,
        "uptime_s": round(vm.uptime, 3),
        "last_halt": vm.last_halt.reason.name if vm.last_halt else None,
        "current": vm is session.current,
    } for vm in map(Vm, live_vms())]
    return pd.DataFrame(rows, columns=["name", "guest", "state", "uptime_s", "last_halt", "current"])


def teardown(session: Session, _: None, args: argparse.Namespace) -> None:
    targets = [Vm(aio) for aio in live_vms()] if args.all else [session.vm()]
    for vm in targets:
        with waiting(f"tearing down {vm.name}"):
            vm.teardown()
        session.forget(vm)


# -- run control -------------------------------------------------------------------

def reset(session: Session, vm: Vm, args: argparse.Namespace) -> None:
    with waiting(f"resetting {vm.name}", None if args.no_wait else vm.guest.ready_timeout):
        vm.reset(wait_ready=not args.no_wait)


def pause(session: Session, vm: Vm, args: argparse.Namespace) -> None:
    vm.pause()


def resume(session: Session, vm: Vm, args: argparse.Namespace) -> None:
    vm.resume()


def wait_halt(session: Session, vm: Vm, args: argparse.Namespace) -> Halt:
    with waiting(f"waiting for {vm.name} to halt", args.timeout):
        return vm.wait_for_halt(allow_reset=args.allow_reset, timeout=args.timeout)


def shutdown(session: Session, vm: Vm, args: argparse.Namespace) -> None:
    with waiting(f"shutting down {vm.name}"):
        vm.send_shutdown("reboot" if args.reboot else "poweroff")


# -- looking at it -------------------------------------------------------------------

def screenshot(session: Session, vm: Vm, args: argparse.Namespace) -> Any:
    return vm.screenshot()


def screen_text(session: Session, vm: Vm, args: argparse.Namespace) -> PlainText:
    text = vm.screen_text()
    return PlainText(f"{text}\n[read from the {'VGA text buffer' if text.source == 'vga-text' else 'pixels by OCR'}]")


def wait_screen(session: Session, vm: Vm, args: argparse.Namespace) -> Any:
    if args.text is None and not args.changed and args.still is None and args.like is None:
        raise UsageError("%petri wait-screen: needs --text REGEX, --changed, --still S or --like NEEDLE")
    with waiting(f"waiting for {vm.name}'s screen", args.timeout):
        return vm.wait_for_screen(text=None if args.text is None else args.text.pattern, changed=args.changed,
                                  still_for=args.still, timeout=args.timeout, like=args.like)


def needle(session: Session, vm: Vm, args: argparse.Namespace) -> PlainText:
    cut = Needle.from_screen(vm, (args.x, args.y, args.w, args.h), name=args.name, threshold=args.threshold)
    return PlainText(f"needle {cut.name!r} ({args.w}x{args.h} at {args.x},{args.y}) saved as {cut.save(args.dir)}")


def type_(session: Session, vm: Vm, args: argparse.Namespace) -> None:
    vm.keyboard.type(" ".join(args.text) + ("\n" if args.enter else ""))


def key(session: Session, vm: Vm, args: argparse.Namespace) -> None:
    vm.keyboard.press(*args.combos, hold=args.hold)


def inspect(session: Session, vm: Vm, args: argparse.Namespace) -> pd.DataFrame:
    with waiting(f"inspecting {vm.name}"):
        return vm.inspect(args.path).to_frame()


def timeline(session: Session, vm: Vm, args: argparse.Namespace) -> pd.DataFrame:
    return vm.timeline()


# -- state: save/restore are one named checkpoint ---------------------------------

def save(session: Session, vm: Vm, args: argparse.Namespace) -> PlainText:
    with waiting(f"saving {vm.name}"):
        cp = vm.checkpoint(SAVED)
    return PlainText(f"saved {cp.size} bytes of state of {vm.name}")


def restore(session: Session, vm: Vm, args: argparse.Namespace) -> PlainText:
    if not any(cp.name == SAVED for cp in vm.checkpoints()):
        raise UsageError(f"%petri restore: nothing saved for {vm.name}; run `%petri save` first")
    with waiting(f"restoring {vm.name}"):
        cp = vm.rewind(SAVED)
    return PlainText(f"restored {vm.name} from {cp.size} bytes of state")


def checkpoint(session: Session, vm: Vm, args: argparse.Namespace) -> PlainText:
    with waiting(f"checkpointing {vm.name}"):
        cp = vm.checkpoint(args.name)
    return PlainText(f"checkpoint {cp.name}: {cp.size} bytes at uptime {cp.t:.3f} s")


def rewind(session: Session, vm: Vm, args: argparse.Namespace) -> PlainText:
    with waiting(f"rewinding {vm.name}"):
        cp = vm.rewind(args.name)
    return PlainText(f"rewound {vm.name} to checkpoint {cp.name} (uptime {cp.t:.3f} s)")


def checkpoints(session: Session, vm: Vm, args: argparse.Namespace) -> pd.DataFrame:
    return checkpoints_frame(vm.checkpoints())


# -- console and agent ---------------------------------------------------------------

def console(session: Session, vm: Vm, args: argparse.Namespace) -> PlainText:
    return PlainText(vm.console.tail(args.tail) if args.tail else vm.console.text)


def send(session: Session, vm: Vm, args: argparse.Namespace) -> None:
    vm.console.write(" ".join(args.text) + "\n")


def expect(session: Session, vm: Vm, args: argparse.Namespace) -> PlainText:
    with waiting(f"waiting for {args.regex.pattern!r} on {vm.name}'s console", args.timeout):
        match = vm.console.expect(args.regex, timeout=args.timeout)
    return PlainText(match.group(0))


def run(session: Session, vm: Vm, args: argparse.Namespace) -> RunOutput:
    if not args.script.strip():
        raise UsageError("%petri run: needs a command (or, in %%petri, a script after the `run` line)")
    with waiting(f"running a command in {vm.name}", args.timeout):
        agent = vm.wait_for_agent()
        return RunOutput(agent.run(args.script, timeout=args.timeout))


# -- debugging -------------------------------------------------------------------------

def regs(session: Session, vm: Vm, args: argparse.Namespace) -> pd.DataFrame:
    with waiting(f"reading {vm.name}'s registers"):
        frame = vm.registers(args.cpu)
    if not args.names:
        return frame
    known = {name.upper(): name for name in frame["register"]}
    wanted = [known.get(name.upper()) for name in args.names]
    unknown = [name for name, found in zip(args.names, wanted, strict=True) if found is None]
    if unknown:
        raise UsageError(f"%petri regs: unknown register {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(sorted(set(frame['register'])))}")
    return frame[frame["register"].isin(wanted)].reset_index(drop=True)


def x(session: Session, vm: Vm, args: argparse.Namespace) -> PlainText:
    with waiting(f"reading {vm.name}'s memory"):
        memory = vm.read_memory(args.addr, args.length, args.phys)
    return PlainText(hexdump(memory, memory.addr))


def dis(session: Session, vm: Vm, args: argparse.Namespace) -> pd.DataFrame:
    with waiting(f"disassembling {vm.name}"):
        return vm.disassemble(args.addr, args.count)


def break_(session: Session, vm: Vm, args: argparse.Namespace) -> PlainText:
    if args.delete:
        with waiting(f"removing a breakpoint from {vm.name}"):
            addr = vm.remove_breakpoint(args.addr)
        return PlainText(f"breakpoint at {describe(vm, addr)} removed")
    with waiting(f"setting a breakpoint in {vm.name}"):
        addr = vm.break_at(args.addr)
    return PlainText(f"breakpoint at {describe(vm, addr)}")


def step(session: Session, vm: Vm, args: argparse.Namespace) -> PlainText:
    with waiting(f"stepping {vm.name}"):
        pc = vm.step()
    return PlainText(f"stopped at {describe(vm, pc)}")


def continue_(session: Session, vm: Vm, args: argparse.Namespace) -> None:
    with waiting(f"continuing {vm.name}"):
        vm.continue_()


def describe(vm: Vm, addr: int) -> str:
    """``0x... (symbol+off)`` for an address inside a known symbol."""
    best = max(((a, n) for n, a in vm.symbols().items() if a <= addr), default=None)
    if best is None or addr - best[0] >= 0x1000:
        return f"0x{addr:x}"
    offset = addr - best[0]
    return f"0x{addr:x} ({best[1]}{f'+0x{offset:x}' if offset else ''})"


# -- time travel (a recorded run and its replay) ----------------------------------------------

def record(session: Session, _: None, args: argparse.Namespace) -> Vm:
    return launch(session, _, args, record=True)


def replay(session: Session, vm: Vm | None, args: argparse.Namespace) -> Vm:
    with waiting("opening the replay"):
        replayed = facade.replay(args.path) if args.path is not None else session.vm().replay()
    return session.make_current(replayed)


def rstep(session: Session, vm: Vm, args: argparse.Namespace) -> PlainText:
    return _backwards(vm, vm.reverse_step, f"stepping {vm.name} back")


def rcontinue(session: Session, vm: Vm, args: argparse.Namespace) -> PlainText:
    return _backwards(vm, vm.reverse_continue, f"running {vm.name} back to the previous breakpoint")


def _backwards(vm: Vm, go: Callable[[], int], what: str) -> PlainText:
    with waiting(what):
        pc = go()
    return PlainText(f"stopped at {describe(vm, pc)}, instruction {vm.icount()}")


def seek(session: Session, vm: Vm, args: argparse.Namespace) -> PlainText:
    target: int | str = args.icount if args.icount == "end" else int(args.icount, 0)
    with waiting(f"seeking {vm.name} to instruction {args.icount}"):
        icount = vm.seek(target)
    return PlainText(f"at instruction {icount}, {describe(vm, vm.register('EIP'))}")


# -- many VMs ------------------------------------------------------------------------------

def fleet(session: Session, _: None, args: argparse.Namespace) -> pd.DataFrame:
    from IPython.display import display

    from ... import fleet as fleets

    if args.experiment not in fleets.EXPERIMENTS:
        raise UsageError(f"%petri fleet: unknown experiment {args.experiment!r}; "
                         f"built-in experiments: {', '.join(sorted(fleets.EXPERIMENTS))}")
    if args.rundir is not None:
        try:
            Path(args.rundir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"%petri fleet: cannot use run directory {args.rundir!r}: {one_line(e)}") from None
    client = None
    if args.address is not None:
        client = fleets.connect(args.address)
    elif args.workers is not None:
        client = fleets.local_client(args.workers)
    try:
        result = fleets.run(args.experiment, runs=args.runs, client=client, rundir=args.rundir)
    finally:
        if client is not None:
            client.close()
    counts = result.halt_counts().rename_axis("halt_reason").rename("runs")
    display(counts.to_frame())
    outcomes = result.outcomes
    outcomes.attrs["rundir"] = str(result.rundir)
    return outcomes
