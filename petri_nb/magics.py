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
import math
import re
import shlex
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import MagicArgumentParser, argument, kwds, magic_arguments

from .agent import AgentResult
from .blocking import run_blocking, show_progress
from .debug import hexdump
from .errors import PetriError
from .state import Checkpoint
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


def _index(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text!r}")
    return value


_SYMBOL = re.compile(r"[A-Za-z_.$][\w.$]*")


def _where(text: str) -> int | str:
    """An address (0x hex, decimal) or a kernel symbol name."""
    try:
        value = int(text, 0)
    except ValueError:
        if _SYMBOL.fullmatch(text):
            return text
        raise argparse.ArgumentTypeError(f"not an address (0x..., decimal) or symbol name: {text!r}") from None
    if not 0 <= value < 1 << 64:
        raise argparse.ArgumentTypeError(f"address out of range [0, 2**64): {text!r}")
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
    #: Groups of arguments of which at most one may be given (argparse mutually exclusive groups).
    exclusive: tuple[tuple[tuple[tuple[str, ...], dict[str, Any]], ...], ...] = ()
    #: AsyncVm method this subcommand calls when another module has added it.
    parser: MagicArgumentParser = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        parser = MagicArgumentParser(prog=f"petri {self.name}", description=self.help)
        for flags, options in self.args:
            parser.add_argument(*flags, **options)
        for group_args in self.exclusive:
            group = parser.add_mutually_exclusive_group()
            for flags, options in group_args:
                group.add_argument(*flags, **options)
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
               (_arg("--reboot", action="store_true", help="reboot instead of powering off"),)),
    Subcommand("screenshot", "The screen as a PIL image.", "_screenshot"),
    Subcommand("inspect", "The VM's inspect tree (only the branch at PATH) as a DataFrame.", "_inspect",
               (_arg("path", nargs="?", default=None, help="path prefix, e.g. vcpu/0"),)),
    Subcommand("timeline", "This VM's event timeline as a DataFrame.", "_timeline"),
    Subcommand("save", "Save the VM state in memory (for restore).", "_save"),
    Subcommand("restore", "Restore the state last saved with save.", "_restore"),
    Subcommand("console", "The serial console text (plain text).", "_console",
               (_arg("--tail", type=_count, default=None, help="only the last N lines"),)),
    Subcommand("send", "Write TEXT and a newline to the serial console.", "_send",
               (_arg("text", nargs="+", help="text (words are joined with single spaces)"),)),
    Subcommand("expect", "Wait for console output matching REGEX (single-quote it) and return the match.",
               "_expect", (
                   _arg("regex", help="Python regular expression"),
                   _arg("--timeout", type=_seconds, default=30.0, help="seconds to wait (default 30)"),
               )),
    Subcommand("run", "Run CMD with the guest's /bin/sh through the guest agent (Linux guest); show its output and "
               "exit code. In %%petri, a first line `run [--timeout S]` makes the rest of the cell one script.",
               "_run", (
                   _arg("--timeout", type=_seconds, default=60.0, help="kill the command after S seconds (default 60)"),
                   _arg("command", nargs=argparse.REMAINDER, help="shell command (the rest of the line, as typed)"),
               )),
    Subcommand("regs", "Registers (of vCPU N, only NAMEs if given) as a DataFrame.", "_regs", (
        _arg("--cpu", type=_index, default=None, help="vCPU index (default: all)"),
        _arg("names", nargs="*", metavar="NAME", help="register names, e.g. EIP CR0 CS.base"),
    )),
    Subcommand("x", "Hexdump LEN bytes of guest memory at ADDR (virtual unless --phys).", "_x", (
        _arg("addr", type=_where, metavar="ADDR", help="address (0x..., decimal) or kernel symbol"),
        _arg("length", type=_count, nargs="?", default=64, metavar="LEN", help="bytes (default 64)"),
        _arg("--phys", action="store_true", help="ADDR is a guest-physical address"),
    )),
    Subcommand("dis", "Disassemble COUNT instructions at ADDR or SYMBOL (default: the current one) as a DataFrame.",
               "_dis", (
                   _arg("addr", type=_where, nargs="?", default=None, metavar="ADDR", help="address or symbol"),
                   _arg("-n", dest="count", type=_count, default=20, metavar="COUNT", help="instructions (default 20)"),
               )),
    Subcommand("break", "Set a breakpoint at ADDR or SYMBOL (or remove it with --delete).", "_break", (
        _arg("addr", type=_where, metavar="ADDR", help="address or symbol"),
        _arg("--delete", action="store_true", help="remove the breakpoint instead"),
    )),
    Subcommand("step", "Execute one instruction of the stopped guest; show the new program counter.", "_step"),
    Subcommand("continue", "Let a guest stopped at a breakpoint (or paused) run again.", "_continue"),
    Subcommand("checkpoint", "Keep the VM state in memory under NAME (default cp-N).", "_checkpoint",
               (_arg("name", nargs="?", default=None, help="checkpoint name"),)),
    Subcommand("rewind", "Go back to checkpoint NAME (default: the latest).", "_rewind",
               (_arg("name", nargs="?", default=None, help="checkpoint name"),)),
    Subcommand("checkpoints", "The checkpoints taken so far as a DataFrame.", "_checkpoints"),
    Subcommand("fleet", "Run a built-in EXPERIMENT on N fresh VMs on a Dask cluster; the outcomes as a DataFrame.",
               "_fleet", (
                   _arg("experiment", help="built-in experiment name, e.g. halt-each"),
                   _arg("-n", dest="runs", type=_count, required=True, metavar="N", help="number of runs"),
                   _arg("--rundir", default=None, metavar="DIR", help="where timelines and outcomes go"),
               ), needs_vm=False, exclusive=((
                   _arg("--workers", type=_count, default=None, metavar="W", help="local cluster of W workers"),
                   _arg("--address", default=None, metavar="ADDR", help="existing Dask scheduler address"),
               ),)),
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
        "",
        "Exception: when the first line of a %%petri cell (or the %%petri line itself) is",
        "`run [--timeout S]`, the rest of the cell is one shell script run in the guest:",
        "    %%petri run --timeout 30",
        "    cd /tmp",
        "    ls -l | head",
        "ADDR is hex (0x...), decimal or a kernel symbol name (tmk has symbols).",
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
        if _is_run(line):
            return self.run_script(line, cell)
        if line.strip():
            raise UsageError("%%petri takes no arguments on its first line (except `run`); put one subcommand per line")
        lines = cell.splitlines()
        first = next((i for i, text in enumerate(lines) if text.strip() and not text.lstrip().startswith("#")), None)
        if first is not None and _is_run(lines[first]):
            try:
                return self.run_script(lines[first], "\n".join(lines[first + 1:]))
            except UsageError as e:
                raise UsageError(f"line {first + 1}: {e}") from None
        result = None
        for number, text in enumerate(lines, 1):
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
        if sub.name == "run":
            args.script = _raw_command(line, len(tokens) - len(args.command))
        return self._dispatch(sub, args)

    def run_script(self, line: str, script: str) -> Any:
        """``run [--timeout S]`` followed by a script: run the script in the guest as one command."""
        if not script.strip():
            return self.run_line(line)
        try:
            tokens = shlex.split(line)
        except ValueError as e:
            raise UsageError(f"%petri run: cannot split arguments: {e}") from None
        sub = SUBCOMMANDS["run"]
        try:
            args = sub.parser.parse_args(tokens[1:])
        except UsageError as e:
            raise UsageError(f"%petri run: {_one_line(e)}") from None
        if args.command:
            raise UsageError("%petri run: give the command on the `run` line or as the rest of the cell, not both")
        args.script = script
        return self._dispatch(sub, args)

    def _dispatch(self, sub: Subcommand, args: argparse.Namespace) -> Any:
        vm = self._current_vm() if sub.needs_vm else None
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

    def _run(self, vm: Vm, args: argparse.Namespace) -> RunOutput:
        if not args.script.strip():
            raise UsageError("%petri run: needs a command (or, in %%petri, a script after the `run` line)")

        async def run() -> AgentResult:
            agent = await vm.aio.wait_for_agent()
            return await agent.run(args.script, timeout=args.timeout)

        return RunOutput(_wait(run(), f"running a command in {vm.name}", timeout=args.timeout))

    def _regs(self, vm: Vm, args: argparse.Namespace) -> pd.DataFrame:
        frame = _wait(vm.aio.registers(args.cpu), f"reading {vm.name}'s registers")
        if not args.names:
            return frame
        known = {name.upper(): name for name in frame["register"]}
        wanted = [known.get(name.upper()) for name in args.names]
        unknown = [name for name, found in zip(args.names, wanted, strict=True) if found is None]
        if unknown:
            raise UsageError(f"%petri regs: unknown register {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(sorted(set(frame['register'])))}")
        return frame[frame["register"].isin(wanted)].reset_index(drop=True)

    def _x(self, vm: Vm, args: argparse.Namespace) -> PlainText:
        memory = _wait(vm.aio.read_memory(args.addr, args.length, args.phys), f"reading {vm.name}'s memory")
        return PlainText(hexdump(memory, memory.addr))

    def _dis(self, vm: Vm, args: argparse.Namespace) -> pd.DataFrame:
        return _wait(vm.aio.disassemble(args.addr, args.count), f"disassembling {vm.name}")

    def _break(self, vm: Vm, args: argparse.Namespace) -> PlainText:
        if args.delete:
            addr = _wait(vm.aio.remove_breakpoint(args.addr), f"removing a breakpoint from {vm.name}")
            return PlainText(f"breakpoint at {_describe(vm, addr)} removed")
        addr = _wait(vm.aio.break_at(args.addr), f"setting a breakpoint in {vm.name}")
        return PlainText(f"breakpoint at {_describe(vm, addr)}")

    def _step(self, vm: Vm, args: argparse.Namespace) -> PlainText:
        pc = _wait(vm.aio.step(), f"stepping {vm.name}")
        return PlainText(f"stopped at {_describe(vm, pc)}")

    def _continue(self, vm: Vm, args: argparse.Namespace) -> None:
        _wait(vm.aio.continue_(), f"continuing {vm.name}")

    def _checkpoint(self, vm: Vm, args: argparse.Namespace) -> PlainText:
        cp = _wait(vm.aio.checkpoint(args.name), f"checkpointing {vm.name}")
        return PlainText(f"checkpoint {cp.name}: {cp.size} bytes at uptime {cp.t:.3f} s")

    def _rewind(self, vm: Vm, args: argparse.Namespace) -> PlainText:
        cp = _wait(vm.aio.rewind(args.name), f"rewinding {vm.name}")
        return PlainText(f"rewound {vm.name} to checkpoint {cp.name} (uptime {cp.t:.3f} s)")

    def _checkpoints(self, vm: Vm, args: argparse.Namespace) -> pd.DataFrame:
        return checkpoints_frame(vm.checkpoints())

    def _fleet(self, _: None, args: argparse.Namespace) -> pd.DataFrame:
        from IPython.display import display

        from . import fleet

        if args.experiment not in fleet.EXPERIMENTS:
            raise UsageError(f"%petri fleet: unknown experiment {args.experiment!r}; "
                             f"built-in experiments: {', '.join(sorted(fleet.EXPERIMENTS))}")
        if args.rundir is not None:
            try:
                Path(args.rundir).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UsageError(f"%petri fleet: cannot use run directory {args.rundir!r}: {_one_line(e)}") from None
        client = None
        if args.address is not None:
            client = fleet.connect(args.address)
        elif args.workers is not None:
            client = fleet.local_client(args.workers)
        try:
            result = fleet.run(args.experiment, runs=args.runs, client=client, rundir=args.rundir)
        finally:
            if client is not None:
                client.close()
        counts = result.halt_counts().rename_axis("halt_reason").rename("runs")
        display(counts.to_frame())
        outcomes = result.outcomes
        outcomes.attrs["rundir"] = str(result.rundir)
        return outcomes

    def _teardown(self, _: None, args: argparse.Namespace) -> None:
        if args.all:
            targets = live_vms()
        else:
            targets = [self._current_vm().aio]
        for aio in targets:
            _wait(aio.teardown(), f"tearing down {aio.name}")
            self._forget(aio)


class RunOutput(PlainText):
    """A guest command's exit code, stdout and stderr as plain text; ``.result`` is the AgentResult."""

    result: AgentResult

    def __new__(cls, result: AgentResult) -> RunOutput:
        parts = [f"exit code {result.exit_code}" + ("" if result.ok else " (failed)")
                 + f" after {result.duration_s:.2f} s"]
        for name, data in (("stdout", result.stdout), ("stderr", result.stderr)):
            if data:
                parts.append(f"--- {name} ---\n" + data.decode(errors="replace").rstrip("\n"))
        obj = super().__new__(cls, "\n".join(parts))
        obj.result = result
        return obj

    @property
    def exit_code(self) -> int:
        return self.result.exit_code

    @property
    def ok(self) -> bool:
        return self.result.ok


def checkpoints_frame(checkpoints: list[Checkpoint]) -> pd.DataFrame:
    """One row per checkpoint, oldest first."""
    frame = pd.DataFrame({
        "name": pd.array([cp.name for cp in checkpoints], dtype="string"),
        "uptime_s": pd.array([cp.t for cp in checkpoints], dtype="float64"),
        "bytes": pd.array([cp.size for cp in checkpoints], dtype="int64"),
        "save_s": pd.array([cp.save_s for cp in checkpoints], dtype="float64"),
    })
    return frame


def _is_run(line: str) -> bool:
    return line.split(None, 1)[:1] == ["run"]


def _raw_command(line: str, skip: int) -> str:
    """The command as typed after ``skip`` tokens (quotes, pipes and spacing kept), minus a leading ``--``."""
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    for _ in range(skip):
        lexer.get_token()
    rest = lexer.instream.read().strip()
    if rest == "--" or rest.startswith("-- "):
        rest = rest[2:].strip()
    return rest


def _describe(vm: Vm, addr: int) -> str:
    """``0x... (symbol+off)`` for an address inside a known symbol."""
    best = max(((a, n) for n, a in vm.symbols().items() if a <= addr), default=None)
    if best is None or addr - best[0] >= 0x1000:
        return f"0x{addr:x}"
    offset = addr - best[0]
    return f"0x{addr:x} ({best[1]}{f'+0x{offset:x}' if offset else ''})"


def _wait(coro: Coroutine[Any, Any, Any], what: str, timeout: float | None = None) -> Any:
    """Run ``coro`` on the runtime loop with a progress bar saying what we wait for."""
    with show_progress(what, timeout):
        return run_blocking(coro)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext petri_nb``: register ``%petri`` / ``%%petri``."""
    ipython.register_magics(PetriMagics)
