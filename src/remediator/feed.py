"""The leader reads every replica's journal: any replica acknowledges a notification once it is
in the journal, and only the leader decides, so the leader takes every entry no one decided yet,
in id order, whichever replica wrote it. With it, the kill switch any replica set.

It reads when a replica's journal commit NOTIFYs (election.py LISTENs) and, as a fallback, every
`poll` seconds. Each pass also takes the claims waiting to run (`claimed`): a claim released or
approved through another replica runs here. The engine and the executor each ignore what they
already have, so a pass may see an entry or a claim twice at no cost."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from remediator.control import Control
from remediator.engine import BACKLOG_LIMIT, Engine
from remediator.errors import StoreError
from remediator.executor import Executor
from remediator.store.records import CLAIMED
from remediator.tasks import cancel_and_wait
from remediator.types import FeedStore

log = logging.getLogger(__name__)
READ_LIMIT = 5_000  # entry ids read per pass; the rest wait for the next
GATHER = 0.05  # seconds between two passes at most: the NOTIFYs of a burst make one pass


class JournalFeed:
    def __init__(
        self, store: FeedStore, engine: Engine, executor: Executor, control: Control, poll: float
    ) -> None:
        self.store = store
        self.engine = engine
        self.executor = executor
        self.control = control
        self.poll = poll
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._swept = 0.0  # when the claims were last read (loop time)

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="remediator-journal-feed")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    def poke(self) -> None:
        """A replica journaled something: read soon."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.read()
            except StoreError as e:
                log.warning("cannot read the journal, retrying in %gs: %s", self.poll, e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll)
            await asyncio.sleep(GATHER)

    async def read(self) -> None:
        """One pass: the undecided entries the engine does not have yet; every `poll`, the
        claims waiting and the kill switch."""
        if self.engine.backlog_alerts <= BACKLOG_LIMIT // 2:  # else they wait in the journal
            ids = await self.store.unprocessed_ids(READ_LIMIT)
            new = [i for i in ids if not self.engine.knows(i)]
            for journal_id, body in await self.store.journal_bodies(new):
                await self.engine.submit_body(journal_id, body)
        now = asyncio.get_running_loop().time()
        if now - self._swept >= self.poll:
            self._swept = now
            await self.sweep()

    async def sweep(self) -> None:
        """Claims approved or released through another replica run here; the kill switch as
        any replica set it (mutes are read with each start)."""
        self.executor.state.killswitch = (await self.control.killswitch()).on
        self.executor.submit(await self.store.claims_in((CLAIMED,)), reread=True)
