"""console.expect on output cut into chunks anywhere, as a serial line delivers it.

Pure logic: the console's text is fed by hand here, so each test chooses where the cut
falls; test_console_fail.py drives the same path from a real guest."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from petri_nb import ConsoleFailure
from petri_nb.runtime.loop import submit
from petri_nb.vm.console import AsyncConsole


class _TextOnly:
    """Stands in for the VM: the console's calls run as they are, its rows go nowhere."""

    def call(self, name: str, aw: Any, **options: Any) -> Any:
        return aw

    def record(self, *row: Any) -> None:
        pass


async def _searched(console: AsyncConsole, pattern: str, fail: list[str],
                    timeout: float = 10) -> asyncio.Task[re.Match[str]]:
    """Start expect and let it search what is there already."""
    task = asyncio.ensure_future(console.expect(pattern, timeout=timeout, fail=fail))
    for _ in range(5):
        await asyncio.sleep(0)  # a turn of the loop, not a wait for time
    return task


def _console(first_chunk: str) -> AsyncConsole:
    console = AsyncConsole(_TextOnly(), write=None)  # type: ignore[arg-type]
    console.feed(first_chunk.encode())
    return console


def test_a_number_cut_between_two_chunks_is_matched_whole() -> None:
    async def scenario() -> tuple[bool, str]:
        console = _console("boot\r\nfirmware error 4")
        task = await _searched(console, "never printed", [r"firmware error \d+"])
        held = not task.done()
        console.feed(b"2\r\n")
        with pytest.raises(ConsoleFailure) as info:
            await task
        return held, info.value.match[0]

    held, matched = submit(scenario()).result(timeout=20)
    assert held  # it did not decide on "firmware error 4" while the 2 was on its way
    assert matched == "firmware error 42"


def test_a_whole_prompt_at_the_end_of_the_output_is_matched_at_once() -> None:
    async def scenario() -> tuple[bool, str]:
        task = await _searched(_console("Debian GNU/Linux 12 box ttyS0\r\n\r\nbox login: "), "login: ", [])
        return task.done(), (await task)[0]

    assert submit(scenario()).result(timeout=20) == (True, "login: ")


def test_a_match_that_could_grow_is_still_given_when_no_more_output_comes() -> None:
    async def scenario() -> str:
        return (await (await _searched(_console("error 4"), r"error \d+", [])))[0]

    assert submit(scenario()).result(timeout=20) == "error 4"


def test_a_match_that_could_grow_is_given_at_once_when_the_timeout_is_near() -> None:
    async def scenario() -> tuple[bool, str]:
        task = await _searched(_console("error 4"), r"error \d+", [], timeout=0.15)
        return task.done(), (await task)[0]

    assert submit(scenario()).result(timeout=20) == (True, "error 4")  # not held into a timeout
