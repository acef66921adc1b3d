"""Claims on one target take turns: one at a time runs on a target (guardrails' one_at_a_time).

In this process a target's claims queue here, first come first served, as rows rather than tasks:
only the claim whose turn it is has a task (it is judged, then run if the guardrails allow). A
storm of claims on one target costs a deque entry each, not a task each waiting for the target
(the soak saw bursts of 5,702 such tasks). The next claim starts as soon as the one in flight
passes its turn on: when it hands the target off as its outcome is written, or when it ends
however it ended. A claim whose turn it is may still find its target busy, with another replica's
action or with one recovered after a restart: it looks again every `poll` seconds.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from remediator.store.records import Claim


class Turns:
    def __init__(
        self,
        poll: float,
        start: Callable[[Claim], None],
        key: Callable[[Claim], str] = lambda claim: claim.target,
    ) -> None:
        self.poll = poll
        self._start = start  # gives a claim whose turn it is its task
        self._key = key  # the queue a claim waits in: its target, or its lane of it (lanes.py)
        self._queued: dict[str, deque[Claim]] = {}
        self._holder: dict[str, int] = {}  # target: the id of the claim whose turn it is
        self._closed = False

    def add(self, claim: Claim) -> None:
        """Queue the claim behind its target's; it starts at once if the target has none."""
        key = self._key(claim)
        self._queued.setdefault(key, deque()).append(claim)
        if key not in self._holder:
            self._next(key)

    def close(self) -> None:
        """No claim starts from now on (shutdown): queued ones stay claimed in the store and run
        after the next start."""
        self._closed = True

    def queued(self) -> int:
        """How many claims wait for their turn."""
        return sum(len(q) for q in self._queued.values())

    def waiting(self, claim: Claim) -> bool:
        """Whether a claim waits behind this one's turn."""
        return bool(self._queued.get(self._key(claim)))

    def free(self, key: str) -> bool:
        """Whether no claim holds or waits for this turn."""
        return key not in self._holder and not self._queued.get(key)

    def reserve(self, key: str, token: int) -> None:
        """Hold a free turn for a claim not made yet (offers.py), under a token of its own."""
        self._holder[key] = token

    def hand(self, token: int, claim: Claim, start: bool) -> bool:
        """The turn reserved under `token` is the claim's now: started already (`start` False),
        it holds it; else it starts, as the first claim queued would. False if the turn is no
        longer reserved under that token, or the claim cannot start (closed)."""
        key = self._key(claim)
        if self._holder.get(key) != token or (start and self._closed):
            return False
        self._holder[key] = claim.id
        if start:
            self._start(claim)
        return True

    def release(self, key: str, token: int) -> None:
        """A turn reserved under `token` and not used: the next claim's."""
        if self._holder.get(key) == token:
            del self._holder[key]
            self._next(key)

    def pass_on(self, claim: Claim) -> None:
        """The claim no longer holds its target: the next claim's turn (once per claim)."""
        key = self._key(claim)
        if self._holder.get(key) == claim.id:
            del self._holder[key]
            self._next(key)

    def _next(self, target: str) -> None:
        queued = self._queued.get(target)
        if not queued or self._closed:
            self._queued.pop(target, None)
            return
        claim = queued.popleft()
        self._holder[target] = claim.id
        self._start(claim)

    async def wait(self) -> None:
        """The claim whose turn it is found its target busy (another replica's action, or one
        recovered after a restart): it looks again after `poll`."""
        await asyncio.sleep(self.poll)
