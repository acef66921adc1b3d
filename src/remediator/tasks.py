"""Stopping a background task for certain.

Python 3.11's `asyncio.timeout` can turn a cancel that arrives as its deadline passes into a
TimeoutError, and a loop that suppresses TimeoutError then carries on: a single `cancel()` and
`await task` waits for ever (a deposed leader that never stops its outbox, and never runs for
leader again). `cancel_and_wait` cancels again until the task has ended.
"""

from __future__ import annotations

import asyncio

AGAIN_AFTER = 0.1  # seconds: how long a cancel may take before it is sent again


async def cancel_and_wait(task: asyncio.Future[object] | asyncio.Task[object]) -> None:
    """Cancel `task` and wait until it has ended, cancelling again if it swallowed a cancel.
    Its own exception, if it ends with one, is its owner's to have logged: not raised here."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=AGAIN_AFTER)
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" at exit
