"""The timers' loop: it sleeps until the next timer or a change, and never overlaps itself.

What is due and what running it does are the daemon's (tested through it elsewhere); here a
scripted `next_due` and `run_due` stand in for them so the loop itself is what is tested.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from remediator.clock import SystemClock
from remediator.errors import StoreUnavailable
from remediator.scheduler import MIN_GAP, Timers


class Scripted(Timers):
    """Timers whose next timer is `due` (None: none) and whose runs take `takes` seconds."""

    def __init__(self, due: float | None, takes: float = 0.0) -> None:
        nothing = cast(Any, None)
        super().__init__(nothing, nothing, nothing, nothing, SystemClock())
        self.due, self.takes = due, takes
        self.runs: list[float] = []
        self.running = 0
        self.overlapped = False
        self.ran = asyncio.Event()

    async def next_due(self) -> float | None:
        await asyncio.sleep(0.005)  # a read of the store
        return self.due

    async def run_due(self) -> None:
        self.running += 1
        self.overlapped |= self.running > 1
        self.runs.append(self.clock.now())
        await asyncio.sleep(self.takes)
        self.running -= 1
        self.ran.set()


async def test_a_slow_run_is_never_overlapped_and_nothing_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by the soak: an APScheduler job re-armed while its run was still going was skipped
    with a "maximum number of running instances reached" warning, 1,317 times in 30 minutes."""
    timers = Scripted(due=0.0, takes=0.1)  # always due, and each run is slow
    timers.start()
    try:
        for _ in range(30):  # changes keep coming while it runs
            timers.poke()
            await asyncio.sleep(0.01)
        async with asyncio.timeout(5):
            while len(timers.runs) < 3:
                await asyncio.sleep(0.01)
    finally:
        await timers.stop()
    assert not timers.overlapped
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_timer_still_due_after_its_run_does_not_spin() -> None:
    timers = Scripted(due=0.0)
    timers.start()
    await asyncio.sleep(0.3)
    await timers.stop()
    assert 2 <= len(timers.runs) <= 0.3 / MIN_GAP + 1


async def test_it_sleeps_until_the_timer_and_a_change_moves_it() -> None:
    clock = SystemClock()
    timers = Scripted(due=clock.now() + 3600)
    timers.start()
    try:
        await asyncio.sleep(0.05)
        assert timers.runs == []  # an hour away
        timers.due = clock.now() + 0.1
        timers.poke()
        async with asyncio.timeout(5):
            await timers.ran.wait()
        assert timers.runs[0] >= timers.due
    finally:
        await timers.stop()


async def test_no_timer_no_run_and_a_failing_run_is_logged_and_retried(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    timers = Scripted(due=None)
    timers.start()
    await asyncio.sleep(0.05)
    assert timers.runs == []
    monkeypatch.setattr("remediator.scheduler.RETRY_FIRST", 0.01)
    failures = 0

    async def failing() -> None:
        nonlocal failures
        failures += 1
        if failures == 1:
            raise StoreUnavailable("the store is gone")
        timers.ran.set()

    timers.run_due = failing  # type: ignore[method-assign]
    timers.due = 0.0
    timers.poke()
    try:
        async with asyncio.timeout(5):
            await timers.ran.wait()
    finally:
        await timers.stop()
    assert failures == 2
    assert "the timers cannot read the store (the store is gone); trying again" in caplog.text
