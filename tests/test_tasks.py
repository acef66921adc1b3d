"""cancel_and_wait stops a task that swallows a cancel, as a loop around Python 3.11's
asyncio.timeout can when the cancel arrives as its deadline passes."""

from __future__ import annotations

import asyncio

from remediator.tasks import cancel_and_wait


async def test_a_task_that_swallows_a_cancel_is_cancelled_again_until_it_ends() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # what a suppressed TimeoutError does to a loop

    task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(2):
        await cancel_and_wait(task)
    assert task.cancelled()
    assert swallowed == 1


async def test_a_task_that_ended_with_an_error_is_not_raised_from() -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.ensure_future(broken())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert isinstance(task.exception(), RuntimeError)
