"""Work kept apart from its caller's fate: a user's callable on a thread of its own (one that
never returns ties up only itself), and an operation that finishes even when its caller is
cancelled (a save pauses the guest and must not stop half-way)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def in_own_thread(fn: Callable[[], T]) -> asyncio.Future[T]:
    """Run a user's callable on a daemon thread of its own, not in the pool the runtime uses
    (screendumps, save pipes, launch builds): a callable that never returns ties up only itself."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: Any, error: BaseException | None) -> None:
        if fut.done():
            return  # the call was abandoned (timeout, halt): nobody waits for it any more
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)

    def run() -> None:
        try:
            result = context.run(fn)
        except BaseException as e:  # handed to the awaiting call, as asyncio.to_thread would
            loop.call_soon_threadsafe(settle, None, e)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, name="petri_nb-user-call", daemon=True).start()
    return fut


async def finish_even_if_cancelled(aw: Awaitable[T]) -> T:
    """Await ``aw``; if the caller is cancelled meanwhile, let ``aw`` finish first, then re-raise.

    For operations that must not stop half-way (a save or restore pauses the guest and
    swaps QEMU): they are bounded by their own timeouts, so this cannot hang."""
    task = asyncio.ensure_future(aw)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        if not task.cancelled():
            task.exception()  # retrieved: the caller was cancelled, this outcome has no reader
        raise
