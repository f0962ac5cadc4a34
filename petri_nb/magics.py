"""``%petri`` / ``%%petri``: drive the current VM from notebook cells.

One line magic with subcommands rather than a dozen magics: one name to learn,
one ``%petri?`` page. The subcommands are a table (``SUBCOMMANDS``); each row
declares its arguments for IPython's ``MagicArgumentParser`` and the handler that
runs it, so adding one (or wiring a runtime call another module adds later) is a
row. Bad input and every PetriError become a one-line ``UsageError``: a notebook
user sees what was wrong, not a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import math
import re
import shlex
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import MagicArgumentParser, argument, kwds, magic_arguments

from .errors import PetriError
from .loop import runtime_loop
from .vm import AsyncVm, Vm, launch_async, live_vms

#: Control characters a terminal or notebook would interpret (ANSI escapes, bells,
#: carriage returns); guest text is shown with them replaced.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class PlainText(str):
    """Text shown as plain text, for untrusted guest text: no HTML repr, control characters replaced."""

    def __new__(cls, text: str) -> PlainText:
        return super().__new__(cls, _CONTROL.sub("\ufffd", text.replace("\r\n", "\n")))

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive, finite number of seconds, not {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text!r}")
    return value


def _arg(*flags: str, **options: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    return flags, options


@dataclass(frozen=True)
class Subcommand:
    """One ``%petri`` subcommand: its arguments, help and handler (a PetriMagics method name)."""

    name: str
    help: str
    handler: str
    args: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = ()
    needs_vm: bool = True
    #: AsyncVm method this subcommand calls when another module has added it.
    requires: str | None = None
    parser: MagicArgumentParser = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        parser = MagicArgumentParser(prog=f"petri {self.name}", description=self.help)
        for flags, options in self.args:
            parser.add_argument(*flags, **options)
        object.__setattr__(self, "parser", parser)

    def usage(self) -> str:
        return "%" + " ".join(self.parser.format_usage().split()[1:])


SUBCOMMANDS: dict[str, Subcommand] = {s.name: s for s in (
    Subcommand("launch", "Boot GUEST (default tmk), make it the current VM and show it.", "_launch", (
        _arg("guest", nargs="?", default="tmk", help="guest name"),
        _arg("--name", help="VM name (default: GUEST-N)"),
        _arg("--accel", default="tcg", help="tcg (default), kvm or auto"),
    ), needs_vm=False),
    Subcommand("use", "Make the running VM called NAME the current one.", "_use",
               (_arg("name", help="VM name, see %%petri ls"),), needs_vm=False),
    Subcommand("ls", "List the running VMs as a DataFrame.", "_ls", needs_vm=False),
    Subcommand("reset", "Reset the VM (also restarts a halted one).", "_reset"),
    Subcommand("pause", "Pause the guest's CPUs.", "_pause"),
    Subcommand("resume", "Resume the guest's CPUs.", "_resume"),
    Subcommand("wait-halt", "Wait for the next halt and return it.", "_wait_halt", (
        _arg("--allow-reset", action="store_true", help="restart the VM on guest resets and keep waiting"),
        _arg("--timeout", type=_seconds, default=None, help="give up after this many seconds"),
    )),
    Subcommand("shutdown", "Ask the guest to power off (or reboot) cooperatively.", "_shutdown",
               (_arg("--reboot", action="store_true", help="reboot instead of powering off"),),
               requires="send_shutdown"),
    Subcommand("screenshot", "The screen as a PIL image.", "_screenshot"),
    Subcommand("inspect", "The VM's inspect tree (only the branch at PATH) as a DataFrame.", "_inspect",
               (_arg("path", nargs="?", default=None, help="path prefix, e.g. vcpu/0"),), requires="inspect"),
    Subcommand("timeline", "This VM's event timeline as a DataFrame.", "_timeline"),
    Subcommand("save", "Save the VM state in memory (for restore).", "_save", requires="save_state"),
    Subcommand("restore", "Restore the state last saved with save.", "_restore", requires="restore_state"),
    Subcommand("console", "The serial console text (plain text).", "_console",
               (_arg("--tail", type=_count, default=None, help="only the last N lines"),)),
    Subcommand("send", "Write TEXT and a newline to the serial console.", "_send",
               (_arg("text", nargs="+", help="text (words are joined with single spaces)"),)),
    Subcommand("expect", "Wait for console output matching REGEX (single-quote it) and return the match.",
               "_expect", (
                   _arg("regex", help="Python regular expression"),
                   _arg("--timeout", type=_seconds, default=30.0, help="seconds to wait (default 30)"),
               )),
    Subcommand("teardown", "Stop the current VM (or all of them) and free everything.", "_teardown",
               (_arg("--all", action="store_true", help="tear down every running VM"),), needs_vm=False),
)}


def _help_epilog() -> str:
    lines = ["subcommands:"]
    for sub in SUBCOMMANDS.values():
        lines.append(f"  {sub.usage()}")
        lines.append(f"      {sub.help}")
    lines += [
        "",
        "Subcommands act on the current VM: the last one launched or chosen with `use`.",
        "`%petri help` (or -h, --help) shows this text. %%petri runs one subcommand per line and",
        "stops at the first failure; blank lines and lines starting with # are skipped. Errors are",
        "reported as one-line UsageErrors.",
    ]
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@magics_class
class PetriMagics(Magics):
    """``%petri`` and ``%%petri``; remembers the current VM and saved states."""

    def __init__(self, shell: Any = None) -> None:
        super().__init__(shell)
        self._current: AsyncVm | None = None
        self._handles: dict[AsyncVm, Vm] = {}
        self._saved: dict[AsyncVm, bytes] = {}

    @magic_arguments()
    @kwds(epilog=_help_epilog())
    @argument("subcommand", help="one of: " + ", ".join(SUBCOMMANDS))
    @argument("args", nargs=argparse.REMAINDER, help="the subcommand's arguments")
    @line_cell_magic
    def petri(self, line: str, cell: str | None = None) -> Any:
        """Drive petri_nb VMs: `%petri SUBCOMMAND [ARGS]`, or one subcommand per line in `%%petri`."""
        if cell is None:
            return self.run_line(line)
        if line.strip():
            raise UsageError("%%petri takes no arguments on its first line; put one subcommand per line")
        result = None
        for number, text in enumerate(cell.splitlines(), 1):
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            if result is not None:
                from IPython.display import display

                display(result)
            try:
                result = self.run_line(text)
            except UsageError as e:
                raise UsageError(f"line {number}: {e}") from None
        return result

    def run_line(self, line: str) -> Any:
        """Parse and run one subcommand line."""
        try:
            tokens = shlex.split(line)
        except ValueError as e:
            raise UsageError(f"%petri: cannot split arguments: {e}") from None
        if not tokens:
            raise UsageError(f"%petri needs a subcommand: {', '.join(SUBCOMMANDS)} (see %petri?)")
        if tokens[0] in ("-h", "--help", "help"):
            return PlainText(self.petri.__doc__ or "")
        try:
            top = self.petri.parser.parse_args(tokens)
        except UsageError as e:
            raise UsageError(f"%petri: {_one_line(e)}") from None
        sub = SUBCOMMANDS.get(top.subcommand)
        if sub is None:
            raise UsageError(f"%petri: unknown subcommand {top.subcommand!r}; use one of: {', '.join(SUBCOMMANDS)}")
        try:
            args = sub.parser.parse_args(top.args)
        except UsageError as e:
            raise UsageError(f"%petri {sub.name}: {_one_line(e)}") from None
        vm = self._current_vm() if sub.needs_vm else None
        if sub.requires and vm is not None and not callable(getattr(vm.aio, sub.requires, None)):
            raise UsageError(f"%petri {sub.name}: not available yet (this petri_nb has no AsyncVm.{sub.requires})")
        try:
            return getattr(self, sub.handler)(vm, args)
        except PetriError as e:
            raise UsageError(f"%petri {sub.name}: {type(e).__name__}: {_one_line(e)}") from None

    # -- helpers ----------------------------------------------------------------

    def _current_vm(self) -> Vm:
        aio = self._current
        if aio is None or aio.torn_down:
            raise UsageError("%petri: no current VM; start one with `%petri launch` or pick one with `%petri use`")
        return self._handle(aio)

    def _handle(self, aio: AsyncVm) -> Vm:
        handle = self._handles.get(aio)
        if handle is None:
            for gone in [old for old in self._handles if old.torn_down]:
                self._forget(gone)
            handle = self._handles[aio] = Vm(aio)
        return handle

    def _forget(self, aio: AsyncVm) -> None:
        self._handles.pop(aio, None)
        self._saved.pop(aio, None)
        if self._current is aio:
            self._current = None

    # -- handlers: (vm or None, parsed args) -> result ----------------------------

    def _launch(self, _: None, args: argparse.Namespace) -> Vm:
        aio = _wait(launch_async(args.guest, name=args.name, accel=args.accel),
                    f"launching {args.guest}")
        self._current = aio
        return self._handle(aio)

    def _use(self, _: None, args: argparse.Namespace) -> Vm:
        for aio in live_vms():
            if aio.name == args.name and not aio.torn_down:
                self._current = aio
                return self._handle(aio)
        names = ", ".join(aio.name for aio in live_vms()) or "none"
        raise UsageError(f"%petri use: no running VM named {args.name!r} (running: {names})")

    def _ls(self, _: None, args: argparse.Namespace) -> pd.DataFrame:
        rows = [{
            "name": aio.name,
            "guest": aio.guest.name,
            "state": aio.state,
            "uptime_s": round(aio.uptime, 3),
            "last_halt": aio.last_halt.reason.name if aio.last_halt else None,
            "current": aio is self._current,
        } for aio in live_vms()]
        return pd.DataFrame(rows, columns=["name", "guest", "state", "uptime_s", "last_halt", "current"])

    def _reset(self, vm: Vm, args: argparse.Namespace) -> None:
        _wait(vm.aio.reset(), f"resetting {vm.name}")

    def _pause(self, vm: Vm, args: argparse.Namespace) -> None:
        vm.pause()

    def _resume(self, vm: Vm, args: argparse.Namespace) -> None:
        vm.resume()

    def _wait_halt(self, vm: Vm, args: argparse.Namespace) -> Any:
        return _wait(vm.aio.wait_for_halt(allow_reset=args.allow_reset, timeout=args.timeout),
                     f"waiting for {vm.name} to halt", timeout=args.timeout)

    def _shutdown(self, vm: Vm, args: argparse.Namespace) -> Any:
        return _wait(vm.aio.send_shutdown("reboot" if args.reboot else "poweroff"), f"shutting down {vm.name}")

    def _screenshot(self, vm: Vm, args: argparse.Namespace) -> Any:
        return vm.screenshot()

    def _inspect(self, vm: Vm, args: argparse.Namespace) -> pd.DataFrame:
        return _wait(vm.aio.inspect(args.path), f"inspecting {vm.name}").to_frame()

    def _timeline(self, vm: Vm, args: argparse.Namespace) -> pd.DataFrame:
        return vm.timeline()

    def _save(self, vm: Vm, args: argparse.Namespace) -> PlainText:
        data = _wait(vm.aio.save_state(), f"saving {vm.name}")
        self._saved[vm.aio] = data
        return PlainText(f"saved {len(data)} bytes of state of {vm.name}")

    def _restore(self, vm: Vm, args: argparse.Namespace) -> PlainText:
        data = self._saved.get(vm.aio)
        if data is None:
            raise UsageError(f"%petri restore: nothing saved for {vm.name}; run `%petri save` first")
        _wait(vm.aio.restore_state(data), f"restoring {vm.name}")
        return PlainText(f"restored {vm.name} from {len(data)} bytes of state")

    def _console(self, vm: Vm, args: argparse.Namespace) -> PlainText:
        return PlainText(vm.console.tail(args.tail) if args.tail else vm.console.text)

    def _send(self, vm: Vm, args: argparse.Namespace) -> None:
        vm.console.write(" ".join(args.text) + "\n")

    def _expect(self, vm: Vm, args: argparse.Namespace) -> PlainText:
        try:
            regex = re.compile(args.regex)
        except re.error as e:
            raise UsageError(f"%petri expect: bad regular expression {args.regex!r}: {e}") from None
        match = _wait(vm.aio.console.expect(regex, timeout=args.timeout),
                      f"waiting for {regex.pattern!r} on {vm.name}'s console", timeout=args.timeout)
        return PlainText(match.group(0))

    def _teardown(self, _: None, args: argparse.Namespace) -> None:
        if args.all:
            targets = live_vms()
        else:
            targets = [self._current_vm().aio]
        for aio in targets:
            _wait(aio.teardown(), f"tearing down {aio.name}")
            self._forget(aio)


def _wait(coro: Coroutine[Any, Any, Any], what: str, timeout: float | None = None) -> Any:
    """Run ``coro`` on the runtime loop; a progress bar says what we wait for if it takes a while.

    The bar ticks by waiting on the future with a short timeout (a local thread wait, not
    a QEMU poll). Ctrl-C cancels the call.
    """
    from tqdm.auto import tqdm

    fut = asyncio.run_coroutine_threadsafe(coro, runtime_loop())
    start = time.monotonic()
    bar: Any = None
    try:
        # Not fut.result(timeout=...): PetriTimeout is a TimeoutError, indistinguishable from "not yet".
        while not concurrent.futures.wait([fut], timeout=0.1).done:
            elapsed = time.monotonic() - start
            if bar is None and elapsed >= 0.5:
                bar = tqdm(total=timeout, desc=what, unit="s", leave=False,
                           bar_format="{desc}: {elapsed}" + (" / {total:.3g} s {bar}" if timeout else ""))
            if bar is not None:
                bar.update(min(elapsed, timeout or elapsed) - bar.n)
        return fut.result()
    except (KeyboardInterrupt, concurrent.futures.CancelledError):
        fut.cancel()
        raise
    finally:
        if bar is not None:
            bar.close()


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext petri_nb``: register ``%petri`` / ``%%petri``."""
    ipython.register_magics(PetriMagics)
