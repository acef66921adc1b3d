"""The executor's max_concurrency: at most that many actions running at once.

A claim takes its slot when the guardrails allow it, in the store transaction that judges and
starts it (on SQLite's writer thread, or in PostgreSQL's starts batch), and gives it back when its
attempts end. So a claim never starts without a slot, and is judged right before it acts; but
waiting for the store to judge it (a starts batch busy with the claims before it) holds none.
Held from before the judgement, the 16 slots waited on PostgreSQL's batches of 7 round trips and
capped the daemon below 100 actions/s on a busy host, with each batch no bigger than the slots.

A claim the guardrails allow while every slot is taken is not started: it stays claimed, and is
judged again, first, once one frees. Claims are judged first come first served, at most as many
at once as the free slots and max_concurrency more (a batch of judgements is not bounded by the
free slots alone, and a storm's queued claims do not all wake to compete for each slot freed);
none while every slot is taken."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Slots:
    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()  # take() may run on the store's writer thread
        self._held: set[int] = set()
        self._judging = 0  # claims admitted to be judged, not yet judged
        self._queue: deque[asyncio.Future[None]] = deque()  # claims waiting to be judged

    @asynccontextmanager
    async def judging(self, again: bool = False) -> AsyncIterator[None]:
        """While the claim is judged, once its turn among the claims to judge came. `again`: it
        was allowed when every slot was taken; it goes first."""
        if self._queue or not self._room():
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if again:
                self._queue.appendleft(future)
            else:
                self._queue.append(future)
            try:
                await future  # admitted and counted by _wake
            except asyncio.CancelledError:
                if future.cancelled():
                    self._queue.remove(future)
                else:  # admitted as it was cancelled
                    self._done_judging()
                raise
        else:
            self._judging += 1
        try:
            yield
        finally:
            self._done_judging()

    def take(self, claim_id: int) -> bool:
        """A slot for the claim (already its own: True), unless every slot is taken."""
        with self._lock:
            if claim_id in self._held:
                return True
            if len(self._held) >= self.size:
                return False
            self._held.add(claim_id)
            return True

    def spare(self, token: int) -> bool:
        """A slot for a claim not made yet (offers.py), under a token of its own, unless none is
        free or claims already wait to be judged for one."""
        return not self._queue and self._room() and self.take(token)

    def rename(self, token: int, claim_id: int) -> None:
        """The slot held under `token` is the claim's now."""
        with self._lock:
            if token in self._held:
                self._held.remove(token)
                self._held.add(claim_id)

    def give_back(self, claim_id: int) -> None:
        """The claim's slot, if it holds one, to the claims waiting to be judged."""
        with self._lock:
            if claim_id not in self._held:
                return
            self._held.discard(claim_id)
        self._wake()

    def running(self) -> int:
        with self._lock:
            return len(self._held)

    def _room(self) -> bool:
        """Another claim may be judged: a slot is free, and fewer are judged than the free slots
        and as many more as there are slots."""
        free = self.size - self.running()
        return free > 0 and self._judging < free + self.size

    def _done_judging(self) -> None:
        self._judging -= 1
        self._wake()

    def _wake(self) -> None:
        while self._queue and self._room():
            future = self._queue.popleft()
            if not future.done():
                future.set_result(None)
                self._judging += 1
