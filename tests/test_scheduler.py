"""The timers' loop: it sleeps until the next timer or a change, never overlaps itself, and reads
the store's timers only when it must (at start, after a run, when asked, every REREAD).

What is due and what running it does are the daemon's (tested through it elsewhere); here a
scripted store reading and `run_due` stand in for them so the loop itself is what is tested.
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
    """Timers whose store holds a timer at `due` (None: none), read in `reading` seconds, whose
    runs take `takes` seconds; `reads` counts the readings."""

    def __init__(self, due: float | None, takes: float = 0.0) -> None:
        nothing = cast(Any, None)
        super().__init__(nothing, nothing, nothing, nothing, SystemClock())
        self.due, self.takes = due, takes
        self.runs: list[float] = []
        self.running = 0
        self.overlapped = False
        self.ran = asyncio.Event()
        self.reads = 0
        self.reading = 0.005
        self.in_reading = False

    async def _read_stored(self) -> float | None:
        self.in_reading = True
        await asyncio.sleep(self.reading)
        self.reads += 1
        self.in_reading = False
        return self.due

    def _in_memory(self) -> float | None:
        return None

    async def run_due(self) -> None:
        self._read_at = None  # as the daemon's does
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
        timers.poke(timers.due)
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
    timers.poke(timers.due)
    try:
        async with asyncio.timeout(5):
            await timers.ran.wait()
    finally:
        await timers.stop()
    assert failures == 2
    assert "the timers cannot read the store (the store is gone); trying again" in caplog.text


async def test_changes_read_nothing_and_a_deadline_written_arms_without_a_reading() -> None:
    """FINDINGS (issue 17): the five reads after every engine batch were a third of a new
    incident's store operations; an engine batch, a repeat above all, now costs none."""
    clock = SystemClock()
    timers = Scripted(due=None)
    timers.start()
    try:
        async with asyncio.timeout(5):
            while timers.reads < 1:  # the reading at start
                await asyncio.sleep(0.01)
        for _ in range(20):  # engine batches: their timers are in memory
            timers.poke()
            await asyncio.sleep(0.005)
        assert timers.reads == 1
        timers.due = clock.now() + 0.1  # a hold written, its end told
        timers.poke(timers.due)
        async with asyncio.timeout(5):
            await timers.ran.wait()
        assert timers.runs[0] >= timers.due
        assert timers.reads == 1  # armed from the poke, not from a reading
        timers.due = None
        async with asyncio.timeout(5):
            while timers.reads < 2:  # what the run left is read again
                await asyncio.sleep(0.01)
    finally:
        await timers.stop()


async def test_a_deadline_nobody_told_is_read_within_reread_and_one_told_while_reading_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another replica's mute or approval: no poke reaches this one's timers."""
    monkeypatch.setattr("remediator.scheduler.REREAD", 0.1)
    clock = SystemClock()
    timers = Scripted(due=None)
    timers.start()
    try:
        await asyncio.sleep(0.05)
        timers.due = clock.now()  # written, not told
        async with asyncio.timeout(5):
            await timers.ran.wait()
        timers.ran.clear()
        timers.due, timers.reading = None, 0.3  # the reading after the run takes a while
        await asyncio.sleep(0.15)
        assert timers.in_reading
        told = clock.now() + 0.01
        timers.poke(told)  # written after that reading's queries ran: it cannot see it
        async with asyncio.timeout(5):
            await timers.ran.wait()
        assert timers.runs[-1] >= told
    finally:
        await timers.stop()


async def test_a_new_leader_reads_its_timers_again() -> None:
    """Timers kept in memory are lost with the process or the leadership: start() reads."""
    clock = SystemClock()
    timers = Scripted(due=None)
    timers.start()
    await asyncio.sleep(0.05)
    await timers.stop()
    timers.due = clock.now()  # written by the leader before this one, never told here
    timers.start()
    try:
        async with asyncio.timeout(1):
            await timers.ran.wait()
    finally:
        await timers.stop()
