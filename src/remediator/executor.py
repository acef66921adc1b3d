"""Runs claimed actions: one claim, at most one run, every attempt recorded.

A claim is a unique row (incident, step, action) written in the same transaction as the decision
that made it. Before the first attempt the executor moves the claim from `claimed` to `running`
and stores the exact request it will send; after the last, to `succeeded`, `failed` or `skipped`.
On start, claims still `claimed` (decided, never started) run, and claims still `running` (the
daemon died during the action, so the target may or may not have seen it) become `interrupted`:
reported, never silently repeated.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping

import httpx

from remediator.actions.base import AttemptContext, AttemptResult, RenderContext
from remediator.clock import Clock
from remediator.config import RESOLVED_STEP
from remediator.errors import RenderError
from remediator.metrics import Metrics
from remediator.store.records import (
    CLAIMED,
    FAILED,
    INTERRUPTED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    Attempt,
    AuditEntry,
    Claim,
)
from remediator.types import Action, Notifier, Store

log = logging.getLogger(__name__)


class Executor:
    def __init__(
        self,
        store: Store,
        actions: Mapping[str, Action],
        notifier: Notifier,
        metrics: Metrics,
        clock: Clock,
        *,
        max_concurrency: int = 16,
        http: httpx.AsyncClient | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.actions = actions
        self.notifier = notifier
        self.metrics = metrics
        self.clock = clock
        self.http = http or httpx.AsyncClient(follow_redirects=False, trust_env=False)
        self._rand = rand
        self._slots = asyncio.Semaphore(max_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------------

    async def recover(self) -> None:
        """After a restart: interrupted claims are reported, unstarted ones run."""
        for claim in await self.store.claims_in((RUNNING,)):
            await self._finish(
                claim,
                INTERRUPTED,
                "the daemon stopped during this action; it was not repeated",
                from_statuses=(RUNNING,),
            )
        self.submit(await self.store.claims_in((CLAIMED,)))

    def submit(self, claims: Iterable[Claim]) -> None:
        for claim in claims:
            task = asyncio.create_task(self._run(claim), name=f"claim-{claim.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait until every submitted action has finished (for tests and tools)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def shutdown(self, grace: float) -> None:
        """Let running actions finish for up to `grace` seconds; interrupt the rest."""
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.http.aclose()

    # -- one claim -----------------------------------------------------------------------------

    async def _run(self, claim: Claim) -> None:
        try:
            async with self._slots:
                await self._start_and_attempt(claim)
        except asyncio.CancelledError:
            # a claim that never started stays claimed and runs after the restart
            await self._finish(
                claim,
                INTERRUPTED,
                "the daemon shut down during this action; it was not repeated",
                from_statuses=(RUNNING,),
            )
            raise
        except Exception:
            log.exception(
                "action %s of incident %d failed unexpectedly", claim.action, claim.incident_id
            )
            await self._finish(claim, FAILED, "internal error; see the daemon's log")

    async def _start_and_attempt(self, claim: Claim) -> None:
        action = self.actions.get(claim.action)
        if action is None:
            await self._finish(claim, FAILED, f"action {claim.action!r} is no longer configured")
            return
        if claim.step != RESOLVED_STEP:
            status = await self.store.incident_status(claim.incident_id)
            if status != "open":
                await self._finish(
                    claim,
                    SKIPPED,
                    "the incident resolved before the action "
                    "started; a firing action never runs for a resolved alert",
                )
                return
        try:
            request = action.prepare(_render_context(claim))
        except RenderError as e:
            await self._finish(claim, FAILED, f"cannot build the request: {e}")
            return
        if not await self.store.start_claim(claim.id, self.clock.now(), request):
            return  # started elsewhere (another replica, or an earlier run of this one)
        self.metrics.actions_running.inc()
        started = time.monotonic()
        try:
            status, detail = await self._attempts(action, claim, request)
        finally:
            self.metrics.actions_running.dec()
            self.metrics.action_duration.labels(action.kind).observe(time.monotonic() - started)
        await self._finish(claim, status, detail)

    async def _attempts(
        self, action: Action, claim: Claim, request: Mapping[str, object]
    ) -> tuple[str, str]:
        total = action.retry.retries + 1
        for n in range(1, total + 1):
            result = await self._attempt(action, claim, dict(request), n)
            self.metrics.action_attempts.labels(action.kind, "ok" if result.ok else "error").inc()
            if result.ok:
                return SUCCEEDED, f"{action.describe(dict(request))}: {result.detail}"
            if not result.retryable or n == total:
                tries = f" after {n} attempts" if n > 1 else ""
                return FAILED, f"{action.describe(dict(request))}: {result.detail}{tries}"
            delay = max(action.retry.delay(n, self._rand()), result.retry_after or 0.0)
            log.info(
                "%s attempt %d/%d failed (%s); retrying in %.2fs",
                claim.action,
                n,
                total,
                result.detail,
                delay,
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _attempt(
        self, action: Action, claim: Claim, request: dict[str, object], n: int
    ) -> AttemptResult:
        ctx = AttemptContext(n, action.timeout, claim.idempotency_key, self.http)
        started = self.clock.now()
        try:
            # the kind enforces its own timeout; this is the backstop if it does not
            result = await asyncio.wait_for(action.attempt(request, ctx), action.timeout + 5.0)
        except TimeoutError:
            result = AttemptResult(False, f"no answer within {action.timeout:g}s", retryable=True)
        await self.store.record_attempt(
            Attempt(
                claim.id,
                n,
                started,
                self.clock.now(),
                result.ok,
                result.detail,
                result.status_code,
                result.exit_code,
                result.output,
            )
        )
        return result

    async def _finish(
        self,
        claim: Claim,
        status: str,
        detail: str,
        from_statuses: tuple[str, ...] = (CLAIMED, RUNNING),
    ) -> None:
        entry = AuditEntry(
            kind="action",
            event=status,
            message=f"{claim.action}: {status}: {detail}",
            at=self.clock.now(),
            incident_id=claim.incident_id,
            rule=claim.rule,
            tier=claim.step,
            action=claim.action,
            detail={"claim_id": claim.id},
        )
        written = await asyncio.shield(
            self.store.finish_claim(claim.id, status, detail, entry.at, entry, from_statuses)
        )
        if written is None:
            return  # already finished
        entry = written
        self.metrics.actions.labels(claim.kind, status).inc()
        log.log(logging.INFO if status == SUCCEEDED else logging.WARNING, "%s", entry.message)
        await self.notifier.publish([entry])


def _render_context(claim: Claim) -> RenderContext:
    c = claim.context
    return RenderContext(
        labels=c.get("labels", {}),
        annotations=c.get("annotations", {}),
        incident_id=claim.incident_id,
        rule=claim.rule,
        tier=claim.step,
        value=c.get("value"),
        fingerprint=c.get("fingerprint", ""),
    )
