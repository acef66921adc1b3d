"""Timers: escalate-after, verification polls, approval and mute expiry, maintenance windows,
storm summaries, the next level of an unacknowledged page.

Timers are not kept anywhere of their own: each is derived from the store (an incident's tier and
when it entered it, a claim's hold or verification deadline, an approval's expiry, a page's level
and when it was called). `next_due` computes the earliest; one loop sleeps until then or until
something changes (`poke`), and `run_due` does whatever is due.

The loop reads the store's timers (five reads) when it starts, after each `run_due` and every
REREAD seconds, not whenever something changes: who writes a deadline says when it is
(`poke(at)`), the engine's own timers (escalations, the storm) are in memory, and a change whose
deadline its writer cannot tell (a page, a reload) asks for a new reading (`rearm`). An engine
batch, a repeat above all, costs the timers no store operation (FINDINGS: the five reads after
every batch were a third of a new incident's store operations). A deadline lost from memory (a
crash, a new leader) is in the store, read again at start; one written by another replica is
read within REREAD. The loop is the only caller of
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
import time

from remediator.clock import Clock
from remediator.control import Control
from remediator.engine import Engine
from remediator.errors import StoreError
from remediator.executor import Executor
from remediator.paging.desk import PagerDesk
from remediator.store.records import HELD
from remediator.tasks import cancel_and_wait
from remediator.types import Claims

log = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MAX = 0.5, 5.0  # seconds before trying again after a failure; doubling
MIN_GAP = 0.05  # seconds between two wakes, at least: a timer still due right after it ran
# (the storm window's end) must not spin the loop
REREAD = 2.0  # seconds between two readings of the store's timers, at most


class Timers:
    def __init__(
        self,
        engine: Engine,
        executor: Executor,
        control: Control,
        store: Claims,
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
        self._stored: float | None = None  # the store's earliest timer: as read, or made since
        self._read_at: float | None = None  # monotonic time of the last reading (None: read again)

    def start(self) -> None:
        self._read_at = None  # a new leader's timers are in the store, not in memory
        self._loop = asyncio.create_task(self._run(), name="remediator-timers")

    async def stop(self) -> None:
        if self._loop is not None:
            await cancel_and_wait(self._loop)
            self._loop = None

    def poke(self, at: float | None = None) -> None:
        """Something changed that may move the next timer: look again (pokes coalesce). `at`: a
        deadline just written to the store; none: only the engine's timers (in memory) moved."""
        if at is not None:
            self._stored = at if self._stored is None else min(self._stored, at)
        self._changed.set()

    def rearm(self) -> None:
        """A change whose deadline its writer cannot tell: read the store's timers again."""
        self._read_at = None
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
                self._read_at = None
                log.error("the timers cannot read the store (%s); trying again in %gs", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
            except Exception:
                self._read_at = None
                log.exception("the timers failed; trying again in %gs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
            await asyncio.sleep(MIN_GAP)

    async def _sleep_until_due(self) -> None:
        """Until the earliest timer is due, looking again whenever something changes and
        reading the store's timers again every REREAD seconds."""
        while True:
            self._changed.clear()
            due = await self._armed()
            delay = None if due is None else due - self.clock.now()
            if delay is not None and delay <= 0:
                return
            wait = REREAD - (time.monotonic() - (self._read_at or 0.0))
            if delay is not None:
                wait = min(wait, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wait)):
                    await self._changed.wait()

    async def run_due(self) -> None:
        """Do everything that is due now; the store's timers are read again afterwards."""
        async with self._lock:
            try:
                now = self.clock.now()
                self.engine.tick()
                await self.engine.idle()
                await self.control.expire(now)
                await self.executor.release_held(now)
                await self.executor.poll_verifications(now)
                if self.paging is not None:
                    await self.paging.escalate_due(now)
            finally:
                self._read_at = None

    async def next_due(self) -> float | None:
        """The earliest timer, every one derived from the store again."""
        return _earliest(self._in_memory(), await self._read_stored())

    async def _armed(self) -> float | None:
        """The earliest timer as the loop knows it: the store's as last read, lowered by the
        deadlines made since; read again when asked, after a run, or REREAD after the last."""
        if self._read_at is None or time.monotonic() - self._read_at >= REREAD:
            self._read_at = time.monotonic()
            self._stored = None  # deadlines poked during the reading are kept beside it
            try:
                read = await self._read_stored()
            except BaseException:
                self._read_at = None
                raise
            self._stored = _earliest(read, self._stored)
        return _earliest(self._in_memory(), self._stored)

    def _in_memory(self) -> float | None:
        return _earliest(self.engine.next_escalation(), self.engine.storm.next_due())

    async def _read_stored(self) -> float | None:
        times = [await self.control.next_due()]
        times += [c.hold_until for c in await self.store.claims_in((HELD,))]
        times += [c.verify_next_at for c in await self.store.claims_verifying()]
        if self.paging is not None:
            times.append(await self.paging.next_due())
        return _earliest(*times)


def _earliest(*times: float | None) -> float | None:
    return min((t for t in times if t is not None), default=None)
