"""The path of an alert: journal -> rules -> incidents -> claims -> executor.

Ingest hands the engine each notification after it is durable in the journal. One worker consumes
them in journal order, in batches: it matches rules, asks incidents.py for decisions, and commits
everything a batch decided (incident changes, alert instances, claims, audit) in one transaction
together with the journal entries' processed marks. Only then do claimed actions start. A crash at
any point replays unprocessed journal entries on start, and claims make every action run at most
once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from remediator.alerts import Alert, Notification, parse_notification
from remediator.clock import Clock
from remediator.config import RESOLVED_STEP, Config
from remediator.errors import PayloadError, StoreError
from remediator.executor import Executor
from remediator.incidents import (
    Closed,
    Decision,
    Escalated,
    Firing,
    Incident,
    NoValue,
    Opened,
    RunTier,
    Transition,
    on_firing,
    on_resolved,
    open_incident,
)
from remediator.metrics import Metrics
from remediator.rules import Rule, RuleIndex
from remediator.store.records import (
    AuditEntry,
    Changes,
    IncidentWrite,
    InstanceWrite,
    NewClaim,
)
from remediator.types import Notifier, Store

log = logging.getLogger(__name__)

BATCH_LIMIT = 256
RECENTLY_RESOLVED = 10_000
RETRY_DELAY = 1.0
OpenKey = tuple[str, tuple[str, ...]]


@dataclass(slots=True)
class _Batch:
    """Decisions of one batch before commit: changes to write, plus the cache as it will be."""

    changes: Changes
    open: dict[OpenKey, Incident] = field(default_factory=dict)  # incidents touched
    closed: set[OpenKey] = field(default_factory=set)


class Engine:
    def __init__(
        self,
        config: Config,
        store: Store,
        executor: Executor,
        notifier: Notifier,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.config = config
        self.index = RuleIndex(config.rules)
        self.store = store
        self.executor = executor
        self.notifier = notifier
        self.metrics = metrics
        self.clock = clock
        self.open: dict[OpenKey, Incident] = {}
        self._recently_resolved: OrderedDict[tuple[str, str, float], None] = OrderedDict()
        self._queue: asyncio.Queue[tuple[int, Notification]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._next_placeholder = -1
        self.started = False

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load open incidents, replay what was acknowledged but not processed, start working."""
        await self._load()
        for journal_id, body in await self.store.unprocessed_journal():
            try:
                self.submit(journal_id, parse_notification(json.loads(body)))
            except (ValueError, PayloadError) as e:  # cannot happen for what ingest accepted
                log.error("journal entry %d is unreadable, skipping it: %s", journal_id, e)
        self._worker = asyncio.create_task(self._work(), name="remediator-engine")
        self.started = True

    async def stop(self) -> None:
        """Finish what is queued (it is durable anyway), then stop."""
        if self._worker is None:
            return
        await self._queue.join()
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        self._worker = None

    def submit(self, journal_id: int, notification: Notification) -> None:
        self._queue.put_nowait((journal_id, notification))
        self.metrics.journal_backlog.set(self._queue.qsize())

    async def idle(self) -> None:
        """Wait until everything submitted so far has been processed (for tests and tools)."""
        await self._queue.join()

    async def _load(self) -> None:
        self.open = {(i.rule, i.key): i for i in await self.store.load_open_incidents()}
        for rule in self.config.rules:
            count = sum(1 for (name, _) in self.open if name == rule.name)
            self.metrics.incidents_open.labels(rule.name).set(count)

    async def _work(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH_LIMIT and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._process_until_committed(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()
                self.metrics.journal_backlog.set(self._queue.qsize())

    async def _process_until_committed(self, batch: list[tuple[int, Notification]]) -> None:
        while True:
            try:
                await self.process(batch)
                return
            except StoreError as e:
                log.error(
                    "store unavailable, retrying batch of %d in %gs: %s", len(batch), RETRY_DELAY, e
                )
                await asyncio.sleep(RETRY_DELAY)
                await self._load()

    # -- one batch -----------------------------------------------------------------------------

    async def process(self, notifications: Sequence[tuple[int, Notification]]) -> None:
        now = self.clock.now()
        batch = _Batch(Changes(at=now))
        for journal_id, notification in notifications:
            batch.changes.journal_ids.append(journal_id)
            await self._notification(notification, batch, now)
        applied = await self.store.apply(batch.changes)
        self._commit_cache(batch, applied.incident_ids)
        self.executor.submit(applied.claims)
        if applied.audit:
            await self.notifier.publish(applied.audit)

    async def _notification(self, notification: Notification, batch: _Batch, now: float) -> None:
        matched: list[tuple[Rule, Alert]] = []
        for alert in notification.alerts:
            self.metrics.alerts.labels(alert.status).inc()
            rules = self.index.match(alert.labels)
            if not rules:
                self.metrics.alerts_unmatched.inc()
            matched.extend((rule, alert) for rule in rules)
        resolved = await self._known_resolved(matched, batch)
        for rule, alert in matched:
            if alert.firing:
                if (rule.name, *alert.instance) in resolved:
                    self.metrics.alerts_stale.inc()
                    continue
                self._firing(rule, alert, batch, now)
            else:
                await self._resolved(rule, alert, batch, now)

    async def _known_resolved(
        self, matched: list[tuple[Rule, Alert]], batch: _Batch
    ) -> set[tuple[str, str, float]]:
        """Which firing alerts are instances already resolved: delayed or replayed, stale."""
        unknown = []
        for rule, alert in matched:
            incident = self._current(rule, rule.key_of(alert.labels), batch)
            if alert.firing and (incident is None or alert.instance not in incident.instances):
                unknown.append((rule.name, *alert.instance))
        recent = {key for key in unknown if key in self._recently_resolved}
        rest = [key for key in unknown if key not in recent]
        return recent | await self.store.resolved_instances(rest)

    def _current(self, rule: Rule, key: tuple[str, ...], batch: _Batch) -> Incident | None:
        ref = (rule.name, key)
        if ref in batch.closed:
            return None
        return batch.open.get(ref) or self.open.get(ref)

    def _firing(self, rule: Rule, alert: Alert, batch: _Batch, now: float) -> None:
        key = rule.key_of(alert.labels)
        incident = self._current(rule, key, batch)
        value, problem = _read_value(rule, alert)
        event = Firing(alert.instance, value, problem, now)
        if incident is None:
            transition = open_incident(rule, key, self._placeholder(), event)
        else:
            transition = on_firing(incident, rule, event)
            if transition.incident is incident:
                return  # a repeat of what is known: nothing to decide
        batch.closed.discard((rule.name, key))
        batch.open[(rule.name, key)] = transition.incident
        self._record(rule, alert, transition, batch, now, status="firing")

    async def _resolved(self, rule: Rule, alert: Alert, batch: _Batch, now: float) -> None:
        key = rule.key_of(alert.labels)
        incident = self._current(rule, key, batch)
        if incident is None or alert.instance not in incident.instances:
            return  # never seen firing, or already resolved
        ran = await self.store.ran_actions(incident.id) if incident.id > 0 else set()
        transition = on_resolved(incident, rule, alert.instance, now, ran)
        if transition.incident.open:
            batch.open[(rule.name, key)] = transition.incident
        else:
            batch.open.pop((rule.name, key), None)
            batch.closed.add((rule.name, key))
        self._remember_resolved((rule.name, *alert.instance))
        self._record(rule, alert, transition, batch, now, status="resolved")

    def _record(
        self, rule: Rule, alert: Alert, t: Transition, batch: _Batch, now: float, status: str
    ) -> None:
        incident = t.incident
        batch.changes.incidents.append(
            IncidentWrite(
                incident,
                dict(zip(rule.incident_key, incident.key, strict=True)),
                labels=alert.labels,
                annotations=alert.annotations,
            )
        )
        batch.changes.instances.append(
            InstanceWrite(
                rule.name,
                alert.fingerprint,
                alert.starts_at,
                incident.id,
                status,
                incident.instances.get(alert.instance),
                now,
            )
        )
        for decision in t.decisions:
            self._decide(rule, alert, incident, decision, batch.changes, now)

    def _decide(
        self,
        rule: Rule,
        alert: Alert,
        incident: Incident,
        decision: Decision,
        changes: Changes,
        now: float,
    ) -> None:
        if isinstance(decision, RunTier):
            tier = rule.tiers[decision.tier]
            for name in tier.actions:
                self._claim(rule, alert, incident, tier.name, name, now, changes)
            return
        entry = _describe(rule, incident, decision, now)
        changes.audit.append(entry)
        self.metrics.decisions.labels(rule.name, entry.event).inc()
        if isinstance(decision, Closed):
            for name in decision.actions:
                self._claim(rule, alert, incident, RESOLVED_STEP, name, now, changes)

    def _claim(
        self,
        rule: Rule,
        alert: Alert,
        incident: Incident,
        step: str,
        name: str,
        now: float,
        changes: Changes,
    ) -> None:
        """Claim an action. Its request is built when it starts, once the incident has its id."""
        action = self.config.actions[name]
        context = {
            "labels": dict(alert.labels),
            "annotations": dict(alert.annotations),
            "rule": rule.name,
            "tier": step,
            "value": incident.value,
            "fingerprint": alert.fingerprint,
        }
        changes.claims.append(
            NewClaim(
                incident.id,
                step,
                name,
                action.kind,
                action.target,
                rule.name,
                str(uuid.uuid4()),
                context,
                now,
            )
        )
        changes.audit.append(
            AuditEntry(
                kind="action",
                event="claimed",
                message=f"Claimed {name} ({action.kind} on {action.target})",
                at=now,
                incident_id=incident.id,
                rule=rule.name,
                tier=step,
                action=name,
                actor="remediator",
            )
        )

    def _commit_cache(self, batch: _Batch, ids: Mapping[int, int]) -> None:
        for ref in batch.closed:
            self.open.pop(ref, None)
        for ref, incident in batch.open.items():
            if incident.id in ids:
                incident = _with_id(incident, ids[incident.id])
            self.open[ref] = incident
        for rule in {ref[0] for ref in (*batch.open, *batch.closed)}:
            count = sum(1 for (name, _) in self.open if name == rule)
            self.metrics.incidents_open.labels(rule).set(count)

    def _placeholder(self) -> int:
        self._next_placeholder -= 1
        return self._next_placeholder

    def _remember_resolved(self, key: tuple[str, str, float]) -> None:
        self._recently_resolved[key] = None
        if len(self._recently_resolved) > RECENTLY_RESOLVED:
            self._recently_resolved.popitem(last=False)


def _read_value(rule: Rule, alert: Alert) -> tuple[float | None, str | None]:
    if rule.value is None:
        return None, None
    value = rule.value.read(alert)
    return (None, value) if isinstance(value, str) else (value, None)


def _describe(
    rule: Rule, incident: Incident, decision: Opened | Escalated | NoValue | Closed, now: float
) -> AuditEntry:
    """The audit line for a decision, in plain words."""
    tier_name = rule.tiers[incident.tier].name if incident.tier >= 0 else ""
    key = ", ".join(f"{k}={v}" for k, v in zip(rule.incident_key, incident.key, strict=True))

    def entry(event: str, message: str, detail: dict[str, object]) -> AuditEntry:
        return AuditEntry(
            kind="decision",
            event=event,
            message=message,
            at=now,
            incident_id=incident.id,
            rule=rule.name,
            tier=tier_name,
            actor="alertmanager",
            detail=detail,
        )

    if isinstance(decision, Opened):
        reached = f"tier {tier_name!r}" if decision.tier >= 0 else "no tier"
        value = "" if incident.value is None else f"value {incident.value:g}, "
        return entry(
            "opened",
            f"Incident opened for {key}: {value}{reached}",
            {"key": key, "value": incident.value},
        )
    if isinstance(decision, Escalated):
        before = rule.tiers[decision.from_tier].name if decision.from_tier >= 0 else "none"
        return entry(
            "escalated",
            f"Escalated from {before!r} to {tier_name!r}: {decision.reason}",
            {"from": before, "to": tier_name, "reason": decision.reason},
        )
    if isinstance(decision, NoValue):
        return entry(
            "no_value", f"No value for the ladder: {decision.reason}", {"reason": decision.reason}
        )
    run = ", ".join(decision.actions) or "nothing to undo"
    skipped = "".join(f"; not running {a}: what it undoes never ran" for a in decision.skipped)
    duration = incident.updated_at - incident.opened_at
    return entry(
        "resolved",
        f"Resolved after {duration:.0f}s; on_resolved: {run}{skipped}",
        {
            "run": list(decision.actions),
            "skipped": list(decision.skipped),
            "duration_seconds": duration,
        },
    )


def _with_id(incident: Incident, new_id: int) -> Incident:
    from dataclasses import replace

    return replace(incident, id=new_id)
