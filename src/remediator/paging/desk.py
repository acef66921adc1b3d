"""The paging desk: turns the audit trail into pages, climbs the escalation path in time, and
delivers pager events through a durable queue.

Like the Slack outbox, it reads what to do from the audit trail behind a cursor of its own, and
queues its pager events, the incidents' page states and its own audit lines ("paged") in the same
transaction that moves the cursor: each line pages exactly once, crash or not. Delivery takes the
first pending event of each (incident, pager), so a pager sees an incident's trigger, acknowledge
and resolve in order; a 429 waits its Retry-After, 5xx answers and refused connections back off
without limit (a pager outage delays a page, never loses it); a 4xx other than 408 and 429 is
final. Escalation timers are derived from the pages of open, unacknowledged incidents.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import httpx

from remediator.clock import Clock
from remediator.config import Config
from remediator.errors import StoreError
from remediator.metrics import Metrics
from remediator.paging import pagers
from remediator.paging.policy import Policy, paged_events, pages
from remediator.paging.records import (
    ACKNOWLEDGE,
    RESOLVE,
    TRIGGER,
    PageEvent,
    PageRow,
    PageState,
    Unacked,
)
from remediator.schema import format_duration
from remediator.store.pages import CURSOR as PAGE_CURSOR
from remediator.store.records import AuditEntry
from remediator.tasks import cancel_and_wait
from remediator.trust import default_tls
from remediator.types import DeskStore

log = logging.getLogger(__name__)

BATCH = 200
IDLE_WAIT = 5.0
CURSOR_EVERY = 5.0  # seconds: a cursor past lines that paged nothing is written at most this
# often (as the Slack outbox's, issue 17); after a crash those lines are read again, page nothing
PASS_GAP = 0.05  # seconds between two passes, at least (as the Slack outbox's)
CONCURRENCY = 4
PAGED, PAGE_ESCALATED = "paged", "page_escalated"


def following(policies: Iterable[Policy]) -> tuple[str, ...]:
    """The events of the audit lines the desk reads, in order: the pages it escalated,
    acknowledgements and resolutions, and what its policies page on. _may_page is false for
    every other line, so the store skips them (most of the trail: claims and successes)."""
    events = {PAGE_ESCALATED, "acknowledged", "resolved"}
    for policy in policies:
        events |= paged_events(policy)
    return tuple(sorted(events))


class PagerDesk:
    """A Notifier: publish() wakes it; it reads what to page from the audit trail."""

    def __init__(
        self,
        config: Config,
        store: DeskStore,
        metrics: Metrics,
        clock: Clock,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self.paging = config.paging
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.http = http or httpx.AsyncClient(timeout=10.0, trust_env=False, verify=default_tls())
        self.wake_timers: Any = lambda: None  # set by the daemon: an escalation moved
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._cursor = 0
        self._cursor_written = -CURSOR_EVERY  # when the cursor was last written (clock time)
        self._first_due: float | None = 0.0  # when the first queued event is due, as last read or
        # queued (None: nothing queued; 0: read it again)
        self._paused: dict[str, float] = {}  # pager -> until (a 429's Retry-After)
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._deriving = asyncio.Lock()
        self._delivering = asyncio.Lock()

    def reconfigure(self, config: Config) -> None:
        """A reloaded config: its pagers, policies and rules. Pages already queued keep their
        bodies; a pager no longer configured fails them (logged, counted)."""
        self.config = config
        self.paging = config.paging

    async def publish(self, entries: list[AuditEntry]) -> None:
        self._wake.set()

    async def start(self) -> None:
        stored = await self.store.get_setting(PAGE_CURSOR)
        if stored is None:  # a first start, or a store from before paging: only what is new
            latest = (await self.store.history(1, None)).items
            stored = latest[0]["id"] if latest else 0
            await self.store.record_pages([], [], [], int(stored), self.clock.now())
        self._cursor, self._cursor_written = int(stored), self.clock.now()
        self._first_due = 0.0  # what a previous leader left queued is in the store
        self._task = asyncio.create_task(self._run(), name="remediator-pager-desk")

    async def halt(self) -> None:
        """Stop delivering (a deposed leader): the next leader resumes where this stopped."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def stop(self) -> None:
        await self.halt()
        await self.http.aclose()

    async def drain(self) -> None:
        """Derive what is new and deliver until a pass delivers nothing (tests and tools)."""
        await self.derive_new()
        while await self.deliver_due():
            await self.derive_new()

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # a line published during the pass wakes the next at once
            wait = IDLE_WAIT
            try:
                await self.derive_new()
                if await self._deliver_if_due():
                    continue
                if self._first_due is not None:
                    wait = min(IDLE_WAIT, max(0.0, self._first_due - self.clock.now()))
            except StoreError as e:
                log.error("pager desk: store unavailable: %s", e)
                self._first_due = 0.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.01)):
                    await self._wake.wait()
            await asyncio.sleep(PASS_GAP)

    async def _deliver_if_due(self) -> int:
        """Deliver if an event may be due (queued since, or due as last read); after a pass
        that sent nothing, read when the next one is due."""
        if self._first_due is None or self._first_due > self.clock.now():
            return 0
        sent = await self.deliver_due()
        if not sent:
            self._first_due = await self._read_due()
        return sent

    async def _read_due(self) -> float | None:
        pending, due = await self.store.page_stats()
        self.metrics.pager_outbox_depth.set(pending)
        return due

    # -- from the audit trail to pages ----------------------------------------------------------

    async def derive_new(self) -> None:
        async with self._deriving:
            while True:
                entries, last = await self.store.audit_events_after(
                    self._cursor, BATCH, following(self.paging.policies.values())
                )
                if last <= self._cursor:
                    return
                events: list[PageEvent] = []
                audit: list[AuditEntry] = []
                states: dict[int, PageState | None] = {}
                for entry in entries:
                    await self._derive(entry, states, events, audit)
                changed = [s for s in states.values() if s is not None]
                now = self.clock.now()
                written: list[AuditEntry] = []
                if events or changed or audit or now - self._cursor_written >= CURSOR_EVERY:
                    written = await self.store.record_pages(events, changed, audit, last, now)
                    self._cursor_written = now
                if events:
                    self._first_due = 0.0
                self._cursor = last
                if written or events:
                    self._wake.set()
                    self.wake_timers()
                if len(entries) < BATCH:
                    return  # the trail's end when read: a line published since wakes the desk

    async def _derive(
        self,
        entry: AuditEntry,
        states: dict[int, PageState | None],
        events: list[PageEvent],
        audit: list[AuditEntry],
    ) -> None:
        incident_id = entry.incident_id
        if incident_id is None or not self._may_page(entry):
            return  # no read for the lines that cannot page (claims, successes, storms)
        if incident_id not in states:
            states[incident_id] = await self.store.page_state(incident_id)
        state = states[incident_id]
        if entry.kind == "page" and entry.event == PAGE_ESCALATED and state is not None:
            level = int(entry.detail.get("level", state.level))
            states[incident_id] = await self._call(state, level, entry, events)
        elif entry.event == "acknowledged" and state is not None:
            await self._tell(state, ACKNOWLEDGE, entry, events)
        elif entry.kind == "decision" and entry.event == "resolved" and state is not None:
            await self._tell(state, RESOLVE, entry, events)
        else:
            rule = self.config.rule(entry.rule)
            policy = self._policy(state, rule)
            if policy is not None and pages(entry, rule, policy):
                if await self.store.incident_status(incident_id) != "open":
                    return  # resolved meanwhile (a verification that ended after it): no page
                if state is None:
                    state = PageState(incident_id, policy.name, 1, entry.at)
                states[incident_id] = await self._call(state, state.level, entry, events)
                audit.append(self._paged(entry, policy, state.level))

    def _may_page(self, entry: AuditEntry) -> bool:
        """Whether the line may call, acknowledge or resolve a page, before any read (its event
        is one `following` names)."""
        if entry.event == PAGED:
            return False
        if entry.event in (PAGE_ESCALATED, "acknowledged", "resolved"):
            return True
        return any(
            policy is not None and pages(entry, self.config.rule(entry.rule), policy)
            for policy in self.paging.policies.values()
        )

    def _policy(self, state: PageState | None, rule: Any) -> Policy | None:
        if state is not None:  # an incident keeps the policy that first paged for it
            return self.paging.policies.get(state.policy)
        return self.paging.policy(rule)

    async def _call(
        self, state: PageState, level: int, entry: AuditEntry, events: list[PageEvent]
    ) -> PageState:
        """Trigger (or update) the incident's page at the level's pagers."""
        policy = self.paging.policies.get(state.policy)
        if policy is None or not 1 <= level <= len(policy.levels):
            return state
        names = policy.levels[level - 1].pagers
        if names:
            view = await self._incident(entry)
            for name in names:
                pager = self.paging.pagers[name]
                body = pagers.event(pager, TRIGGER, view, entry.message)
                events.append(PageEvent(state.incident_id, name, TRIGGER, body))
        known = state.pagers + tuple(n for n in names if n not in state.pagers)
        at = state.level_at if level == state.level else entry.at
        return replace(state, level=level, level_at=at, pagers=known)

    async def _tell(
        self, state: PageState, action: str, entry: AuditEntry, events: list[PageEvent]
    ) -> None:
        """Acknowledge or resolve the incident's page at every pager it was triggered at."""
        if not state.pagers:
            return
        view = await self._incident(entry)
        for name in state.pagers:
            pager = self.paging.pagers.get(name)
            if pager is None:
                continue  # no longer configured
            body = pagers.event(pager, action, view, entry.message, by=entry.actor)
            events.append(PageEvent(state.incident_id, name, action, body))

    def _paged(self, entry: AuditEntry, policy: Policy, level: int) -> AuditEntry:
        called = policy.levels[level - 1]
        who = ", ".join([*called.mention, *called.pagers]) or "nobody"
        return AuditEntry(
            kind="page",
            event=PAGED,
            message=f"Paged {policy.name} level {level} ({who}): {entry.message}",
            at=entry.at,
            incident_id=entry.incident_id,
            rule=entry.rule,
            tier=entry.tier,
            actor="remediator",
            detail={
                "policy": policy.name,
                "level": level,
                "mention": list(called.mention),
                "pagers": list(called.pagers),
                "cause": entry.event,
                "audit_id": entry.id,
                **({"storm": True} if entry.detail.get("storm") else {}),  # Slack: the summary
            },
        )

    async def _incident(self, entry: AuditEntry) -> dict[str, Any]:
        """What a page says about the incident."""
        assert entry.incident_id is not None
        view = await self.store.incident(entry.incident_id) or {}
        labels: Mapping[str, str] = view.get("labels", {})
        annotations: Mapping[str, str] = view.get("annotations", {})
        rule = self.config.rule(entry.rule)
        tier = (rule.tier_name(view.get("tier", -1)) if rule else None) or entry.tier
        key = view.get("key", {})
        return {
            "id": entry.incident_id,
            "severity": labels.get(self.config.slack.severity_label, ""),
            "title": annotations.get("summary") or labels.get("alertname") or entry.rule,
            "source": labels.get("instance") or labels.get("service") or entry.rule,
            "rule": entry.rule,
            "tier": tier,
            "link": view.get("external_url", ""),
            "details": {
                "incident": entry.incident_id,
                "rule": entry.rule,
                "tier": tier,
                "value": view.get("value"),
                **{f"key.{k}": v for k, v in key.items()},
            },
        }

    # -- escalation in time ---------------------------------------------------------------------

    def _due(self, page: Unacked) -> float | None:
        policy = self.paging.policies.get(page.state.policy)
        if policy is None:
            return None
        severity = page.labels.get(self.config.slack.severity_label, "")
        after = self.paging.after(policy, page.state.level, severity)
        return None if after is None else page.state.level_at + after

    async def next_due(self) -> float | None:
        dues = [self._due(page) for page in await self.store.unacked_pages()]
        return min((d for d in dues if d is not None), default=None)

    async def escalate_due(self, now: float) -> None:
        """Call the next level of every page unacknowledged past its level's time."""
        written = []
        for page in await self.store.unacked_pages():
            due = self._due(page)
            if due is None or due > now:
                continue
            entry = self._escalation(page, now)
            done = await self.store.escalate_page(page.state, page.state.level + 1, now, entry)
            if done is not None:
                self.metrics.page_escalations.inc()
                written.append(done)
        if written:
            self._wake.set()

    def _escalation(self, page: Unacked, now: float) -> AuditEntry:
        state = page.state
        policy = self.paging.policies[state.policy]
        level = state.level + 1
        called = policy.levels[level - 1]
        waited = format_duration(now - state.level_at)
        who = ", ".join([*called.mention, *called.pagers]) or "nobody"
        return AuditEntry(
            kind="page",
            event=PAGE_ESCALATED,
            message=f"Unacknowledged for {waited} at level {state.level} of {policy.name}: "
            f"paging level {level} ({who})",
            at=now,
            incident_id=state.incident_id,
            actor="remediator",
            detail={
                "policy": policy.name,
                "level": level,
                "mention": list(called.mention),
                "pagers": list(called.pagers),
            },
        )

    # -- delivery -------------------------------------------------------------------------------

    async def deliver_due(self) -> int:
        """One pass: the first due event of every (incident, pager)."""
        async with self._delivering:
            now = self.clock.now()
            rows = [
                r
                for r in await self.store.pages_due(now, BATCH)
                if self._paused.get(r.pager, 0.0) <= now
            ]
            results = await asyncio.gather(*(self._deliver(row) for row in rows))
            return sum(results)

    async def _deliver(self, row: PageRow) -> int:
        async with self._slots:
            pager = self.paging.pagers.get(row.pager)
            if pager is None:
                await self._failed(row, f"pager {row.pager!r} is no longer configured")
                return 1
            try:
                said = await pagers.send(pager, row.payload, self.http)
            except pagers.Retry as e:
                await self._retry(row, e)
                return 0
            except pagers.Refused as e:
                await self._failed(row, str(e))
                return 1
            log.info(
                "pager %s: %s of incident %d delivered: %s",
                row.pager,
                row.event,
                row.incident_id,
                said,
            )
            self.metrics.pager_deliveries.labels("sent").inc()
            await self.store.page_done(row.id, "sent", self.clock.now())
            return 1

    async def _failed(self, row: PageRow, error: str) -> None:
        log.error(
            "pager %s refused %s of incident %d: %s", row.pager, row.event, row.incident_id, error
        )
        self.metrics.pager_deliveries.labels("failed").inc()
        await self.store.page_done(row.id, "failed", self.clock.now(), error)

    async def _retry(self, row: PageRow, e: pagers.Retry) -> None:
        now = self.clock.now()
        p = self.paging
        backoff = min(p.retry_max, p.retry_initial * 2 ** min(row.attempts, 16))
        delay = backoff * (0.5 + random.random() / 2)  # noqa: S311 (jitter, not a secret)
        if e.after is not None:
            delay = max(delay, e.after)
            self._paused[row.pager] = max(self._paused.get(row.pager, 0.0), now + e.after)
        self.metrics.pager_deliveries.labels("retried").inc()
        log.warning(
            "pager %s: %s of incident %d not delivered (%s); retrying in %.1fs",
            row.pager,
            row.event,
            row.incident_id,
            e,
            delay,
        )
        await self.store.page_retry(row.id, now + delay, str(e))
