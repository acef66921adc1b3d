"""Claim leases: a running claim carries a lease, renewed while its action runs.

A claim's start writes a lease of CLAIM_LEASE seconds (store/claims.py). While this process
runs the claim's action (its precondition check, its attempts, the write of its outcome), the
keeper renews the leases of all such claims together, in one write every third of the lease.
A running claim whose lease ran out (Claims.claims_lease_expired) was left by a holder that died
or lost the store: it is handled by its action's on_interrupted policy (interrupted.py), by
whoever takes over. While the store is down, renewal fails and is tried again at the next tick;
the action itself goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection

from remediator.clock import Clock
from remediator.errors import StoreError
from remediator.store.records import CLAIM_LEASE
from remediator.types import Claims

log = logging.getLogger(__name__)

RENEW_EVERY = CLAIM_LEASE / 3


class LeaseKeeper:
    def __init__(
        self,
        store: Claims,
        clock: Clock,
        held: Callable[[], Collection[int]],
        every: float = RENEW_EVERY,
    ) -> None:
        """`held`: the ids of the claims this process runs now (the executor's)."""
        self.store = store
        self.clock = clock
        self.held = held
        self.every = every
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="remediator-leases")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def renew(self) -> int:
        """Renew the lease of every claim held now; how many were still running."""
        ids = sorted(self.held())
        if not ids:
            return 0
        now = self.clock.now()
        return await self.store.renew_leases(ids, now, now + CLAIM_LEASE)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.renew()
            except StoreError as e:
                log.warning(
                    "cannot renew the running claims' leases (again in %gs): %s", self.every, e
                )
