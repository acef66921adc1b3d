"""Runs claimed actions: one claim, at most one run, every attempt recorded.

A claim is a unique row (incident, step, action) written in the same transaction as the decision
that made it. Before it starts, the guardrails (guardrails.py) decide: run, refuse, dry-run, hold
for a maintenance window, wait for the target, or ask a human. A claim that runs is moved from
`claimed` to `running` with the exact request it will send; its precondition is checked, its
attempts retried with backoff, its outcome recorded; then its verification is polled by the timers.
On start, claims still `claimed` run, and claims still `running` (the daemon died during the
action, so the target may or may not have seen it) become `interrupted`: reported, never silently
repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import httpx

from remediator import guardrails
from remediator.actions.base import AttemptContext, AttemptResult, RenderContext
from remediator.clock import Clock
from remediator.config import RESOLVED_STEP, Config
from remediator.errors import RenderError
from remediator.guardrails import Ask, Facts, Mute, Policy, Verdict
from remediator.matchers import parse_matchers
from remediator.metrics import Metrics
from remediator.rules import RuleIndex
from remediator.store.records import (
    CLAIMED,
    DRY_RUN,
    FAILED,
    HELD,
    INTERRUPTED,
    PRECONDITION_FAILED,
    REFUSED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    VERIFY_FAILED,
    VERIFY_PASSED,
    VERIFY_PENDING,
    Attempt,
    AuditEntry,
    Claim,
)
from remediator.types import Action, Notifier, Store

log = logging.getLogger(__name__)

WAIT_POLL = 1.0  # how often a claim waiting for its target looks again (other replicas)
MANUAL_STEP = "manual"  # a person asked for it (Slack): no alert to have resolved


class RuntimeState:
    """Operator switches that live in the store and are cached here: the kill switch."""

    def __init__(self, killswitch: bool = False) -> None:
        self.killswitch = killswitch


class Executor:
    def __init__(
        self,
        store: Store,
        config: Config,
        notifier: Notifier,
        metrics: Metrics,
        clock: Clock,
        *,
        state: RuntimeState | None = None,
        http: httpx.AsyncClient | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.config = config
        self.actions: Mapping[str, Action] = config.actions
        self.index = RuleIndex(config.rules)
        self.notifier = notifier
        self.metrics = metrics
        self.clock = clock
        self.state = state or RuntimeState(config.guardrails.killswitch)
        self.http = http or httpx.AsyncClient(follow_redirects=False, trust_env=False)
        self._rand = rand
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._guard = asyncio.Lock()  # verdict and start are one step: budgets cannot race
        self._freed: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._polling: set[int] = set()
        # set by the daemon: timers to re-arm, and the engine's handler for failed verification
        self.wake: Callable[[], None] = lambda: None
        self.verify_failed: Callable[[Claim, str], None] = lambda claim, detail: None

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
                await self._guarded(claim)
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
        finally:
            self._freed.setdefault(claim.target, asyncio.Event()).set()

    async def _guarded(self, claim: Claim) -> None:
        action = self.actions.get(claim.action)
        if action is None:
            await self._finish(claim, FAILED, f"action {claim.action!r} is no longer configured")
            return
        if await self._resolved_meanwhile(claim):
            return
        results = await self.store.incident_results(claim.incident_id)
        try:
            request = action.prepare(render_context(claim, results))
        except RenderError as e:
            await self._finish(claim, FAILED, f"cannot build the request: {e}")
            return
        if await self._admitted(claim, action, request):
            await self._execute(claim, action, request)

    async def _admitted(self, claim: Claim, action: Action, request: Mapping[str, Any]) -> bool:
        """Ask the guardrails until they allow (True) or settle the claim otherwise (False)."""
        while True:
            freed = self._freed.setdefault(claim.target, asyncio.Event())
            freed.clear()
            async with self._guard:
                verdict = await self.verdict(claim)
                if verdict.outcome == "allow":
                    return await self.store.start_claim(claim.id, self.clock.now(), request)
                if verdict.outcome != "wait":
                    await self._settle(claim, action, request, verdict)
                    return False
            with contextlib.suppress(TimeoutError):  # busy target: wait, look again now and then
                # not wait_for: Python 3.11's can swallow a cancel
                async with asyncio.timeout(WAIT_POLL):
                    await freed.wait()
            if await self._resolved_meanwhile(claim):  # it may have resolved while it waited
                return False

    async def _resolved_meanwhile(self, claim: Claim) -> bool:
        """Skip a firing action whose incident resolved: it never runs for a resolved alert."""
        if claim.step in (RESOLVED_STEP, MANUAL_STEP):
            return False
        if await self.store.incident_status(claim.incident_id) == "open":
            return False
        await self._finish(
            claim,
            SKIPPED,
            "the incident resolved before the action "
            "started; a firing action never runs for a resolved alert",
        )
        return True

    async def verdict(self, claim: Claim) -> Verdict:
        """What the guardrails say about starting this claim now."""
        now = self.clock.now()
        policy = self.policy(claim)
        budgets = [b.per for b in (policy.global_budget, policy.action_budget) if b]
        history = await self.store.target_history(claim, now - max(budgets, default=0.0), 0.0)
        mutes = [_mute(row) for row in await self.store.mutes(now)]
        approval = history.approval
        facts = Facts(
            killswitch=self.state.killswitch,
            mutes=mutes,
            windows=self.config.windows,
            last_other_start=history.last_other_start,
            started_global=history.started_global,
            started_action=history.started_action,
            target_busy=history.target_busy,
            failures=history.failures,
            approval=None if approval is None else approval.status,
            approval_detail=_approval_detail(approval),
        )
        labels = claim.context.get("labels", {})
        return guardrails.decide(
            policy, Ask(claim.rule, claim.action, claim.target, labels, now), facts
        )

    def policy(self, claim: Claim) -> Policy:
        """What config says about this claim. An undo (on_resolved) is not held to cooldowns or
        budgets: they cap remediation, and must never leave a service paused."""
        rule = self.index.get(claim.rule)
        tier = None if rule is None else next((t for t in rule.tiers if t.name == claim.step), None)
        own = self.config.policy(claim.action)
        g = self.config.guardrails
        undo = claim.step == RESOLVED_STEP
        return Policy(
            dry_run=g.dry_run or (rule is not None and rule.dry_run),
            cooldown=None if rule is None or undo else rule.cooldown,
            during_maintenance="drop" if rule and rule.during_maintenance == "drop" else "hold",
            global_budget=None if undo else g.budget,
            action_budget=None if undo else own.budget,
            breaker=self.config.breaker(claim.target),
            approval_required=own.destructive or (tier is not None and tier.approval),
        )

    async def _settle(
        self, claim: Claim, action: Action, request: Mapping[str, Any], verdict: Verdict
    ) -> None:
        """Record what a verdict other than allow means for the claim."""
        if verdict.outcome in ("refuse", "dry_run"):
            self.metrics.guardrail_refusals.labels(verdict.guardrail).inc()
        if verdict.outcome == "refuse":
            await self._finish(claim, REFUSED, f"{verdict.guardrail}: {verdict.reason}")
        elif verdict.outcome == "dry_run":
            await self._finish(
                claim, DRY_RUN, f"dry-run: would have {action.describe(dict(request))}"
            )
        elif verdict.outcome == "hold":
            await self._hold(claim, verdict)
        elif verdict.outcome == "ask_approval":
            await self._ask_approval(claim, action, request)

    async def _hold(self, claim: Claim, verdict: Verdict) -> None:
        entry = self._entry(claim, HELD, verdict.reason)
        held = await self.store.set_claim(
            claim.id, HELD, verdict.reason, entry, (CLAIMED,), hold_until=verdict.until
        )
        if held:
            await self.notifier.publish([entry])
            self.wake()

    async def _ask_approval(self, claim: Claim, action: Action, request: Mapping[str, Any]) -> None:
        now = self.clock.now()
        expires = now + self.config.guardrails.approval_timeout
        entry = self._entry(
            claim,
            "approval_requested",
            f"{claim.action} needs a human's approval: {action.describe(dict(request))}",
        )
        approval = await self.store.request_approval(claim, request, now, expires, entry)
        if approval is None:
            return
        self.metrics.approvals_pending.inc()
        await self.notifier.publish(
            [replace(entry, detail={**entry.detail, "approval_id": approval.id})]
        )
        self.wake()

    async def _execute(self, claim: Claim, action: Action, request: Mapping[str, Any]) -> None:
        self.metrics.actions_running.inc()
        started = time.monotonic()
        try:
            status, detail = await self._precondition(claim, request)
            if status is None:
                status, detail = await self._attempts(action, claim, request)
        finally:
            self.metrics.actions_running.dec()
            self.metrics.action_duration.labels(action.kind).observe(time.monotonic() - started)
        await self._finish(claim, status, detail)
        verify = self.config.policy(claim.action).verify
        if status == SUCCEEDED and verify is not None:
            now = self.clock.now()
            await self.store.set_verification(
                claim.id,
                VERIFY_PENDING,
                f"checking {verify.check.describe()}",
                now + verify.every,
                now + verify.within,
            )
            self.wake()

    async def _precondition(
        self, claim: Claim, request: Mapping[str, Any]
    ) -> tuple[str | None, str]:
        check = self.config.policy(claim.action).precondition
        if check is None:
            return None, ""
        result = await check.evaluate(render_context(claim), self.http)
        if result.holds:
            return None, ""
        return PRECONDITION_FAILED, f"precondition failed, not acting: {result.detail}"

    async def _attempts(
        self, action: Action, claim: Claim, request: Mapping[str, Any]
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
        entry = self._entry(claim, status, detail)
        written = await asyncio.shield(
            self.store.finish_claim(claim.id, status, detail, entry.at, entry, from_statuses)
        )
        if written is None:
            return  # already finished
        self.metrics.actions.labels(claim.kind, status).inc()
        level = logging.INFO if status in (SUCCEEDED, DRY_RUN) else logging.WARNING
        log.log(level, "%s", written.message)
        await self.notifier.publish([written])
        if status in (FAILED, SUCCEEDED):
            await self.refresh_circuit(claim.target)

    def _entry(self, claim: Claim, event: str, detail: str) -> AuditEntry:
        return AuditEntry(
            kind="action",
            event=event,
            message=f"{claim.action}: {event}: {detail}",
            at=self.clock.now(),
            incident_id=claim.incident_id,
            rule=claim.rule,
            tier=claim.step,
            action=claim.action,
            detail={"claim_id": claim.id},
        )

    # -- timers: held claims and verification ---------------------------------------------------

    async def release_held(self, now: float) -> None:
        """Claims held for a maintenance window that has ended go back to the guardrails."""
        for claim in await self.store.claims_in((HELD,)):
            if claim.hold_until is None or claim.hold_until > now:
                continue
            released = await self.store.set_claim(
                claim.id, CLAIMED, "released: the maintenance window ended", None, (HELD,)
            )
            if released:
                self.submit([replace(claim, status=CLAIMED, hold_until=None)])

    async def poll_verifications(self, now: float) -> None:
        """Check every verification that is due; the checks run concurrently."""
        due = [
            c
            for c in await self.store.claims_verifying()
            if c.verify_next_at is not None
            and c.verify_next_at <= now
            and c.id not in self._polling
        ]
        await asyncio.gather(*(self._verify(claim) for claim in due))

    async def _verify(self, claim: Claim) -> None:
        verification = self.config.policy(claim.action).verify
        if verification is None:
            return
        self._polling.add(claim.id)
        try:
            result = await verification.check.evaluate(render_context(claim), self.http)
            now = self.clock.now()
            deadline = claim.verify_deadline or now
            if result.holds:
                await self._verified(claim, VERIFY_PASSED, f"verified: {result.detail}")
            elif now >= deadline:
                detail = f"not verified within {verification.within:g}s: {result.detail}"
                await self._verified(claim, VERIFY_FAILED, detail)
                self.verify_failed(claim, result.detail)
                await self.refresh_circuit(claim.target)
            else:
                await self.store.set_verification(
                    claim.id,
                    VERIFY_PENDING,
                    result.detail,
                    min(now + verification.every, deadline),
                    deadline,
                )
        finally:
            self._polling.discard(claim.id)
            self.wake()

    async def _verified(self, claim: Claim, status: str, detail: str) -> None:
        event = "verified" if status == VERIFY_PASSED else "verification_failed"
        entry = self._entry(claim, event, detail)
        written = await self.store.set_verification(
            claim.id, status, detail, None, claim.verify_deadline, entry
        )
        self.metrics.verifications.labels(status).inc()
        if written is not None:
            await self.notifier.publish([written])

    async def refresh_circuit(self, target: str) -> None:
        breaker = self.config.breaker(target)
        if breaker is None:
            return
        failures = await self.store.target_failures(target, 0.0)
        until = guardrails.circuit_open_until(failures, breaker)
        is_open = until is not None and self.clock.now() < until
        self.metrics.circuit_open.labels(target).set(1 if is_open else 0)


def render_context(claim: Claim, results: Mapping[str, str] | None = None) -> RenderContext:
    c = claim.context
    return RenderContext(
        results=results or {},
        labels=c.get("labels", {}),
        annotations=c.get("annotations", {}),
        incident_id=claim.incident_id,
        rule=claim.rule,
        tier=claim.step,
        value=c.get("value"),
        fingerprint=c.get("fingerprint", ""),
    )


def _mute(row: Any) -> Mute:
    return Mute(
        id=row.id,
        reason=row.reason,
        until=row.until,
        created_by=row.created_by,
        rule=row.rule,
        target=row.target,
        matchers=parse_matchers(row.matchers) if row.matchers else (),
    )


def _approval_detail(approval: Any) -> str:
    if approval is None:
        return ""
    if approval.status == "denied":
        because = f": {approval.reason}" if approval.reason else ""
        return f"denied by {approval.decided_by}{because}"
    if approval.status == "expired":
        return f"approval {approval.id} expired unanswered; an expired approval never runs"
    return f"approval {approval.id} is {approval.status}"
