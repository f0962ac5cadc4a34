"""``%petri`` / ``%%petri``: drive the current VM from notebook cells.

One line magic with subcommands rather than a dozen magics: one name to learn, one
``%petri?`` page. This module only dispatches: a line is split and parsed
(``arguments``), looked up in the subcommand table (``table``) and run by its handler
(``handlers``), which calls the public ``Vm`` facade. Bad input, every PetriError and
Ctrl-C during a wait become a one-line ``UsageError``: a notebook user sees what was
wrong, not a traceback.
"""

from __future__ import annotations

import argparse
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, kwds, magic_arguments

from ...errors import PetriError
from ...vm.facade import AsyncVm
from .arguments import Subcommand, is_run, one_line, raw_command, split
from .handlers import Interrupted, Session
from .output import PlainText, RunOutput, checkpoints_frame
from .table import SUBCOMMANDS, help_epilog

__all__ = ["SUBCOMMANDS", "PetriMagics", "PlainText", "RunOutput", "Subcommand", "checkpoints_frame",
           "load_ipython_extension"]


@magics_class
class PetriMagics(Magics):
    """``%petri`` and ``%%petri``; remembers only the current VM (``session.current``)."""

    def __init__(self, shell: Any = None) -> None:
        super().__init__(shell)
        self.session = Session()

    @property
    def _current(self) -> AsyncVm | None:
        """The current VM's AsyncVm, or None (tests peek at it between magic calls)."""
        vm = self.session.current
        return None if vm is None else vm.aio

    @magic_arguments()
    @kwds(epilog=help_epilog())
    @argument("subcommand", help="one of: " + ", ".join(SUBCOMMANDS))
    @argument("args", nargs=argparse.REMAINDER, help="the subcommand's arguments")
    @line_cell_magic
    def petri(self, line: str, cell: str | None = None) -> Any:
        """Drive petri_nb VMs: `%petri SUBCOMMAND [ARGS]`, or one subcommand per line in `%%petri`."""
        if cell is None:
            return self.run_line(line)
        if is_run(line):
            return self.run_script(line, cell)
        if line.strip():
            raise UsageError("%%petri takes no arguments on its first line (except `run`); put one subcommand per line")
        lines = cell.splitlines()
        first = next((i for i, text in enumerate(lines) if text.strip() and not text.lstrip().startswith("#")), None)
        if first is not None and is_run(lines[first]):
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
        tokens = split(line)
        if not tokens:
            raise UsageError(f"%petri needs a subcommand: {', '.join(SUBCOMMANDS)} (see %petri?)")
        if tokens[0] in ("-h", "--help", "help"):
            return PlainText(self.petri.__doc__ or "")
        try:
            top = self.petri.parser.parse_args(tokens)
        except UsageError as e:
            raise UsageError(f"%petri: {one_line(e)}") from None
        sub = SUBCOMMANDS.get(top.subcommand)
        if sub is None:
            raise UsageError(f"%petri: unknown subcommand {top.subcommand!r}; use one of: {', '.join(SUBCOMMANDS)}")
        try:
            args = sub.parser.parse_args(top.args)
        except UsageError as e:
            raise UsageError(f"%petri {sub.name}: {one_line(e)}") from None
        if sub.name == "run":
            args.script = raw_command(line, len(tokens) - len(args.command))
        return self._dispatch(sub, args)

    def run_script(self, line: str, script: str) -> Any:
        """``run [--timeout S]`` followed by a script: run the script in the guest as one command."""
        if not script.strip():
            return self.run_line(line)
        tokens = split(line, "%petri run")
        sub = SUBCOMMANDS["run"]
        try:
            args = sub.parser.parse_args(tokens[1:])
        except UsageError as e:
            raise UsageError(f"%petri run: {one_line(e)}") from None
        if args.command:
            raise UsageError("%petri run: give the command on the `run` line or as the rest of the cell, not both")
        args.script = script
        return self._dispatch(sub, args)

    def _dispatch(self, sub: Subcommand, args: argparse.Namespace) -> Any:
        vm = self.session.vm() if sub.needs_vm else None
        try:
            return sub.handler(self.session, vm, args)
        except PetriError as e:
            raise UsageError(f"%petri {sub.name}: {type(e).__name__}: {one_line(e)}") from None
        except KeyboardInterrupt as e:
            # The wait was cancelled on the runtime loop (run_blocking); a traceback would only
            # show the magic's own frames.
            what = f" while {e.what}" if isinstance(e, Interrupted) else ""
            raise UsageError(f"%petri {sub.name}: interrupted{what}") from None


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext petri_nb``: register ``%petri`` / ``%%petri``."""
    ipython.register_magics(PetriMagics)
