"""Parsing for ``%petri``: argument value types, the Subcommand row, and splitting a line.

Everything a typo can break is checked here, before a handler runs, so bad input is
a one-line ``UsageError`` naming the argument rather than a failure deep in a launch
or a runtime call. Nothing here knows about VMs.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import MagicArgumentParser

from ...guests.description import READY_MODES

#: One argument declaration: (flags, add_argument keywords).
Arg = tuple[tuple[str, ...], dict[str, Any]]


def arg(*flags: str, **options: Any) -> Arg:
    """Declare one argument of a subcommand (the parameters of ``add_argument``)."""
    return flags, options


def seconds(text: str) -> float:
    """A positive, finite number of seconds (a timeout of nan or inf would never fire)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive, finite number of seconds, not {text!r}")
    return value


def count(text: str) -> int:
    """A whole number of at least 1 (lines, bytes, instructions, runs, vCPUs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text!r}")
    return value


def index(text: str) -> int:
    """A whole number of 0 or more, decimal or 0x hex (a vCPU index)."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text!r}")
    return value


def score(text: str) -> float:
    """A match score threshold in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a score: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a score in (0, 1], not {text!r}")
    return value


def mebibytes(text: str) -> int:
    """Guest memory in MiB: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of MiB: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1 MiB, not {text!r}")
    return value


_SYMBOL = re.compile(r"[A-Za-z_.$][\w.$]*")


def where(text: str) -> int | str:
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


def path(text: str) -> str:
    """A host path; ``~`` is expanded as a shell would (a magic line is not run by one)."""
    if not text:
        raise argparse.ArgumentTypeError("empty path")
    return os.path.expanduser(text)


def one_of(kind: str, *choices: str) -> Callable[[str], str]:
    """A value from a fixed list, with an error that names the kind and lists the choices."""

    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"unknown {kind} {text!r}; use {', '.join(choices)}")
        return text

    parse.__name__ = kind
    return parse


def regex(text: str) -> re.Pattern[str]:
    """A Python regular expression, compiled now so a typo fails before any wait starts."""
    try:
        return re.compile(text)
    except re.error as e:
        raise argparse.ArgumentTypeError(f"bad regular expression {text!r}: {e}") from None


#: ``--ready`` words that are not regexes; "none" means "as soon as QEMU runs" (ready=None).
READY_WORDS = (*READY_MODES, "none")


def ready(text: str) -> str | None:
    """``--ready``: agent, boot, none (-> None) or a console regex that must compile."""
    if text == "none":
        return None
    if text in READY_WORDS:
        return text
    try:
        re.compile(text)
    except re.error as e:
        raise argparse.ArgumentTypeError(f"not agent, boot, none or a valid regular expression: {text!r} ({e})") \
            from None
    return text


@dataclass(frozen=True)
class Subcommand:
    """One ``%petri`` subcommand: its arguments, help and handler ``(session, vm, args) -> result``.

    ``needs_vm`` subcommands get the current VM (the dispatcher says how to get one when
    there is none); the others get None."""

    name: str
    help: str
    handler: Callable[..., Any] = field(compare=False)
    args: tuple[Arg, ...] = ()
    needs_vm: bool = True
    #: Groups of arguments of which at most one may be given (argparse mutually exclusive groups).
    exclusive: tuple[tuple[Arg, ...], ...] = ()
    #: Usage line after ``petri``, when argparse's own would mislead (it puts positionals last).
    synopsis: str | None = None
    parser: MagicArgumentParser = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        usage = None if self.synopsis is None else f"petri {self.name} {self.synopsis}"
        parser = MagicArgumentParser(prog=f"petri {self.name}", usage=usage, description=self.help)
        for flags, options in self.args:
            parser.add_argument(*flags, **options)
        for group_args in self.exclusive:
            group = parser.add_mutually_exclusive_group()
            for flags, options in group_args:
                group.add_argument(*flags, **options)
        object.__setattr__(self, "parser", parser)

    def usage(self) -> str:
        """``%petri NAME [options]``: the parser's usage without IPython's ``::`` block prefix."""
        return " ".join(self.parser.format_usage().split()[1:])


def one_line(text: object) -> str:
    """Collapse argparse's wrapped messages to one line (a UsageError is shown as one line)."""
    return " ".join(str(text).split())


def split(line: str, who: str = "%petri") -> list[str]:
    """Split a magic line with POSIX shell quoting."""
    try:
        return shlex.split(line)
    except ValueError as e:
        raise UsageError(f"{who}: cannot split arguments: {e}") from None


def is_run(line: str) -> bool:
    """Whether ``line`` is a ``run`` subcommand (whose rest is a shell command, not tokens)."""
    return line.split(None, 1)[:1] == ["run"]


def raw_command(line: str, skip: int) -> str:
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
