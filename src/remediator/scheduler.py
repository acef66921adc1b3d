"""Timers: escalate-after, verification polls, approval and mute expiry, maintenance windows,
storm summaries, the next level of an unacknowledged page.

Timers are not kept anywhere of their own: each is derived from the store (an incident's tier and
when it entered it, a claim's hold or verification deadline, an approval's expiry, a page's level
and when it was called). `next_due` computes the earliest; APScheduler wakes us then; `run_due`
does whatever is due and re-arms. After a restart the same derivation rebuilds every timer, and
one that came due while the daemon was down fires once, at start. Tests move a FakeClock and call
`run_due` themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from remediator.clock import Clock
from remediator.control import Control
from remediator.engine import Engine
from remediator.executor import Executor
from remediator.paging.desk import PagerDesk
from remediator.store.records import HELD
from remediator.types import Store

log = logging.getLogger(__name__)

JOB = "remediator-timers"
ARM_RETRY_FIRST = 0.5  # seconds before arming again after the store failed; doubles up to:
ARM_RETRY_MAX = 5.0


class Timers:
    def __init__(
        self,
        engine: Engine,
        executor: Executor,
        control: Control,
        store: Store,
        clock: Clock,
        paging: PagerDesk | None = None,
    ) -> None:
        self.paging = paging
        self.engine = engine
        self.executor = executor
        self.control = control
        self.store = store
        self.clock = clock
        self._scheduler: AsyncIOScheduler | None = None
        self._lock = asyncio.Lock()
        self._arming: asyncio.Task[None] | None = None
        self._rearm = False
        self._waking = False

    def start(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.start()
        self.poke()

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self._arming is not None:
            self._arming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._arming

    def poke(self) -> None:
        """Something changed that may move the next timer: re-arm soon (coalesced)."""
        if self._scheduler is None:
            return
        if self._arming is not None and not self._arming.done():
            self._rearm = True
            return
        self._arming = asyncio.create_task(self._arm_loop(), name="remediator-timers-arm")

    async def _arm_loop(self) -> None:
        """Arm, and again while something changed meanwhile. Timers derive from the store: while
        it cannot be read, try again after a backoff, so that a timer due during an outage
        fires once the store is back, whether or not anything else changes."""
        self._rearm = True
        delay = ARM_RETRY_FIRST
        while self._rearm:
            self._rearm = False
            try:
                await self.arm()
            except Exception as e:
                log.error("cannot arm the timers (%s); trying again in %gs", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, ARM_RETRY_MAX)
                self._rearm = True

    async def arm(self) -> None:
        if self._waking:
            return  # the running wake re-arms when it ends
        due = await self.next_due()
        if self._scheduler is None:
            return
        if due is None:
            with contextlib.suppress(Exception):
                self._scheduler.remove_job(JOB)
            return
        delay = max(0.0, due - self.clock.now())
        run_at = datetime.now(UTC) + timedelta(seconds=delay)
        self._scheduler.add_job(
            self._wake,
            "date",
            run_date=run_at,
            id=JOB,
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
        )

    async def _wake(self) -> None:
        self._waking = True
        try:
            await self.run_due()
        finally:
            self._waking = False
            self.poke()

    async def run_due(self) -> None:
        """Do everything that is due now."""
        async with self._lock:
            now = self.clock.now()
            self.engine.tick()
            await self.engine.idle()
            await self.control.expire(now)
            await self.executor.release_held(now)
            await self.executor.poll_verifications(now)
            if self.paging is not None:
                await self.paging.escalate_due(now)

    async def next_due(self) -> float | None:
        times = [
            self.engine.next_escalation(),
            self.engine.storm.next_due(),
            await self.control.next_due(),
        ]
        times += [c.hold_until for c in await self.store.claims_in((HELD,))]
        times += [c.verify_next_at for c in await self.store.claims_verifying()]
        if self.paging is not None:
            times.append(await self.paging.next_due())
        return min((t for t in times if t is not None), default=None)
