"""The runtime event loop: one daemon thread that owns every VM's asyncio work.

Why a thread of its own rather than the caller's loop (or nest-asyncio): a Jupyter
cell that blocks (in a ``Vm`` call, ``time.sleep`` or CPU work) stops the kernel's
loop, and with it anything scheduled there. VM event readers, console capture and
the live view must keep running regardless, so they live on this loop; the sync
``Vm`` facade (``petri_nb.blocking``) and the ``AsyncVm`` methods hop onto it. The thread lives as long as
the process, which also makes it the right thread to fork QEMU from: the
parent-death signal is tied to the forking thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def runtime_loop() -> asyncio.AbstractEventLoop:
    """The shared runtime loop, started on first use."""
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def main() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=main, name="petri_nb-runtime", daemon=True).start()
            ready.wait()
            _loop = loop
        return _loop


def on_runtime_loop() -> bool:
    try:
        return asyncio.get_running_loop() is _loop
    except RuntimeError:
        return False


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedule ``coro`` on the runtime loop from any thread; its result arrives in the future."""
    return asyncio.run_coroutine_threadsafe(coro, runtime_loop())


def runs_on_runtime_loop(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Decorator: an ``async def`` that always executes on the runtime loop, awaited from any loop."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        coro = fn(*args, **kwargs)
        if on_runtime_loop():
            return await coro
        return await asyncio.wrap_future(submit(coro))  # type: ignore[arg-type]

    return wrapper
