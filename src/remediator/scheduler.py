"""Timers: escalate-after, verification polls, approval and mute expiry, maintenance windows,
storm summaries, the next level of an unacknowledged page.

Timers are not kept anywhere of their own: each is derived from the store (an incident's tier and
when it entered it, a claim's hold or verification deadline, an approval's expiry, a page's level
and when it was called). `next_due` computes the earliest; one loop sleeps until then or until
something changes (`poke`), and `run_due` does whatever is due. The loop is the only caller of
`run_due` in the daemon, so a wake never overlaps the previous one however long it takes (an
APScheduler job re-armed while it ran was skipped with a "maximum number of running instances"
warning, 1,317 of them in the soak). After a restart the same derivation rebuilds every timer, and
one that came due while the daemon was down fires once, at start. Tests move a FakeClock and call
`run_due` themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from remediator.clock import Clock
from remediator.control import Control
from remediator.engine import Engine
from remediator.errors import StoreError
from remediator.executor import Executor
from remediator.paging.desk import PagerDesk
from remediator.store.records import HELD
from remediator.tasks import cancel_and_wait
from remediator.types import Store

log = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MAX = 0.5, 5.0  # seconds before trying again after a failure; doubling
MIN_GAP = 0.05  # seconds between two wakes, at least: a timer still due right after it ran
# (the storm window's end) must not spin the loop


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
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="remediator-timers")

    async def stop(self) -> None:
        if self._loop is not None:
            await cancel_and_wait(self._loop)
            self._loop = None

    def poke(self) -> None:
        """Something changed that may move the next timer: look again (pokes coalesce)."""
        self._changed.set()

    async def _run(self) -> None:
        """Timers derive from the store: while it cannot be read, try again after a backoff, so
        that a timer due during an outage fires once the store is back."""
        delay = RETRY_FIRST
        while True:
            try:
                await self._sleep_until_due()
                await self.run_due()
                delay = RETRY_FIRST
            except StoreError as e:
                log.error("the timers cannot read the store (%s); trying again in %gs", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
            except Exception:
                log.exception("the timers failed; trying again in %gs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
            await asyncio.sleep(MIN_GAP)

    async def _sleep_until_due(self) -> None:
        """Until the earliest timer is due, looking again whenever something changes."""
        while True:
            self._changed.clear()
            due = await self.next_due()
            delay = None if due is None else due - self.clock.now()
            if delay is not None and delay <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._changed.wait()
            if not self._changed.is_set():
                return

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
