"""Searching guest text with a user's pattern, bounded in time.

A pattern that backtracks catastrophically (``(a|aa)+$`` on a line of a's) would hold the
runtime loop, and every VM on it, for seconds or forever: the stdlib engine cannot be
stopped once it runs. So the search runs in ``regex`` (the same syntax, safeguards against
the common cases, and a timeout for the rest); a search over budget is a PetriError naming
the pattern. The match handed back is still the stdlib's ``re.Match``, found again anchored
at the position ``regex`` found (where it succeeds at once).
"""

from __future__ import annotations

import functools
import re

import regex

from ..errors import BadArgument

#: Longest one search of the console's text may take on the runtime loop.
SEARCH_BUDGET = 0.5


@functools.lru_cache(maxsize=256)
def _bounded(pattern: str, flags: int) -> regex.Pattern[str] | None:
    try:
        return regex.compile(pattern, flags)
    except (regex.error, ValueError, TypeError):
        return None  # syntax only the stdlib takes: searched unbounded, as before


def search(pattern: re.Pattern[str], text: str, pos: int = 0, endpos: int | None = None) -> re.Match[str] | None:
    """``pattern.search(text, pos, endpos)``, but a PetriError if it would take over SEARCH_BUDGET."""
    end = len(text) if endpos is None else endpos
    fast = _bounded(pattern.pattern, pattern.flags)
    if fast is None:
        return pattern.search(text, pos, end)
    try:
        found = fast.search(text, pos, end, timeout=SEARCH_BUDGET)
    except TimeoutError:
        raise BadArgument(f"console pattern {pattern.pattern!r:.200} took over {SEARCH_BUDGET:g} s to search "
                          f"{end - pos} characters (catastrophic backtracking: nested repeats such as (a+)+ "
                          "or (a|aa)+); simplify it") from None
    if found is None:
        return None
    return pattern.match(text, found.start(), end) or pattern.search(text, pos, end)


@functools.lru_cache(maxsize=256)
def _longer_than(pattern: str, flags: int, length: int) -> regex.Pattern[str] | None:
    """``pattern``, matching only where it takes more than ``length`` characters."""
    try:
        return regex.compile(rf"(?:{pattern})(?<=\A[\s\S]{{{length + 1},}})", flags)
    except (regex.error, ValueError, TypeError, OverflowError):
        return None


def may_grow(match: re.Match[str]) -> bool:
    """Whether ``match`` reaches the end of its text and its pattern could take some of the text
    still to come: ``error \\d+`` on ``error 4`` while the ``2`` is on its way, where a literal
    prompt such as ``login: `` is already whole. Guest output arrives in chunks cut anywhere."""
    if match.end() != len(match.string) or match.end() == match.start():
        return False
    longer = _longer_than(match.re.pattern, match.re.flags, match.end() - match.start())
    try:
        return bool(longer and longer.match(match[0], partial=True, timeout=SEARCH_BUDGET))
    except TimeoutError:
        return False
