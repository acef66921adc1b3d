"""Runs claimed actions: one claim, at most one run, every attempt recorded.

A claim is a unique row (incident, step, action) written in the same transaction as the decision
that made it. Before it starts, the guardrails (guardrails.py) decide: run, refuse, dry-run, hold
for a maintenance window, wait for the target, or ask a human. A claim that runs is moved from
`claimed` to `running` with the exact request it will send; its precondition is checked, its
attempts retried with backoff, its outcome recorded; then its verification is polled by the timers.
Just before its first request may leave, the claim records `sent_at`. On start, claims still
`claimed` run; claims still `running` were interrupted: one whose request could not have left
(no `sent_at`) runs again, and one whose request may have left is handled by its action's
`on_interrupted` policy (interrupted.py): run again, read the target's state then decide, or
reported for a human. Never silently dropped, never silently repeated.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import aiohttp
import httpx

from remediator import guardrails, interrupted, judging
from remediator.actions.base import AttemptContext, AttemptResult, Clients
from remediator.clock import Clock, iso
from remediator.config import Config
from remediator.errors import Fenced, MissingResult, RenderError, StoreError, StoreUnavailable
from remediator.guardrails import Policy, Verdict
from remediator.judging import RuntimeState, may_run_resolved, render_context
from remediator.metrics import Metrics
from remediator.offers import Offer
from remediator.slots import Slots
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
    Applied,
    Attempt,
    AuditEntry,
    Changes,
    Claim,
    MuteRow,
    NewClaim,
    TargetHistory,
)
from remediator.store.starts import Judge
from remediator.trust import default_tls
from remediator.turns import Turns
from remediator.types import Action, ExecutorStore, Notifier

# An action line a storm does not fold into its summary: someone has to look.
LOUD_IN_A_STORM = frozenset({FAILED, INTERRUPTED, "approval_requested"})

log = logging.getLogger(__name__)

WAIT_POLL = 1.0  # how often a claim whose turn it is looks again at a busy target (replicas)
RESUME_FIRST, RESUME_MAX = 1.0, 10.0  # backoff of a claim waiting for the store to come back
# allowed, but every slot is taken: not started, judged again once one frees (slots.py)
NO_SLOT = Verdict("wait", "max_concurrency", "every slot is taken")
Ready = tuple[Action, Mapping[str, Any]]  # a claim started already: its action, its request


class Executor:
    def __init__(
        self,
        store: ExecutorStore,
        config: Config,
        notifier: Notifier,
        metrics: Metrics,
        clock: Clock,
        *,
        http: httpx.AsyncClient | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.config = config
        self.actions: Mapping[str, Action] = config.actions
        self.notifier = notifier
        self.metrics = metrics
        self.clock = clock
        self.state = RuntimeState(config.guardrails.killswitch)  # control keeps it current
        self.http = http or httpx.AsyncClient(
            follow_redirects=False, trust_env=False, verify=default_tls()
        )
        self._session: aiohttp.ClientSession | None = None  # made in the loop, at first use
        self._rand = rand
        self._slots = Slots(config.max_concurrency)  # taken when a claim is allowed (slots.py)
        self._turns = Turns(WAIT_POLL, self._start, self.turn_key)
        self._tokens = itertools.count(-1, -1)  # hold a turn and a slot for a claim to be made
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: set[int] = set()  # claims this process runs now: never twice at once
        self._reread: set[int] = set()  # queued claims to read again before they run
        # only the leader runs claims (leader.py); a follower's stay claimed for the leader
        self.leading = True
        self._polling: set[int] = set()
        self.holding: set[int] = set()  # claims started here and not yet settled (leases.py)
        self._open_circuits: set[str] = set()  # targets whose opening was announced
        # set by the daemon: timers to re-arm (with the deadline written), and the engine's
        # handler for failed verification
        self.wake: Callable[[float | None], None] = lambda at: None
        self.verify_failed: Callable[[Claim, str], None] = lambda claim, detail: None

    def reconfigure(self, config: Config) -> None:
        """A reloaded config: claims started from now on use its actions and guardrails (a
        running attempt keeps the action it started with)."""
        self.config = config
        self.actions = config.actions

    # -- lifecycle -----------------------------------------------------------------------------

    async def recover(self) -> None:
        """After a restart: unstarted claims run; interrupted ones go through their action's
        on_interrupted policy (in the background: a `verify` may read a slow target)."""
        self.submit(await self.store.claims_in((CLAIMED,)))
        for claim in await self.store.claims_in((RUNNING,)):
            self._spawn(self._recover_one(claim), f"recover-{claim.id}")

    async def _recover_one(self, claim: Claim) -> None:
        decision = await self._interrupted(claim)
        if not decision.rerun:
            await self._finish(claim, INTERRUPTED, decision.detail, from_statuses=(RUNNING,))
            return
        entry = self._entry(claim, "rerun", decision.detail)
        if await self.store.rerun_claim(claim.id, decision.detail, entry):
            log.warning("%s", entry.message)
            await self.notifier.publish([entry])
            self.submit([replace(claim, status=CLAIMED, request=None, sent_at=None)])

    async def _interrupted(self, claim: Claim) -> interrupted.Decision:
        """What the claim's interruption calls for (interrupted.py)."""
        if claim.interruptions >= interrupted.MAX_RERUNS:
            return interrupted.too_many(claim.interruptions)
        if claim.sent_at is None:
            return interrupted.never_sent()
        own = self.config.policy(claim.action)
        policy = interrupted.policy_for(claim.kind, own.on_interrupted)
        if policy == interrupted.RETRY:
            return interrupted.retry()
        if policy == interrupted.VERIFY and own.verify is not None:
            check = own.verify.check
            result = await check.evaluate(render_context(claim), self.clients())
            return interrupted.verified(result.holds, check.describe(), result.detail)
        if policy == interrupted.VERIFY and own.precondition is not None:
            check = own.precondition
            result = await check.evaluate(render_context(claim), self.clients())
            return interrupted.still_needed(result.holds, check.describe(), result.detail)
        return interrupted.escalate(claim.target)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(_unless_fenced(work), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def submit(self, claims: Iterable[Claim], reread: bool = False) -> None:
        """Queue each claim behind its target's (turns.py): it runs when its turn comes; not
        if this replica does not lead or already has it. `reread`: read each again first, and
        run it only if it still waits (a list read a while ago)."""
        if not self.leading:
            return
        for claim in claims:
            if claim.id not in self._inflight:
                self._inflight.add(claim.id)
                if reread:
                    self._reread.add(claim.id)
                self._turns.add(claim)

    def offer(self, news: Sequence[NewClaim]) -> Offer | None:
        """For the engine batch's apply that makes these claims: the turn of each one's target
        or lane that is free in this process, with a slot, reserved for it, so that the apply
        can start it in its own commit (offers.py). None if it can start none: a follower, every
        turn taken, no slot free (or claims already waiting to be judged for one)."""
        if not self.leading:
            return None
        tokens: dict[str, int] = {}
        for new in news:
            key = judging.turn_key(self.config, new)
            if key in tokens or not self._turns.free(key):
                continue
            token = next(self._tokens)
            if not self._slots.spare(token):
                break
            self._turns.reserve(key, token)
            tokens[key] = token
        if not tokens:
            return None
        return Offer(self._turns, tokens, self.config, self.state, self.clock.now())

    def admit(self, applied: Applied, offer: Offer | None) -> None:
        """The claims an engine batch's apply made: those it started run at once, holding the
        turn and slot reserved for them, as _admitted leaves a claim it started; the others
        are submitted (judged again in a start of their own), the first on a reserved turn
        taking it; reserved turns and slots left over go back."""
        if offer is None or offer.turns is not self._turns or not self.leading:
            self.withdraw(offer)  # (abandoned meanwhile: its claims are the next leader's)
            self.submit(applied.claims)
            return
        tokens = dict(offer.tokens)
        for claim in applied.claims:
            if (request := applied.started.get(claim.id)) is not None:
                self._run_started(claim, (offer.config.actions[claim.action], request), tokens)
        for claim in applied.claims:
            key = self.turn_key(claim)
            if claim.id not in self._inflight and (token := tokens.pop(key, None)) is not None:
                self._slots.give_back(token)
                self._inflight.add(claim.id)
                if not self._turns.hand(token, claim, start=True):
                    self._inflight.discard(claim.id)
                    self._turns.release(key, token)
        self.withdraw(replace(offer, tokens=tokens))
        self.submit(applied.claims)

    def _run_started(self, claim: Claim, ready: Ready, tokens: dict[str, int]) -> None:
        """A claim started in an apply's commit: its attempts go at once, with the turn and slot
        reserved for it (two started on one turn cannot be: the store's busy check)."""
        self._inflight.add(claim.id)
        self.holding.add(claim.id)
        token = tokens.pop(self.turn_key(claim), None)
        if token is not None:
            self._slots.rename(token, claim.id)
            self._turns.hand(token, claim, start=False)
        self._spawn(self._run(claim, started=ready), f"claim-{claim.id}")

    def withdraw(self, offer: Offer | None) -> None:
        """Give back the turns and slots reserved for an offer (its apply failed, or they were
        not used)."""
        if offer is None:
            return
        for key, token in offer.tokens.items():
            self._slots.give_back(token)
            offer.turns.release(key, token)

    def _start(self, claim: Claim) -> None:
        reread = claim.id in self._reread
        self._reread.discard(claim.id)
        self._spawn(self._run(claim, reread), f"claim-{claim.id}")

    def queued(self) -> int:
        """How many claims wait for their target's turn."""
        return self._turns.queued()

    async def abandon(self) -> None:
        """A deposed leader stops at once: every claim stays as the store has it (claimed, or
        running and handled by the next leader's recover), nothing more is written."""
        self.leading = False
        self._turns.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._turns = Turns(WAIT_POLL, self._start, self.turn_key)
        self._inflight.clear()
        self._reread.clear()

    async def idle(self) -> None:
        """Wait until every submitted action has finished (for tests and tools)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def shutdown(self, grace: float) -> None:
        """Let running actions finish for up to `grace` seconds; interrupt the rest. Claims that
        wait for their turn do not start: they stay claimed and run after the next start."""
        self._turns.close()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.http.aclose()
        if self._session is not None:
            await self._session.close()

    def session(self) -> aiohttp.ClientSession:
        """The `http` and `kafka_connect` kinds' client (and the Kafka Connect checks'): no
        redirects followed, no proxy from the environment, certifi's trust as httpx's."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=default_tls()),  # httpx's trust (trust.py)
                trust_env=False,
                auto_decompress=True,
            )
        return self._session

    def clients(self) -> Clients:
        """The clients a precondition or a verification reads with."""
        return Clients(self.http, self.session())

    # -- one claim -----------------------------------------------------------------------------

    async def _run(self, claim: Claim, reread: bool = False, started: Ready | None = None) -> None:
        """Run the claim, once its turn came; `started`: the action and request an engine
        batch's apply started it with (offers.py): it goes straight to its attempts."""
        try:
            if reread:
                current = await self.store.claim(claim.id)
                if current is None or current.status != CLAIMED:
                    return
            async with self._slot(claim.id):
                if started is None:
                    await self._guarded(claim)
                else:
                    await self._execute(claim, *started)
        except asyncio.CancelledError:
            # the claim stays as it is: claimed, it runs after the restart; running, its
            # interruption is handled then (recover), whether or not its request had left
            log.warning(
                "the daemon shut down during %s of incident %d; handled at the next start",
                claim.action,
                claim.incident_id,
            )
            raise
        except Fenced:
            raise  # no longer the leader: the claim is the next leader's (_unless_fenced)
        except StoreError as e:
            log.error(
                "the store failed during %s of incident %d (%s); it goes on from what the store "
                "says once the store answers again",
                claim.action,
                claim.incident_id,
                e,
            )
            self._spawn(self._resume(claim.id), f"resume-{claim.id}")
        except Exception:
            log.exception(
                "action %s of incident %d failed unexpectedly", claim.action, claim.incident_id
            )
            await self._finish(claim, FAILED, "internal error; see the daemon's log")
        finally:
            self._inflight.discard(claim.id)
            self._turns.pass_on(claim)
            self.holding.discard(claim.id)

    @asynccontextmanager
    async def _slot(self, claim_id: int) -> AsyncIterator[None]:
        """The slot the claim takes when the guardrails allow it (slots.py) goes back when its
        attempts end (_acted), or however else its run ends."""
        try:
            yield
        finally:
            self._acted(claim_id)

    def _acted(self, claim_id: int) -> None:
        """The claim no longer acts: its slot, if it has one, goes to the claims waiting. Its
        outcome's commit and messages need none: held through them, at 400 new incidents/s the
        16 slots waited on the writer's commits and capped the daemon at 200 actions/s."""
        self._slots.give_back(claim_id)

    async def _resume(self, claim_id: int) -> None:
        """A claim whose run the store failed under: once the store answers again, read what
        it holds and go on from there, as after a restart. Still `claimed`: it runs (judged
        again); `running`: it was interrupted, and its action's on_interrupted policy decides
        (a request that may have left is never silently repeated); settled: nothing to do."""
        delay = RESUME_FIRST
        while True:
            await asyncio.sleep(delay)
            try:
                claim = await self.store.claim(claim_id)
                if claim is not None and claim.status == CLAIMED:
                    self.submit([claim])
                elif claim is not None and claim.status == RUNNING:
                    await self._recover_one(claim)
                return
            except StoreError as e:
                log.info("claim %d waits for the store: %s", claim_id, e)
                delay = min(delay * 2, RESUME_MAX)

    async def _guarded(self, claim: Claim) -> None:
        action = self.actions.get(claim.action)
        if action is None:
            await self._finish(claim, FAILED, f"action {claim.action!r} is no longer configured")
            return
        try:
            request = await self._prepare(claim, action)
        except RenderError as e:
            if not await self._resolved_meanwhile(claim):
                await self._finish(claim, FAILED, f"cannot build the request: {e}")
            return
        if await self._admitted(claim, action, request):
            await self._execute(claim, action, request)

    async def _prepare(self, claim: Claim, action: Action) -> Mapping[str, Any]:
        """The claim's request; the incident's earlier results are read only for an action
        that refers to one (`$results.<action>`)."""
        try:
            return action.prepare(render_context(claim))
        except MissingResult:
            results = await self.store.incident_results(claim.incident_id)
            return action.prepare(render_context(claim, results))

    def lane(self, claim: Claim) -> str | None:
        """What of its target the claim holds (lanes.py; None: all of it)."""
        return judging.lane(self.config, claim)

    def turn_key(self, claim: Claim) -> str:
        """The queue the claim takes its turn in (turns.py): its target, or its lane of it."""
        return judging.turn_key(self.config, claim)

    async def _admitted(self, claim: Claim, action: Action, request: Mapping[str, Any]) -> bool:
        """Ask the guardrails until they allow (True) or settle the claim otherwise (False)."""
        lane = self.lane(claim)
        again = False
        while True:
            async with self._slots.judging(again):
                verdict, started = await self._start_if_allowed(claim, request, lane)
            if not started:
                self._slots.give_back(claim.id)  # allowed in a batch that then changed
            if again := verdict is NO_SLOT:
                continue  # judged again once a slot frees
            if verdict is None:  # its incident resolved: a firing action never runs then
                await self._skip_resolved(claim)
                return False
            if verdict.outcome == "allow":
                if started:
                    self.holding.add(claim.id)
                return started
            if verdict.outcome != "wait":
                await self._settle(claim, action, request, verdict)
                return False
            await self._turns.wait()

    async def _resolved_meanwhile(self, claim: Claim) -> bool:
        """Skip a firing action whose incident resolved: it never runs for a resolved alert."""
        if may_run_resolved(claim):
            return False
        if await self.store.incident_status(claim.incident_id) == "open":
            return False
        await self._skip_resolved(claim)
        return True

    async def _skip_resolved(self, claim: Claim) -> None:
        await self._finish(
            claim,
            SKIPPED,
            "the incident resolved before the action "
            "started; a firing action never runs for a resolved alert",
        )

    async def _start_if_allowed(
        self, claim: Claim, request: Mapping[str, Any], lane: str | None
    ) -> tuple[Verdict | None, bool]:
        """The guardrails' verdict on starting the claim now and, if they allow, its start, in
        one store transaction: claims judged at the same moment cannot both take the last unit
        of a budget or both find their target free, and a firing action cannot start once its
        incident resolved (None), however long it waited for its target."""
        s = judging.start_if(self.config, self.state, claim, request, self.clock.now())
        return await self.store.start_claim_if(
            claim, request, s.now, s.since, self._with_slot(claim, s.judge), lane, s.sent, s.needed
        )

    def _with_slot(self, claim: Claim, judge: Judge) -> Judge:
        """The judge, taking the claim's slot when it allows (on the store's writer thread, or
        in PostgreSQL's starts batch): allowed while every slot is taken, it waits (NO_SLOT)."""

        def judged(history: TargetHistory, mutes: list[MuteRow]) -> Verdict | None:
            verdict = judge(history, mutes)
            if (
                verdict is not None
                and verdict.outcome == "allow"
                and not self._slots.take(claim.id)
            ):
                return NO_SLOT
            return verdict

        return judged

    def policy(self, claim: Claim) -> Policy:
        """What config says about this claim (judging.py)."""
        return judging.policy(self.config, claim)

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
            log.info("%s", entry.message, extra=claim_fields(claim))
            await self.notifier.publish([entry])
            self.wake(verdict.until)
        if held and verdict.guardrail == "killswitch" and not self.state.killswitch:
            await self._release(claim, "the kill switch was turned off as it was held")

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
        self.wake(expires)

    async def _execute(self, claim: Claim, action: Action, request: Mapping[str, Any]) -> None:
        self.metrics.actions_running.inc()
        started = time.monotonic()
        last: Attempt | None = None
        try:
            status, detail, checked = await self._precondition(claim, request)
            sending = checked and status is None  # sent_at not recorded with the start
            if sending and not await self.store.mark_sent(claim.id, self.clock.now()):
                return  # no longer running: settled elsewhere, nothing sent
            if status is None:
                status, detail, last = await self._attempts(action, claim, request)
        finally:
            self.metrics.actions_running.dec()
            self.metrics.action_duration.labels(action.kind).observe(time.monotonic() - started)
        self._acted(claim.id)
        await self._finish(claim, status, detail, last_attempt=last, hand_off=True)
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
            self.wake(now + verify.every)

    async def _precondition(
        self, claim: Claim, request: Mapping[str, Any]
    ) -> tuple[str | None, str, bool]:
        """(None or PRECONDITION_FAILED, detail, whether a precondition was checked)."""
        check = self.config.policy(claim.action).precondition
        if check is None:
            return None, "", False
        result = await check.evaluate(render_context(claim), self.clients())
        if result.holds:
            return None, "", True
        return PRECONDITION_FAILED, f"precondition failed, not acting: {result.detail}", True

    async def _attempts(
        self, action: Action, claim: Claim, request: Mapping[str, Any]
    ) -> tuple[str, str, Attempt]:
        """The outcome, and the last attempt: recorded with the outcome, in one commit (the
        others are recorded before the next one starts)."""
        total = action.retry.retries + 1
        for n in range(1, total + 1):
            result, attempt = await self._attempt(action, claim, dict(request), n)
            self.metrics.action_attempts.labels(action.kind, "ok" if result.ok else "error").inc()
            if result.ok:
                return SUCCEEDED, f"{action.describe(dict(request))}: {result.detail}", attempt
            if not result.retryable or n == total:
                tries = f" after {n} attempts" if n > 1 else ""
                detail = f"{action.describe(dict(request))}: {result.detail}{tries}"
                return FAILED, detail, attempt
            await self.store.record_attempt(attempt)
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
    ) -> tuple[AttemptResult, Attempt]:
        ctx = AttemptContext(n, action.timeout, claim.idempotency_key, self.http, self.session())
        started = self.clock.now()
        try:
            # the kind enforces its own timeout; this is the backstop if it does not (in this
            # task: wait_for ran the attempt in a task of its own, 16 us more per action)
            async with asyncio.timeout(action.timeout + 5.0):
                result = await action.attempt(request, ctx)
        except TimeoutError:
            result = AttemptResult(False, f"no answer within {action.timeout:g}s", retryable=True)
        attempt = Attempt(
            claim.id,
            n,
            started,
            self.clock.now(),
            result.ok,
            result.detail,
            result.status_code,
            result.exit_code,
            result.output,
            result.ok or result.sick_target,
        )
        return result, attempt

    async def _finish(
        self,
        claim: Claim,
        status: str,
        detail: str,
        from_statuses: tuple[str, ...] = (CLAIMED, RUNNING),
        last_attempt: Attempt | None = None,
        hand_off: bool = False,
    ) -> None:
        entry = self._entry(claim, status, detail)
        waiter = hand_off and self._turns.waiting(claim)
        finishing = asyncio.ensure_future(
            self._finish_claim(claim.id, status, detail, entry, from_statuses, last_attempt, waiter)
        )
        if waiter:
            # The next claim on the target need not wait for this commit: the task above
            # queues its write first (asyncio runs ready callbacks in the order scheduled), and
            # the store commits ordered writes in the order queued, so the next claim's
            # judge-and-start comes after it, in the same transaction or a later one, and finds
            # the target free. Saves a commit per action on a busy target.
            self._turns.pass_on(claim)
        written = await asyncio.shield(finishing)
        if hand_off:
            # nobody waited: the write went beside the starts, and a claim that came meanwhile
            # is judged once it committed
            self._turns.pass_on(claim)
        if written is None:
            return  # already finished
        self.metrics.actions.labels(claim.kind, status).inc()
        level = logging.INFO if status in (SUCCEEDED, DRY_RUN) else logging.WARNING
        log.log(level, "%s", written.message, extra=claim_fields(claim))
        await self.notifier.publish([written])
        if status == FAILED:
            await self.refresh_circuit(claim.target, claim)
        elif status == SUCCEEDED and self.config.breaker(claim.target) is not None:
            self.metrics.circuit_open.labels(claim.target).set(0)  # a success closes it

    async def _finish_claim(
        self,
        claim_id: int,
        status: str,
        detail: str,
        entry: AuditEntry,
        from_statuses: tuple[str, ...],
        last_attempt: Attempt | None,
        ordered: bool,
    ) -> AuditEntry | None:
        """A claim's outcome is what happened: written as soon as the store takes it, however
        long it is unavailable (an outcome forgotten would leave the claim to on_interrupted).
        `ordered`: in order with the starts (a waiter was handed the claim's turn)."""
        delay = RESUME_FIRST
        while True:
            try:
                return await self.store.finish_claim(
                    claim_id, status, detail, entry.at, entry, from_statuses, last_attempt, ordered
                )
            except StoreUnavailable as e:
                log.error("claim %d: outcome %s waits for the store: %s", claim_id, status, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESUME_MAX)

    def _entry(self, claim: Claim, event: str, detail: str) -> AuditEntry:
        """An action's line. A claim made during a storm is told by the storm's summary, as its
        incident's opening was, unless a human must act on it (a failure, an approval)."""
        quiet = claim.context.get("storm") is True and event not in LOUD_IN_A_STORM
        return AuditEntry(
            kind="action",
            event=event,
            message=f"{claim.action}: {event}: {detail}",
            at=self.clock.now(),
            incident_id=claim.incident_id,
            rule=claim.rule,
            tier=claim.step,
            action=claim.action,
            detail={"claim_id": claim.id, "storm": True} if quiet else {"claim_id": claim.id},
        )

    # -- timers: held claims and verification ---------------------------------------------------

    async def release_held(self, now: float) -> None:
        """Claims held until a time (a maintenance window's or a mute's end) that has come go
        back to the guardrails."""
        for claim in await self.store.claims_in((HELD,)):
            if claim.hold_until is not None and claim.hold_until <= now:
                await self._release(claim, "the maintenance window or mute that held it is over")

    async def release(self, reason: str, which: Callable[[Claim], bool]) -> None:
        """Held claims whose hold has lifted (the kill switch turned off, a mute ended early) go
        back to the guardrails: each is judged again, through every one of them."""
        for claim in await self.store.claims_in((HELD,)):
            if which(claim):
                await self._release(claim, reason)

    async def _release(self, claim: Claim, reason: str) -> None:
        entry = self._entry(claim, "released", f"{reason}; judged again through every guardrail")
        if await self.store.set_claim(claim.id, CLAIMED, f"released: {reason}", entry, (HELD,)):
            log.info("%s", entry.message, extra=claim_fields(claim))
            await self.notifier.publish([entry])
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
        next_at: float | None = None
        try:
            result = await verification.check.evaluate(render_context(claim), self.clients())
            now = self.clock.now()
            deadline = claim.verify_deadline or now
            if result.holds:
                await self._verified(claim, VERIFY_PASSED, result.detail)
            elif now >= deadline:
                detail = f"not verified within {verification.within:g}s: {result.detail}"
                await self._verified(claim, VERIFY_FAILED, detail)
                self.verify_failed(claim, result.detail)
                await self.refresh_circuit(claim.target, claim)
            else:
                next_at = min(now + verification.every, deadline)
                await self.store.set_verification(
                    claim.id, VERIFY_PENDING, result.detail, next_at, deadline
                )
        finally:
            self._polling.discard(claim.id)
            self.wake(next_at)

    async def _verified(self, claim: Claim, status: str, detail: str) -> None:
        event = "verified" if status == VERIFY_PASSED else "verification_failed"
        entry = self._entry(claim, event, detail)
        written = await self.store.set_verification(
            claim.id, status, detail, None, claim.verify_deadline, entry
        )
        self.metrics.verifications.labels(status).inc()
        if written is not None:
            await self.notifier.publish([written])

    async def refresh_circuit(self, target: str, failed: Claim | None = None) -> None:
        """The target's breaker gauge from its failures; when `failed` (a claim that just failed,
        or failed its verification) opened it, say so in that claim's incident."""
        breaker = self.config.breaker(target)
        if breaker is None:
            return
        failures = await self.store.target_failures(target)
        until = guardrails.circuit_open_until(failures, breaker)
        now = self.clock.now()
        is_open = until is not None and now < until
        self.metrics.circuit_open.labels(target).set(1 if is_open else 0)
        if not is_open:
            self._open_circuits.discard(target)
        elif target not in self._open_circuits:
            self._open_circuits.add(target)
            if failed is not None and until is not None:
                await self._circuit_opened(failed, len(failures), until)

    async def _circuit_opened(self, claim: Claim, failures: int, until: float) -> None:
        entry = AuditEntry(
            kind="action",
            event="circuit_opened",
            message=f"Circuit breaker of {claim.target} OPEN after {failures} failures: "
            f"remediator stops acting on it until {iso(until)}, then lets one attempt through",
            at=self.clock.now(),
            incident_id=claim.incident_id,
            rule=claim.rule,
            tier=claim.step,
            action=claim.action,
            detail={"claim_id": claim.id, "target": claim.target, "until": iso(until)},
        )
        applied = await self.store.apply(Changes(at=entry.at, audit=[entry]))
        await self.notifier.publish(applied.audit)


async def _unless_fenced(work: Coroutine[Any, Any, None]) -> None:
    """Run the work; a refusal of the store because this replica no longer leads ends it,
    leaving the claim as it is for the next leader."""
    try:
        await work
    except Fenced as e:
        log.warning("no longer the leader, leaving the claim to the next one: %s", e)


def claim_fields(claim: Claim) -> dict[str, object]:
    """The ids a log record about a claim carries as fields (see logs.py)."""
    return {
        "incident_id": claim.incident_id,
        "rule": claim.rule,
        "claim_id": claim.id,
        "action": claim.action,
        "target": claim.target,
    }
