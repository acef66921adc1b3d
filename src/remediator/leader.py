"""This replica's role: the leader decides and acts, a follower only acknowledges webhooks (and
takes over when the leader goes), an ingest replica only acknowledges, ever.

On SQLite the one process leads from its start. On PostgreSQL every replica but an ingest one
tries, every `heartbeat` seconds, to take the leader's lock (store/election.py); the one that
takes it bumps the leadership epoch, hands the epoch to its store (which fences every decision
and start with it) and starts the leader's duties (`lead`: recover claims, load open incidents,
read every replica's journal, run timers and outboxes). A leader whose connection is cut, or
whose round trip takes longer than the lease, stops deciding at once: its store's epoch is taken
back before anything else, then its duties stop (`follow`), and it tries again like any other.
Every replica writes its heartbeat to the store for `remediator status`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from remediator.clock import Clock
from remediator.errors import StoreError
from remediator.metrics import Metrics
from remediator.store.election import Elector
from remediator.store.leadership import Replica
from remediator.store.settings import StoreSettings
from remediator.types import Leaders

log = logging.getLogger(__name__)

LEADER, FOLLOWER, INGEST = "leader", "follower", "ingest"
NOT_LEADING = 0  # an epoch no takeover ever hands out: every fenced write is refused


def replica_name() -> str:
    """host:pid; on Kubernetes the host name is the pod's."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Roles:
    def __init__(
        self,
        store: Leaders,
        settings: StoreSettings,
        metrics: Metrics,
        clock: Clock,
        lead: Callable[[], Awaitable[None]],
        follow: Callable[[], Awaitable[None]],
        ingest_only: bool = False,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self._lead = lead
        self._follow = follow
        self.ingest_only = ingest_only
        self.name = replica_name()
        self.started_at = clock.now()
        self.leading = False
        self.epoch: int | None = None
        self._elector: Elector | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.on_journal: Callable[[], None] = lambda: None  # the leader's feed, poked

    @property
    def role(self) -> str:
        return LEADER if self.leading else INGEST if self.ingest_only else FOLLOWER

    def view(self) -> dict[str, Any]:
        return {"role": self.role, "replica": self.name, "epoch": self.epoch}

    async def start(self) -> None:
        pg = self.settings.postgres
        if pg is None:  # one process on its file: it leads
            await self._take(await self.store.take_leadership(self.name, self.clock.now()))
            return
        self.store.epoch = NOT_LEADING
        self._elector = Elector(pg, self.name)
        self._elector.on_lost = self.lost
        self._elector.on_journal = lambda: self.on_journal()
        self._wake = asyncio.Event()
        try:  # the first try now: a replica alone on its database leads once started
            await self._turn()
        except StoreError as e:
            log.warning("leader election: %s", e)
        self._task = asyncio.create_task(self._run(pg.heartbeat), name="remediator-roles")

    async def halt(self) -> None:
        """Stop trying (and stop checking the lease): the daemon is stopping."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def resign(self) -> None:
        """Give the lock up: once the daemon's actions have stopped, the next leader may
        take over."""
        if self._elector is not None:
            await self._elector.resign()

    def lost(self) -> None:
        """The leader's connection is gone, or the store refused its epoch: decide nothing more,
        from this instant (the duties stop in the background)."""
        if self.leading:
            self.store.epoch = NOT_LEADING
            self._wake.set()

    async def _run(self, heartbeat: float) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), heartbeat)
            self._wake.clear()
            try:
                await self._turn()
            except StoreError as e:
                log.warning("leader election: %s", e)

    async def _turn(self) -> None:
        assert self._elector is not None
        if self.leading:
            if self.store.epoch != self.epoch or not await self._elector.still_leading():
                await self._step_down()
        elif not self.ingest_only:
            epoch = await self._elector.try_lead(self.clock.now())
            if epoch is not None:
                await self._take(epoch)
        await self._beat()

    async def _take(self, epoch: int) -> None:
        self.store.epoch = self.epoch = epoch
        self.leading = True
        self.metrics.leader.set(1)
        self.metrics.leader_changes.inc()
        log.info("%s leads, epoch %d", self.name, epoch)
        try:
            await self._lead()
        except StoreError as e:
            log.error("cannot take up the leader's duties: %s", e)
            await self._step_down()

    async def _step_down(self) -> None:
        self.store.epoch = NOT_LEADING
        self.leading = False
        self.metrics.leader.set(0)
        self.metrics.leader_changes.inc()
        log.warning("%s no longer leads (epoch %s)", self.name, self.epoch)
        self.epoch = None
        await self._follow()
        if self._elector is not None:
            await self._elector.resign()

    async def _beat(self) -> None:
        now = self.clock.now()
        await self.store.beat(Replica(self.name, self.role, self.started_at, now, self.epoch))
