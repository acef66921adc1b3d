"""Retention: what the store no longer needs is deleted, in small batches, on both backends.

Journal entries go `retention.journal` after they were decided; resolved incidents, with their
alert instances, claims, attempts, approvals, audit lines, Slack message refs and page, go
`retention.incidents` after they resolved, and never sooner than the longest window a guardrail
reads back (cooldowns, budgets, circuit breakers, repeats): nothing a guardrail still counts is
deleted. Delivered Slack messages and pager events go after as long. An open incident, or one
with an unfinished claim, is never deleted, nor a message or pager event not yet delivered.
Each batch is one short transaction; between batches the writer serves everyone else (webhooks
first)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from remediator.clock import Clock
from remediator.config import Config
from remediator.metrics import Metrics
from remediator.store.settings import Retention
from remediator.tasks import cancel_and_wait
from remediator.types import Retention as RetentionStore

log = logging.getLogger(__name__)


def guardrail_horizon(config: Config) -> float:
    """The longest span any guardrail reads back in the store, in seconds."""
    g = config.guardrails
    spans: list[float] = [g.approval_timeout]
    budgets = [g.budget, *(p.budget for p in config.action_policies.values())]
    spans += [b.per for b in budgets if b is not None]
    breakers = [config.breaker(t) for t in config.all_targets()] + [g.breaker]
    spans += [b.within + b.open_for for b in breakers if b is not None]
    for rule in config.rules:
        spans += [rule.cooldown or 0.0]
        spans += [t.repeats.within for t in rule.tiers if t.repeats is not None]
    return max(spans)


class Pruner:
    """Runs retention every `settings.every` seconds until stopped."""

    def __init__(
        self,
        store: RetentionStore,
        settings: Retention,
        horizon: float,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.store = store
        self.settings = settings
        self.horizon = horizon
        self.metrics = metrics
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self.passes = 0  # passes finished, for tests and logs

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="remediator-retention")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def prune(self) -> dict[str, int]:
        """One pass: every batch old enough, until none is left; rows deleted per table."""
        now = self.clock.now()
        keep = max(self.settings.incidents, self.horizon)
        pruned: Counter[str] = Counter()
        batch = self.settings.batch
        while n := await self.store.prune_journal(now - self.settings.journal, batch):
            self._count(pruned, {"journal": n})
        while deleted := await self.store.prune_incidents(now - keep, batch):
            self._count(pruned, deleted)
        while n := await self.store.prune_outbox(now - keep, batch):
            self._count(pruned, {"slack_outbox": n})
        while deleted := await self.store.prune_pages(now - keep, batch):
            self._count(pruned, deleted)
        return dict(pruned)

    def _count(self, pruned: Counter[str], deleted: dict[str, int]) -> None:
        for table, n in deleted.items():
            pruned[table] += n
            self.metrics.store_pruned.labels(table).inc(n)

    async def _loop(self) -> None:
        while True:
            try:
                pruned = await self.prune()
                self.passes += 1
                if pruned:
                    log.info(
                        "retention: deleted %s", ", ".join(f"{n} {t}" for t, n in pruned.items())
                    )
            except Exception:  # a failed pass is retried at the next; the daemon goes on
                log.exception("retention pass failed")
            await asyncio.sleep(self.settings.every)
