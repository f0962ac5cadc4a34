"""Arguments checked once, at the public boundary, against the signature's own annotations.

Every public coroutine of the VM, console and agent passes through
``loop.runs_on_runtime_loop``, which calls ``check_arguments`` before anything runs;
sync entry points use ``@checked``. So a NaN timeout, a number where text belongs or
a pattern that does not compile is a ``BadArgument`` naming the argument, raised in
the caller, never a stalled loop or a raw exception from deep inside. The rules come
from the annotations (``float | None``, ``str``...), plus three that annotations cannot
say: numbers must be finite, times (``timeout``, ``interval``) must not be negative, and
periods (``every``, ``stall_after``) must be more than 0. Checks are built once per
function, on first use.
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import math
import os
import re
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar, Union

from ..errors import BadArgument

F = TypeVar("F", bound=Callable[..., Any])
Check = Callable[[Any], bool]

#: Parameters that are durations: finite and >= 0 (None where the annotation allows it).
TIMES = frozenset({"timeout", "interval", "ready_timeout", "grace", "still_for"})
#: Parameters that are the period of something repeated (a watchdog, auto checkpoints): > 0, since 0
#: would spin its loop; None turns it off.
PERIODS = frozenset({"every", "stall_after", "screen_watchdog", "console_stall"})
#: Parameters that are regular expressions: they must compile.
PATTERNS = frozenset({"pattern", "regex", "fail"})
#: Longest time a call takes as a number (a year); longer is a slip, and None means no end.
MAX_SECONDS = 365 * 24 * 3600.0
_SKIP = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def _is_text(value: object) -> bool:
    if not isinstance(value, str) or "\0" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate: not text any guest or file can take
        return False
    return True


def _is_number(value: object) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


_SIMPLE: dict[Any, Check] = {
    Any: lambda v: True,
    type(None): lambda v: v is None,
    None: lambda v: v is None,
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: _is_number,
    str: _is_text,
    bytes: lambda v: isinstance(v, (bytes, bytearray, memoryview)),
}


def _check_for(tp: Any) -> Check | None:
    """A predicate for one annotation, or None when it cannot be checked cheaply."""
    if tp in _SIMPLE:
        return _SIMPLE[tp]
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        parts = [_check_for(t) for t in typing.get_args(tp)]
        if any(p is None for p in parts):
            return None
        return lambda v: any(p(v) for p in parts)  # type: ignore[misc]
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterable) and typing.get_args(tp):
        item = _check_for(typing.get_args(tp)[0])
        if item is None:
            return None
        kind = list if origin is list else tuple if origin is tuple else origin
        # A str or bytes is a sequence too, but never the one meant: a lone pattern is not a list of them.
        return lambda v: isinstance(v, kind) and not isinstance(v, (str, bytes)) and all(item(x) for x in v)
    if origin is not None:  # re.Pattern[str], os.PathLike[str], Callable[...], dict[...]
        tp = origin
    if tp is collections.abc.Callable:
        return callable
    if isinstance(tp, type):
        return lambda v: isinstance(v, tp)
    return None


def _describe(tp: Any) -> str:
    text = str(tp).replace("typing.", "").replace("NoneType", "None").replace("<class '", "").replace("'>", "")
    return re.sub(r"\b(\w+\.)+(\w+)", r"\2", text)


@functools.cache
def _checks(fn: Callable[..., Any]) -> tuple[list[str], dict[str, tuple[Check, str]]]:
    """(positional parameter names, name -> (check, expected)) for ``fn``."""
    sig = inspect.signature(fn)
    namespace = {**vars(typing), **getattr(fn, "__globals__", {}), "re": re, "os": os}
    checks: dict[str, tuple[Check, str]] = {}
    for name, param in sig.parameters.items():
        if param.kind in _SKIP or param.annotation is inspect.Parameter.empty or name == "self":
            continue
        try:
            tp = eval(param.annotation, namespace) if isinstance(param.annotation, str) else param.annotation
        except Exception:  # a name only known to type checkers: leave it to the function
            continue
        check = _check_for(tp)
        if check is not None:
            checks[name] = (check, _describe(tp))
    positional = [n for n, p in sig.parameters.items() if p.kind not in _SKIP and p.kind != p.KEYWORD_ONLY]
    return positional, checks


def check_arguments(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                    called: str | None = None) -> None:
    """Raise BadArgument naming the first argument of a call to ``fn`` (``called`` in the message,
    if the user called it by another name) that breaks its annotation."""
    positional, checks = _checks(fn)
    if not checks:
        return
    fn_name = called or fn.__name__
    given = dict(zip(positional, args, strict=False)) | kwargs
    for name, value in given.items():
        entry = checks.get(name)
        if entry is not None and not entry[0](value):
            if isinstance(value, str) and "str" in entry[1].split(" | "):
                raise BadArgument(f"{fn_name}(): {name} must be text without NUL characters or lone "
                                  f"surrogates, not {_show(value)}")
            raise BadArgument(f"{fn_name}(): {name} must be {entry[1]}, not {_show(value)}")
        if name in TIMES and _is_number(value) and not 0 <= value <= MAX_SECONDS:
            raise BadArgument(f"{fn_name}(): {name} must be a number of seconds from 0 to {MAX_SECONDS:g} "
                              f"(None waits without end), not {_show(value)}")
        if name in PERIODS and _is_number(value) and not 0 < value <= MAX_SECONDS:
            raise BadArgument(f"{fn_name}(): {name} must be seconds > 0, or None to turn it off "
                              f"(at most {MAX_SECONDS:g}), not {_show(value)}")
        if name in PATTERNS:
            for text in [value] if isinstance(value, str) else value if isinstance(value, (list, tuple)) else ():
                try:
                    re.compile(text)
                except (re.error, TypeError) as e:
                    raise BadArgument(f"{fn_name}(): {name} {text!r} is not a regular expression: {e}") from None


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def checked(fn: F) -> F:
    """Check a sync public function's arguments the same way (coroutines get it from the loop's decorator)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check_arguments(fn, args, kwargs)
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def path_list(paths: Any, caller: str) -> list[str | os.PathLike[str]]:
    """``paths`` as a list of paths or globs: one path, a glob, or an iterable of them (the readers of saved
    runs and of petri results take all three); a BadArgument naming ``caller`` otherwise."""
    if isinstance(paths, (str, os.PathLike)):
        items = [paths]
    elif isinstance(paths, collections.abc.Iterable) and not isinstance(paths, bytes):
        items = list(paths)
    else:
        raise BadArgument(f"{caller}() needs a path, a glob or a list of them, not {paths!r:.80}")
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise BadArgument(f"{caller}() paths must be str or os.PathLike, not {item!r:.80}")
    return items
