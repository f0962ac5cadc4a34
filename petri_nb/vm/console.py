"""The guest's serial console: everything it printed, plus pexpect-style waiting.

The text is untrusted guest output: it is kept verbatim here and escaped by
whatever renders it.
"""

from __future__ import annotations

import asyncio
import codecs
import re
import time
from collections.abc import Awaitable, Callable, Sequence

from ..errors import ConsoleFailure
from ..runtime.loop import blocking_twins, runs_on_runtime_loop
from ..runtime.validation import checked
from . import bounded_search
from .context import CallContext
from .twin_names import ConsoleTwins

#: Text kept in memory per VM (up to 1/8 more between trims); older text is dropped and
#: counted in ``dropped_chars``.
MAX_TEXT = 4 * 1024 * 1024
DEFAULT_EXPECT_TIMEOUT = 30.0
#: How long ``expect`` waits for more output when its match ends at the newest character and
#: could take more (``error \\d+`` on ``error 4``, the ``2`` still on its way).
GROWTH_WAIT = 0.1


class AsyncConsole:
    """Console of an AsyncVm. ``expect`` consumes text up to the end of its match."""

    def __init__(self, vm: CallContext, write: Callable[[bytes], Awaitable[None]]) -> None:
        self._vm = vm
        self._write = write
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        self._cursor = 0
        self._line_start = 0
        self._grew = asyncio.Event()
        self.dropped_chars = 0
        #: time.monotonic() of the newest output (for the stall detector, petri_nb.vm.watchdogs).
        self.last_output = time.monotonic()

    @property
    def text(self) -> str:
        """Everything the guest printed (up to MAX_TEXT of the newest text)."""
        return self._text

    @property
    def last_line(self) -> str:
        """The newest line, complete or not, without its newline (cheap: no copy of the text)."""
        end = len(self._text)
        while end and self._text[end - 1] in "\r\n":
            end -= 1
        return self._text[self._text.rfind("\n", 0, end) + 1:end].rstrip("\r")

    @checked
    def tail(self, lines: int = 20) -> str:
        return "\n".join(self._text.splitlines()[-lines:])

    def feed(self, data: bytes) -> None:
        """Called by the backend on the runtime loop with raw console bytes."""
        self._text += self._decoder.decode(data)
        self.last_output = time.monotonic()
        while (nl := self._text.find("\n", self._line_start)) >= 0:
            self._vm.record("console", "line", self._text[self._line_start:nl].rstrip("\r"))
            self._line_start = nl + 1
        if len(self._text) > MAX_TEXT + MAX_TEXT // 8:  # trim in steps, not on every chunk
            cut = len(self._text) - MAX_TEXT
            self._text = self._text[cut:]
            self.dropped_chars += cut
            self._cursor = max(0, self._cursor - cut)
            self._line_start = max(0, self._line_start - cut)
        self._grew.set()

    def flush_partial_line(self) -> None:
        """Record text after the last newline (e.g. a prompt) when no more output will come."""
        if self._line_start < len(self._text):
            self._vm.record("console", "line", self._text[self._line_start:].rstrip("\r"))
            self._line_start = len(self._text)

    @runs_on_runtime_loop
    async def write(self, text: str | bytes) -> None:
        data = text.encode() if isinstance(text, str) else text
        await self._vm.call("console.write", self._write(data))

    @runs_on_runtime_loop
    async def expect(
        self, pattern: str | re.Pattern[str], timeout: float | None = DEFAULT_EXPECT_TIMEOUT,
        fail: str | re.Pattern[str] | Sequence[str | re.Pattern[str]] = (),
    ) -> re.Match[str]:
        """Wait for ``pattern`` in text not yet consumed; raises VmHalted if the VM halts first, and
        ConsoleFailure as soon as one of the ``fail`` patterns (e.g. ``"Kernel panic"``) appears
        before it, instead of waiting out the timeout. A match that ends at the newest character
        and could take more (``error \\d+`` on ``error 4``) waits GROWTH_WAIT for the rest, unless
        the timeout is nearer than twice that: a match in time is never turned into a timeout."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        patterns = [fail] if isinstance(fail, (str, re.Pattern)) else fail
        failures = [re.compile(f) if isinstance(f, str) else f for f in patterns]
        deadline = None if timeout is None else time.monotonic() + timeout
        return await self._vm.call(
            "console.expect", self._search(regex, failures, deadline), halts=True, timeout=timeout,
            what=f"console output matching {regex.pattern!r}",
        )

    async def _search(self, regex: re.Pattern[str], failures: Sequence[re.Pattern[str]],
                      deadline: float | None) -> re.Match[str]:
        while True:
            self._grew.clear()
            match = bounded_search.search(regex, self._text, self._cursor)
            end = match.start() if match else len(self._text)  # only failures before the awaited text count
            bad = [m for f in failures if (m := bounded_search.search(f, self._text, self._cursor, end))]
            decisive = min(bad, key=lambda m: m.start()) if bad else match
            if decisive is None:
                await self._grew.wait()
                continue
            if bounded_search.may_grow(decisive) and await self._grows_before(deadline):
                continue  # search again with the rest of what the guest is printing
            self._cursor = decisive.end()
            if bad:
                raise ConsoleFailure(f"console showed failure pattern {decisive.re.pattern!r} while waiting for "
                                     f"{regex.pattern!r}: {self._line_around(decisive.start())!r}", decisive)
            return decisive

    async def _grows_before(self, deadline: float | None) -> bool:
        """Whether more output comes within GROWTH_WAIT; no wait once ``deadline`` is nearer than
        twice that, so the wait for a match's rest never turns it into a timeout."""
        if deadline is not None and deadline - time.monotonic() <= 2 * GROWTH_WAIT:
            return False
        try:
            await asyncio.wait_for(self._grew.wait(), GROWTH_WAIT)
        except TimeoutError:
            return False
        return True

    def mark(self) -> int:
        """Where the console is now, as a count of every character printed (trimming keeps it valid)."""
        return self.dropped_chars + len(self._text)

    def skip_to(self, mark: int) -> None:
        """``expect`` ignores what was printed before ``mark`` (a reset: the previous boot's output)."""
        self._cursor = max(self._cursor, mark - self.dropped_chars)

    async def _shown_since(self, regex: re.Pattern[str], mark: int, timeout: float | None) -> re.Match[str]:
        """Wait until text printed after ``mark`` matches, without consuming it for ``expect``
        (readiness: a user's own ``expect`` of the banner still finds it)."""
        async def search() -> re.Match[str]:
            while True:
                self._grew.clear()
                if match := bounded_search.search(regex, self._text, max(0, mark - self.dropped_chars)):
                    return match
                await self._grew.wait()
        return await self._vm.call("console.ready", search(), halts=True, timeout=timeout,
                                what=f"console output matching {regex.pattern!r}")

    def _line_around(self, pos: int) -> str:
        end = self._text.find("\n", pos)
        return self._text[self._text.rfind("\n", 0, pos) + 1:end if end >= 0 else None].rstrip("\r")[:300]


@blocking_twins(AsyncConsole, forward=("text", "last_line", "tail", "dropped_chars"))
class Console(ConsoleTwins):
    """Blocking face of AsyncConsole, for the sync ``Vm`` (methods generated from AsyncConsole)."""

    def __init__(self, aio: AsyncConsole) -> None:
        self.aio = aio

    def __repr__(self) -> str:
        return f"<Console {len(self.aio.text)} chars>"
