"""Giving up on an asyncio task without noise on the user's stderr.

A cancelled task can still end in an exception (qemu.qmp's ``accept`` raises an
AssertionError while cleaning up after a cancel); if nobody reads it, asyncio prints
"Task exception was never retrieved" with a traceback, which in a notebook lands in
the user's cell. ``abandon`` cancels the task and reads its outcome whenever it ends.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

_log = logging.getLogger(__name__)


def abandon(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` (if still running) and read its outcome when it ends (logged at debug level)."""
    task.cancel()
    task.add_done_callback(_read_outcome)


def _read_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        _log.debug("abandoned task ended with %r", error)
