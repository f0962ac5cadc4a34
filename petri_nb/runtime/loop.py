"""The runtime event loop (one daemon thread that owns every VM's asyncio work) and the ways onto it.

Why a thread of its own rather than the caller's loop (or nest-asyncio): a Jupyter
cell that blocks (in a ``Vm`` call, ``time.sleep`` or CPU work) stops the kernel's
loop, and with it anything scheduled there. VM event readers, console capture and
the live view must keep running regardless, so they live on this loop; the sync
``Vm`` facade and the ``AsyncVm`` methods hop onto it. The thread lives as long as
the process, which also makes it the right thread to fork QEMU from: the
parent-death signal is tied to the forking thread.

There are exactly two ways onto the loop: ``@runs_on_runtime_loop`` for coroutines
awaited from any loop, and ``run_blocking`` for threads that wait (the blocking twins
``Vm``, ``Console`` and ``Agent``, generated here from their async classes by
``blocking_twins`` so a twin cannot drift: same parameters, defaults and docs). Inside
``show_progress(...)`` a long blocking wait shows a progress bar (the magics use that).
"""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from .validation import check_arguments

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
    """Decorator: an ``async def`` that always executes on the runtime loop, awaited from any loop.

    It is also the public boundary: arguments are checked against the annotations first
    (petri_nb.runtime.validation), so a bad value never reaches the loop's work."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        check_arguments(fn, args, kwargs)
        coro = fn(*args, **kwargs)
        if on_runtime_loop():
            return await coro
        return await _from_other_loop(coro)  # type: ignore[arg-type]

    return wrapper


async def _from_other_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on the runtime loop from another loop: one hop there, one hop back.

    Lighter than ``wrap_future(run_coroutine_threadsafe(...))`` (no concurrent future in
    between); cancelling the awaiting task cancels the call on the runtime loop."""
    caller = asyncio.get_running_loop()
    answer: asyncio.Future[T] = caller.create_future()
    runtime = runtime_loop()
    tasks: list[asyncio.Task[None]] = []

    def deliver(value: Any, error: BaseException | None) -> None:  # on the caller's loop
        if answer.done():
            return
        if isinstance(error, asyncio.CancelledError):
            answer.cancel()
        elif error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(value)

    async def run() -> None:  # on the runtime loop
        value, error = None, None
        try:
            value = await coro
        except BaseException as e:  # handed to the caller's loop, which raises it
            error = e
        with contextlib.suppress(RuntimeError):  # the caller's loop was closed meanwhile
            caller.call_soon_threadsafe(deliver, value, error)

    runtime.call_soon_threadsafe(lambda: tasks.append(runtime.create_task(run())))
    try:
        return await answer
    except asyncio.CancelledError:
        runtime.call_soon_threadsafe(_cancel_hop, tasks, coro)
        raise


def _cancel_hop(tasks: list[asyncio.Task[None]], coro: Coroutine[Any, Any, Any]) -> None:
    """Cancel a hop's task. One cancelled before its first step never runs its body, so ``coro``
    is closed once the task is done (a no-op if it ran): no "never awaited" from a Ctrl-C."""
    for task in tasks:
        task.add_done_callback(lambda _: coro.close())
        task.cancel()


# -- blocking: threads that wait for the loop -------------------------------------

C = TypeVar("C", bound=type)

#: How long an abandoned call (a timeout, a halt, Ctrl-C) may take to clean up before we answer.
CANCEL_SETTLE = 5.0
#: A wait longer than this gets a progress bar (inside ``show_progress``).
PROGRESS_AFTER = 0.5
#: How often a blocked waiter wakes: ``_thread.interrupt_main()`` (a kernel's interrupt) only sets a
#: flag, which a thread asleep in a lock never sees; a timed wait lets Ctrl-C surface within this.
INTERRUPT_POLL = 0.05


@dataclass(frozen=True)
class _Progress:
    what: str
    timeout: float | None


_progress: contextvars.ContextVar[_Progress | None] = contextvars.ContextVar("petri_nb_progress", default=None)


@contextlib.contextmanager
def show_progress(what: str, timeout: float | None = None) -> Iterator[None]:
    """Blocking calls in this block show a progress bar saying ``what`` once they take a while."""
    token = _progress.set(_Progress(what, timeout))
    try:
        yield
    finally:
        _progress.reset(token)


class _BlockingCall:
    """One blocking call's hand-off: started by a loop callback, finished by releasing a lock.

    Cheaper than ``run_coroutine_threadsafe`` + ``Future.result()`` (no concurrent future,
    no chained callbacks, and the waiter is woken in the same loop step the call ends in,
    not one done-callback iteration later): measured ~10 µs less per call."""

    __slots__ = ("coro", "task", "done", "ended", "value", "error", "cancelled", "started")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro
        self.task: asyncio.Task[None] | None = None
        self.done = _thread.allocate_lock()
        self.done.acquire()
        self.ended = False  # set before ``done`` is released: a Ctrl-C between a waiter's acquire and
        # release leaves the lock held, and later waits go by this flag instead
        self.value: Any = None
        self.error: BaseException | None = None
        self.cancelled = False
        self.started = False  # the task has taken its first step

    def start(self) -> None:  # on the runtime loop
        if not self.cancelled:  # else cancel() has ended it
            self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        self.started = True
        try:
            if self.cancelled:  # cancel() ran between start() and this first step
                self.coro.close()
                raise asyncio.CancelledError
            self.value = await self.coro
        except asyncio.CancelledError:
            self.error = concurrent.futures.CancelledError()
        except BaseException as e:  # handed to the waiting thread, which raises it
            self.error = e
        finally:
            self.ended = True
            self.done.release()

    def cancel(self) -> None:  # on the runtime loop
        self.cancelled = True
        if self.task is not None:
            if self.started:  # else its first step sees `cancelled`: a task cancelled before that
                self.task.cancel()  # step never enters _run's try, so the call would never end
        elif not self.ended:  # Ctrl-C came before start() ran (or was even scheduled)
            self.coro.close()
            self.error = concurrent.futures.CancelledError()
            self.ended = True
            self.done.release()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the call ended (True) or ``timeout`` passed (False); Ctrl-C interrupts it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.ended:
            step = INTERRUPT_POLL if deadline is None else min(INTERRUPT_POLL, deadline - time.monotonic())
            if step <= 0:
                return False
            if self.done.acquire(timeout=step):
                self.done.release()  # stays "ended" for later waits
                break
        return True

    def unclaimed_value(self) -> Any:
        """The value of a call that ended well although its caller gave up on it (else None)."""
        if not self.ended or self.error is not None:
            return None
        value, self.value = self.value, None
        return value

    def result(self) -> Any:
        if self.error is not None:
            error, self.error = self.error, None  # no reference cycle through the traceback
            raise error
        return self.value


def run_blocking(coro: Coroutine[Any, Any, T], discard: Callable[[T], Awaitable[Any]] | None = None) -> T:
    """Run ``coro`` on the runtime loop and block this thread until it finishes; Ctrl-C cancels it.

    ``discard`` undoes a result nobody will receive: Ctrl-C can land just after ``coro`` ended (a
    launch that finished as the user pressed it), and that VM must not run on unowned."""
    if on_runtime_loop():
        coro.close()
        raise RuntimeError("blocking petri_nb call made on the runtime loop; await the AsyncVm instead")
    loop = runtime_loop()
    call = _BlockingCall(coro)
    try:
        loop.call_soon_threadsafe(call.start)  # in the try: a Ctrl-C right after it must still cancel
        progress = _progress.get()
        if progress is not None:
            _wait_with_bar(call, progress)
        call.wait()
        return call.result()  # type: ignore[no-any-return]
    except (KeyboardInterrupt, concurrent.futures.CancelledError):
        loop.call_soon_threadsafe(call.cancel)
        # Ctrl-C returns once the call has cleaned up (a cancelled save has resumed the guest).
        call.wait(CANCEL_SETTLE)
        if discard is not None and (value := call.unclaimed_value()) is not None:
            undo = asyncio.run_coroutine_threadsafe(_quietly(discard(value)), loop)
            with contextlib.suppress(concurrent.futures.TimeoutError):
                undo.result(CANCEL_SETTLE)
        raise


async def _quietly(aw: Awaitable[Any]) -> None:
    """Await ``aw`` for its effect only: its failure is logged, not raised into nobody's hands."""
    try:
        await aw
    except Exception as e:  # the caller is already raising its KeyboardInterrupt
        logging.getLogger(__name__).debug("discarding an unclaimed result failed: %r", e)


def _wait_with_bar(call: _BlockingCall, progress: _Progress) -> None:
    """Tick a tqdm bar while ``call`` runs (a local thread wait, not a QEMU poll)."""
    if call.wait(PROGRESS_AFTER):
        return
    from tqdm.auto import tqdm

    timeout = progress.timeout
    start = time.monotonic() - PROGRESS_AFTER
    bar = tqdm(total=timeout, desc=progress.what, unit="s", leave=False,
               bar_format="{desc}: {elapsed}" + (" / {total:.3g} s {bar}" if timeout else ""))
    try:
        while not call.wait(0.1):
            elapsed = time.monotonic() - start
            bar.update(min(elapsed, timeout or elapsed) - bar.n)
    finally:
        bar.close()


def blocking_twins(async_cls: type, *, wraps: dict[str, Callable[[Any], Any]] | None = None,
                   forward: tuple[str, ...] = (), skip: frozenset[str] = frozenset()) -> Callable[[C], C]:
    """Class decorator: give the sync class a blocking twin of every public coroutine method of
    ``async_cls`` (reaching it through ``self.aio``) that it does not define itself.

    ``wraps`` maps a method name to a function applied to its result (an AsyncAgent becomes an
    Agent); ``forward`` names plain attributes and methods read straight from ``self.aio``."""
    wraps = wraps or {}

    def decorate(cls: C) -> C:
        for name in public_coroutines(async_cls):
            if name not in skip and name not in vars(cls):
                setattr(cls, name, _twin(cls, async_cls, name, wraps.get(name)))
        for name in forward:
            if name not in vars(cls):
                setattr(cls, name, _forwarder(async_cls, name))
        return cls

    return decorate


def public_coroutines(cls: type) -> list[str]:
    """Names of the public ``async def`` instance methods of ``cls`` and its bases."""
    return sorted(name for name, member in inspect.getmembers(cls)
                  if not name.startswith("_") and inspect.iscoroutinefunction(member)
                  and not isinstance(inspect.getattr_static(cls, name), (classmethod, staticmethod)))


def _twin(cls: type, async_cls: type, name: str, wrap: Callable[[Any], Any] | None) -> Callable[..., Any]:
    original = getattr(async_cls, name)

    if wrap is None:
        def twin(self: Any, *args: Any, **kwargs: Any) -> Any:
            return run_blocking(getattr(self.aio, name)(*args, **kwargs))
    else:
        def twin(self: Any, *args: Any, **kwargs: Any) -> Any:
            return wrap(run_blocking(getattr(self.aio, name)(*args, **kwargs)))

    twin.__name__ = name
    twin.__qualname__ = f"{cls.__name__}.{name}"
    twin.__doc__ = original.__doc__
    twin.__module__ = cls.__module__
    sig = inspect.signature(original)
    params = list(sig.parameters.values())
    sig = sig.replace(parameters=[params[0].replace(annotation=inspect.Parameter.empty), *params[1:]])
    if wrap is not None:
        sig = sig.replace(return_annotation=getattr(wrap, "__name__", sig.return_annotation))
    twin.__signature__ = sig  # type: ignore[attr-defined]
    twin.__annotations__ = {**getattr(original, "__annotations__", {}), "return": sig.return_annotation}
    twin.__wrapped__ = original  # type: ignore[attr-defined]  # where it comes from (tools/make_stubs.py)
    return twin


def _forwarder(async_cls: type, name: str) -> Any:
    member = inspect.getattr_static(async_cls, name, None)
    if callable(member) and not isinstance(member, property):
        original = getattr(async_cls, name)

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            return getattr(self.aio, name)(*args, **kwargs)

        method.__name__ = name
        method.__doc__ = original.__doc__
        method.__signature__ = inspect.signature(original)  # type: ignore[attr-defined]
        method.__wrapped__ = original  # type: ignore[attr-defined]
        return method
    def get(self: Any) -> Any:
        return getattr(self.aio, name)

    if isinstance(member, property) and member.fget is not None:
        get.__wrapped__ = member.fget  # type: ignore[attr-defined]  # its type, for tools/make_stubs.py
    return property(get, doc=member.__doc__ if isinstance(member, property) else None)
