"""The path of an alert: journal -> rules -> incidents -> claims -> executor.

Ingest hands the engine each notification after it is durable in the journal; timers hand it
ticks (escalate-after) and the executor failed verifications. One worker consumes these events in
order, in batches: it matches rules, asks incidents.py for decisions, and commits everything a
batch decided (incident changes, alert instances, claims, audit) in one transaction together with
the journal entries' processed marks; a claim whose target is free starts in that same commit
(offers.py), the others after it. A crash at any point replays unprocessed journal entries on
start, and claims make every action run at most once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial

from remediator import wire
from remediator.alerts import Alert, Notification, parse_notification
from remediator.clock import Clock
from remediator.config import Config
from remediator.errors import Fenced, PayloadError, StoreError
from remediator.executor import Executor
from remediator.incidents import (
    Closed,
    Decision,
    Escalated,
    Firing,
    Incident,
    NeedsHuman,
    NoValue,
    Opened,
    RunTier,
    Transition,
    escalation_due,
    on_firing,
    on_resolved,
    on_tick,
    on_verify_failed,
    open_incident,
)
from remediator.metrics import Metrics
from remediator.rules import Rule, RuleIndex
from remediator.severity import rank
from remediator.store.records import (
    RESOLVED_STEP,
    SKIPPED,
    AuditEntry,
    Changes,
    Claim,
    IncidentWrite,
    InstanceWrite,
    NewClaim,
)
from remediator.tasks import cancel_and_wait
from remediator.types import EngineStore, Notifier

log = logging.getLogger(__name__)

BATCH_LIMIT = 256  # notifications per batch, and at most BATCH_ALERTS alerts (or just one)
BATCH_ALERTS = 2_000  # a batch is one commit: a larger one holds the writer longer
BACKLOG_LIMIT = 20_000  # alerts acknowledged and not yet decided; above it ingest answers 503
RECENTLY_RESOLVED = 10_000
SEEN_JOURNAL = 50_000  # journal ids queued or recently decided: never submitted twice
RETRY_DELAY = 1.0
OpenKey = tuple[str, tuple[str, ...]]
InstanceKey = tuple[str, str, float]  # (rule, fingerprint, startsAt)
Matched = list[tuple[Rule, Alert]]


@dataclass(frozen=True, slots=True)
class Received:
    journal_id: int
    notification: Notification


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: escalate-after may be due, and storm summaries."""


@dataclass(frozen=True, slots=True)
class VerifyFailed:
    claim: Claim
    detail: str


Event = Received | Tick | VerifyFailed


@dataclass(frozen=True, slots=True)
class AlertData:
    """What a claim keeps of the alert it acts on."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    fingerprint: str
    generator_url: str = ""
    external_url: str = ""

    @classmethod
    def of(cls, alert: Alert, external_url: str = "") -> AlertData:
        return cls(
            alert.labels, alert.annotations, alert.fingerprint, alert.generator_url, external_url
        )


@dataclass(slots=True)
class _Batch:
    """Decisions of one batch before commit: changes to write, plus the cache as it will be."""

    changes: Changes
    open: dict[OpenKey, Incident] = field(default_factory=dict)  # incidents touched
    closed: set[OpenKey] = field(default_factory=set)
    external_url: str = ""  # the Alertmanager of the notification being processed
    # instances the store was asked about at the start of the batch, and those it had resolved
    looked_up: set[InstanceKey] = field(default_factory=set)
    stored_resolved: set[InstanceKey] = field(default_factory=set)
    ran: dict[int, set[str]] = field(default_factory=dict)  # incident id -> actions that ran
    # incident id -> startsAt of the instances this batch wrote, not yet in the store
    starts: defaultdict[int, list[float]] = field(default_factory=lambda: defaultdict(list))


class Engine:
    def __init__(
        self,
        config: Config,
        store: EngineStore,
        executor: Executor,
        notifier: Notifier,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.store = store
        self.executor = executor
        self.notifier = notifier
        self.metrics = metrics
        self.clock = clock
        self.open: dict[OpenKey, Incident] = {}
        self._open_per_rule: Counter[str] = Counter()  # for the incidents_open gauge
        self._climbing: dict[OpenKey, None] = {}  # a set in the order they opened
        self.storm = Storm(config)
        self._configure(config)
        self._between = asyncio.Lock()  # held while a batch is processed
        self._recently_resolved: OrderedDict[InstanceKey, None] = OrderedDict()
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._seen: OrderedDict[int, None] = OrderedDict()  # journal ids submitted
        self.backlog_alerts = 0  # alerts of the queued notifications
        self._worker: asyncio.Task[None] | None = None
        self._next_placeholder = -1
        self.started = False
        self.wake: Callable[[], None] = lambda: None  # set by the daemon: re-arm the timers
        self.fenced: Callable[[], None] = lambda: None  # set by the daemon: no longer leading

    # -- lifecycle -----------------------------------------------------------------------------

    def _configure(self, config: Config) -> None:
        self.config = config
        self.index = RuleIndex(config.rules)
        # the open incidents whose rule climbs by time: the only ones a tick can move
        self._by_time = {r.name for r in config.rules if any(t.escalate_after for t in r.tiers)}
        self.storm.settings = config.guardrails.storm

    async def start(self) -> None:
        """Adopt renamed rules' records, load open incidents, close those of rules no longer
        configured, replay what was acknowledged but not processed, start working."""
        await self._adopt()
        for journal_id, body in await self.store.unprocessed_journal():
            await self.submit_body(journal_id, body)
        self._worker = asyncio.create_task(self._work(), name="remediator-engine")
        self.started = True

    @asynccontextmanager
    async def between_batches(self) -> AsyncIterator[None]:
        """Hold the engine between two batches: nothing is decided while the caller runs."""
        async with self._between:
            yield

    async def reconfigure(self, config: Config) -> None:
        """Take a new config (call it within between_batches): renamed rules keep their
        incidents, removed rules' incidents are closed."""
        self._configure(config)
        await self._adopt()

    async def _adopt(self) -> None:
        for rule in self.config.rules:
            for old in rule.previous_names:
                entry = await self.store.rename_rule(
                    old, rule.name, partial(_renamed, old, rule.name, self.clock.now())
                )
                if entry is not None:
                    log.info("%s", entry.message)
                    await self.notifier.publish([entry])
        await self._load()
        for ref, incident in list(self.open.items()):
            if self.index.get(ref[0]) is None:
                reason = f"rule {ref[0]!r} is no longer in the configuration"
                await self._close_now(incident, reason, "remediator")

    async def close(self, incident_id: int, reason: str, by: str) -> Incident | None:
        """Close an open incident by hand, running nothing; None if no open incident has that
        id. Its alert instances count as resolved, so a repeat of them reopens nothing."""
        async with self._between:
            incident = next((i for i in self.open.values() if i.id == incident_id), None)
            if incident is None:
                return None
            return await self._close_now(incident, reason, by)

    async def _close_now(self, incident: Incident, reason: str, by: str) -> Incident:
        now = self.clock.now()
        closed = replace(incident, status="resolved", resolved_at=now, updated_at=now)
        changes = Changes(at=now)
        changes.incidents.append(IncidentWrite(closed, {}))
        for fingerprint, starts_at in incident.instances:
            changes.instances.append(
                InstanceWrite(
                    incident.rule, fingerprint, starts_at, incident.id, "resolved", None, now
                )
            )
            self._remember_resolved((incident.rule, fingerprint, starts_at))
        changes.audit.append(_closed_entry(closed, reason, by, now))
        applied = await self.store.apply(changes)
        log.info(
            "incident %d closed by %s: %s",
            closed.id,
            by,
            reason,
            extra={"incident_id": closed.id, "rule": closed.rule},
        )
        self._closed((incident.rule, incident.key))
        self.metrics.incidents_open.labels(incident.rule).set(self._open_per_rule[incident.rule])
        self.metrics.decisions.labels(incident.rule, "closed").inc()
        self._count_cancelled(applied.audit)
        await self.notifier.publish(applied.audit)
        self.wake()
        return closed

    async def submit_body(self, journal_id: int, body: str) -> None:
        """A journal entry as stored: submitted, or quarantined if it cannot be read."""
        try:
            self.submit(journal_id, parse_notification(wire.decode(body)))
        except PayloadError as e:  # only rows written before ingest read as strictly
            await self._quarantine(journal_id, f"unreadable: {e}")

    def knows(self, journal_id: int) -> bool:
        """The entry is queued, or was decided lately: submitting it again does nothing."""
        return journal_id in self._seen

    async def abandon(self) -> None:
        """Stop at once, dropping what is queued (a deposed leader: the entries stay
        unprocessed in the journal, for the next leader)."""
        if self._worker is not None:
            await cancel_and_wait(self._worker)
            self._worker = None
        while not self._queue.empty():  # whoever waits for idle() stops waiting
            self._queue.get_nowait()
            self._queue.task_done()
        self._seen.clear()
        self.backlog_alerts = 0
        self.metrics.journal_backlog.set(0)
        self.started = False

    async def stop(self) -> None:
        """Finish what is queued (it is durable anyway), then stop."""
        if self._worker is None:
            return
        await self._queue.join()
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        self._worker = None

    def submit(self, journal_id: int, notification: Notification) -> None:
        if journal_id in self._seen:
            return
        self._seen[journal_id] = None
        if len(self._seen) > SEEN_JOURNAL:
            self._seen.popitem(last=False)
        self._put(Received(journal_id, notification))

    def tick(self) -> None:
        self._put(Tick())

    def verification_failed(self, claim: Claim, detail: str) -> None:
        self._put(VerifyFailed(claim, detail))

    def _put(self, event: Event) -> None:
        self._queue.put_nowait(event)
        self.backlog_alerts += _alerts(event)
        self.metrics.journal_backlog.set(self._queue.qsize())

    @property
    def overloaded(self) -> bool:
        """Too many acknowledged alerts wait for a decision: ingest should ask Alertmanager to
        retry later rather than let the backlog (and its memory) grow without bound."""
        return self.backlog_alerts > BACKLOG_LIMIT

    async def idle(self) -> None:
        """Wait until everything submitted so far has been processed (for tests and tools)."""
        await self._queue.join()

    def acked(self, incident_id: int) -> None:
        """A human acknowledged the incident: time no longer escalates it."""
        for ref, incident in self.open.items():
            if incident.id == incident_id:
                self.open[ref] = replace(incident, acked=True)

    def next_escalation(self) -> float | None:
        """The earliest escalate-after due among open incidents."""
        dues = (
            escalation_due(self.open[ref], rule)
            for ref in self._climbing
            if (rule := self.index.get(ref[0])) is not None
        )
        return min((d for d in dues if d is not None), default=None)

    async def _load(self) -> None:
        self.open, self._open_per_rule, self._climbing = {}, Counter(), {}
        for incident in await self.store.load_open_incidents():
            self._opened((incident.rule, incident.key), incident)
        for rule in self.config.rules:
            self.metrics.incidents_open.labels(rule.name).set(self._open_per_rule[rule.name])

    def _opened(self, ref: OpenKey, incident: Incident) -> None:
        """Cache an open incident (new, or a newer state of one)."""
        if ref not in self.open:
            self._open_per_rule[ref[0]] += 1
            if ref[0] in self._by_time:
                self._climbing[ref] = None
        self.open[ref] = incident

    def _closed(self, ref: OpenKey) -> None:
        if self.open.pop(ref, None) is not None:
            self._open_per_rule[ref[0]] -= 1
            self._climbing.pop(ref, None)

    async def _work(self) -> None:
        carry: Event | None = None
        while True:
            batch, carry = await self._next_batch(carry)
            try:
                async with self._between:
                    await self._process_until_committed(batch)
            except Exception as e:
                async with self._between:
                    await self._isolate(batch, e)
            finally:
                for _ in batch:
                    self._queue.task_done()
                self.backlog_alerts -= sum(_alerts(e) for e in batch)
                self.metrics.journal_backlog.set(self._queue.qsize())

    async def _isolate(self, batch: list[Event], error: Exception) -> None:
        """A batch failed for a reason other than the store's availability: decide its events
        one by one, so that one poisoned notification cannot take its neighbours with it. An
        event that fails alone is quarantined (a notification) or logged (a tick, which the
        next one repeats)."""
        if len(batch) == 1:
            await self._failed(batch[0], error)
            return
        log.warning("a batch of %d events failed (%s); deciding them one by one", len(batch), error)
        for event in batch:
            try:
                await self._process_until_committed([event])
            except Exception as e:
                await self._failed(event, e)

    async def _failed(self, event: Event, error: Exception) -> None:
        if isinstance(event, Received):
            log.error("journal entry %d cannot be decided", event.journal_id, exc_info=error)
            await self._quarantine(event.journal_id, f"{type(error).__name__}: {error}")
        else:
            log.error("the engine could not process %s", type(event).__name__, exc_info=error)

    async def _quarantine(self, journal_id: int, reason: str) -> None:
        """Set an undecidable notification aside: marked processed, its reason kept, audited,
        counted and logged, naming its journal id."""
        log.error("journal entry %d quarantined: %s", journal_id, reason)
        self.metrics.quarantined.inc()
        audit = AuditEntry(
            kind="audit",
            event="journal_quarantined",
            message=f"journal entry {journal_id} could not be decided and was set aside: {reason}",
            at=self.clock.now(),
            detail={"journal_id": journal_id, "reason": reason},
        )
        try:
            await self.store.quarantine_journal(journal_id, reason, audit)
        except Exception as e:  # the store is down too: replay retries the entry at start
            log.error("journal entry %d could not be marked quarantined: %s", journal_id, e)

    async def _next_batch(self, first: Event | None) -> tuple[list[Event], Event | None]:
        """Events in arrival order, at most BATCH_LIMIT of them with BATCH_ALERTS alerts (a
        larger notification alone); also the first event that did not fit, for the next."""
        batch = [first if first is not None else await self._queue.get()]
        alerts = _alerts(batch[0])
        while len(batch) < BATCH_LIMIT and not self._queue.empty():
            event = self._queue.get_nowait()
            if alerts + _alerts(event) > BATCH_ALERTS:
                return batch, event
            batch.append(event)
            alerts += _alerts(event)
        return batch, None

    async def _process_until_committed(self, batch: list[Event]) -> None:
        """Process the batch, again and again while the store is unavailable: its events are
        acknowledged, so they wait for the store rather than fail (the cache is reloaded from
        the store before each retry: the failed commit may or may not have happened)."""
        stale = False
        while True:
            try:
                if stale:
                    await self._load()
                await self.process(batch)
                return
            except Fenced as e:  # deposed: the daemon stops this worker; never quarantined
                log.error("no longer the leader, not deciding: %s", e)
                self.fenced()
                await asyncio.sleep(RETRY_DELAY)
                continue
            except StoreError as e:
                log.error(
                    "store unavailable, retrying batch of %d in %gs: %s", len(batch), RETRY_DELAY, e
                )
                stale = True
                await asyncio.sleep(RETRY_DELAY)

    # -- one batch -----------------------------------------------------------------------------

    async def process(self, events: Sequence[Event]) -> None:
        now = self.clock.now()
        batch = _Batch(Changes(at=now))
        matches = [self._match(e.notification) if isinstance(e, Received) else [] for e in events]
        await self._look_up(matches, batch)
        for event, matched in zip(events, matches, strict=True):
            if isinstance(event, Received):
                batch.changes.journal_ids.append(event.journal_id)
                batch.external_url = event.notification.external_url
                await self._notification(matched, batch, now)
            elif isinstance(event, Tick):
                await self._tick(batch, now)
            else:
                await self._verify_failed(event, batch, now)
        # the claims it makes whose turn is free here are started in its commit (offers.py)
        offering = self.store.starts_offered and batch.changes.claims
        offer = self.executor.offer(batch.changes.claims) if offering else None
        start_if = None if offer is None else offer.start_if
        try:
            applied = await self.store.apply(batch.changes, start_if)
        except BaseException:
            self.executor.withdraw(offer)
            raise
        self._commit_cache(batch, applied.incident_ids)
        self.executor.admit(applied, offer)
        self._count_cancelled(applied.audit)
        if applied.audit:
            await self.notifier.publish(applied.audit)
        if batch.open or batch.closed:  # only an incident's change moves an escalation or a storm
            self.wake()  # (holds, approvals and verifications wake from the executor and control)

    def _count_cancelled(self, audit: Sequence[AuditEntry]) -> None:
        """Approvals the store cancelled because their incident resolved: no longer pending,
        and their actions skipped."""
        for entry in audit:
            if entry.event == "approval_cancelled":
                self.metrics.approvals_pending.dec()
                self.metrics.actions.labels(self.config.action_kind(entry.action), SKIPPED).inc()

    def _match(self, notification: Notification) -> Matched:
        matched: Matched = []
        for alert in notification.alerts:
            self.metrics.alerts.labels(alert.status).inc()
            rules = self.index.match(alert.labels)
            if not rules:
                self.metrics.alerts_unmatched.inc()
            matched.extend((rule, alert) for rule in rules)
        return matched

    async def _look_up(self, matches: list[Matched], batch: _Batch) -> None:
        """Ask the store once per batch, not once per notification: which of the firing alert
        instances the cache does not know are already resolved (the store's instances do not
        change under a batch: its writes are committed at the end), and which actions ran for
        the incidents that resolving alerts may close."""
        resolving: set[int] = set()
        for rule, alert in itertools.chain.from_iterable(matches):
            incident = self.open.get((rule.name, rule.key_of(alert.labels)))
            key = (rule.name, *alert.instance)
            new = incident is None or alert.instance not in incident.instances
            if alert.firing and new and key not in self._recently_resolved:
                batch.looked_up.add(key)
            elif not alert.firing and not new and incident is not None:
                resolving.add(incident.id)
        if batch.looked_up:
            batch.stored_resolved = await self.store.resolved_instances(list(batch.looked_up))
        if resolving:
            batch.ran = await self.store.ran_actions_of(sorted(resolving))

    async def _notification(self, matched: Matched, batch: _Batch, now: float) -> None:
        resolved = await self._known_resolved(matched, batch)
        for rule, alert in matched:
            if alert.firing:
                if (rule.name, *alert.instance) in resolved:
                    self.metrics.alerts_stale.inc()
                    continue
                await self._firing(rule, alert, batch, now)
            else:
                await self._resolved(rule, alert, batch, now)

    async def _known_resolved(self, matched: Matched, batch: _Batch) -> set[InstanceKey]:
        """Which firing alerts are instances already resolved: delayed or replayed, stale."""
        unknown = []
        for rule, alert in matched:
            incident = self._current(rule, rule.key_of(alert.labels), batch)
            if alert.firing and (incident is None or alert.instance not in incident.instances):
                unknown.append((rule.name, *alert.instance))
        recent = {key for key in unknown if key in self._recently_resolved}
        stored = {key for key in unknown if key in batch.stored_resolved}
        # what the batch's look-up could not foresee (an incident closed earlier in the batch)
        rest = [key for key in unknown if key not in recent and key not in batch.looked_up]
        return recent | stored | await self.store.resolved_instances(rest)

    def _current(self, rule: Rule, key: tuple[str, ...], batch: _Batch) -> Incident | None:
        ref = (rule.name, key)
        if ref in batch.closed:
            return None
        return batch.open.get(ref) or self.open.get(ref)

    async def _firing(self, rule: Rule, alert: Alert, batch: _Batch, now: float) -> None:
        key = rule.key_of(alert.labels)
        incident = self._current(rule, key, batch)
        value, problem = _read_value(rule, alert)
        new_instance = incident is None or alert.instance not in incident.instances
        starts = await self._starts(rule, key, incident, alert, batch, now) if new_instance else ()
        event = Firing(alert.instance, value, problem, now, starts)
        if incident is None:
            transition = open_incident(rule, key, self._placeholder(), event)
        else:
            transition = on_firing(incident, rule, event)
            if transition.incident is incident:
                return  # a repeat of what is known: nothing to decide
        transition, keep = await self._ranked(transition, incident, alert)
        batch.closed.discard((rule.name, key))
        batch.open[(rule.name, key)] = transition.incident
        data = AlertData.of(alert, batch.external_url)
        await self._record(rule, data, transition, batch, now, keep_labels=keep)
        self._instance(rule, alert, transition.incident, "firing", batch, now)

    async def _ranked(
        self, t: Transition, before: Incident | None, alert: Alert
    ) -> tuple[Transition, bool]:
        """The incident's severity is the highest of its alerts while it is open: a milder alert
        neither lowers it nor replaces the labels and annotations shown (True: keep them)."""
        own = alert.labels.get(self.config.slack.severity_label, "")
        shown = None if before is None else await self._severity(before)
        keep = shown is not None and rank(own) > rank(shown)
        severity = shown if keep and shown is not None else own
        return replace(t, incident=replace(t.incident, severity=severity)), keep

    async def _severity(self, incident: Incident) -> str:
        """The severity shown for an open incident: cached, or read once from its labels."""
        if incident.severity is not None:
            return incident.severity
        labels, _ = await self.store.incident_alert(incident.id)
        return labels.get(self.config.slack.severity_label, "")

    async def _starts(
        self,
        rule: Rule,
        key: tuple[str, ...],
        incident: Incident | None,
        alert: Alert,
        batch: _Batch,
        now: float,
    ) -> tuple[float, ...]:
        """startsAt of this key's firings within the rule's repeats window, this one included:
        those committed, and those this batch has seen of the same incident (one Alertmanager
        group can carry several)."""
        window = rule.repeats_window
        if not window:
            return ()
        since = now - window
        known = await self.store.recent_starts(rule.name, key, since)
        pending = [] if incident is None else batch.starts.get(incident.id, [])
        return tuple(sorted({*known, *(t for t in pending if t >= since), alert.starts_at}))

    async def _resolved(self, rule: Rule, alert: Alert, batch: _Batch, now: float) -> None:
        key = rule.key_of(alert.labels)
        incident = self._current(rule, key, batch)
        if incident is None or alert.instance not in incident.instances:
            return  # never seen firing, or already resolved
        if incident.id < 0:
            ran: set[str] = set()  # opened in this batch: nothing ran yet
        elif incident.id in batch.ran:
            ran = batch.ran[incident.id]
        else:
            ran = await self.store.ran_actions(incident.id)
        transition = on_resolved(incident, rule, alert.instance, now, ran)
        if transition.incident.open:
            batch.open[(rule.name, key)] = transition.incident
        else:
            batch.open.pop((rule.name, key), None)
            batch.closed.add((rule.name, key))
        self._remember_resolved((rule.name, *alert.instance))
        # what is shown stays the most severe alert's, through the resolution
        data = AlertData.of(alert, batch.external_url)
        await self._record(rule, data, transition, batch, now, keep_labels=True)
        self._instance(rule, alert, transition.incident, "resolved", batch, now)

    async def _tick(self, batch: _Batch, now: float) -> None:
        for ref in list(self._climbing):
            current = batch.open.get(ref, self.open[ref])
            rule = self.index.get(ref[0])
            if rule is None or ref in batch.closed:
                continue
            transition = on_tick(current, rule, now)
            if transition.decisions and await self._acked_elsewhere(ref, current):
                continue
            if transition.decisions:
                batch.open[ref] = transition.incident
                alert = await self._alert_of(current)
                await self._record(rule, alert, transition, batch, now, keep_labels=True)
        batch.changes.audit.extend(self.storm.tick(now))

    async def _acked_elsewhere(self, ref: OpenKey, incident: Incident) -> bool:
        """Before time escalates it: was the incident acknowledged through another replica (its
        cache here does not know)? Read once per due escalation."""
        record = await self.store.incident(incident.id)
        if record is None or record.get("acked_by") is None:
            return False
        self.open[ref] = replace(incident, acked=True)
        return True

    async def _verify_failed(self, event: VerifyFailed, batch: _Batch, now: float) -> None:
        claim = event.claim
        found = next(((ref, i) for ref, i in self.open.items() if i.id == claim.incident_id), None)
        rule = self.index.get(claim.rule)
        if found is None or rule is None:
            return  # the incident resolved meanwhile
        ref, incident = found
        current = batch.open.get(ref, incident)
        transition = on_verify_failed(current, rule, claim.step, event.detail, now)
        if transition.decisions:
            batch.open[ref] = transition.incident
            alert = await self._alert_of(current)
            await self._record(rule, alert, transition, batch, now, keep_labels=True)

    async def _alert_of(self, incident: Incident) -> AlertData:
        labels, annotations = await self.store.incident_alert(incident.id)
        fingerprint = next(iter(incident.instances), ("", 0.0))[0]
        return AlertData(labels, annotations, fingerprint)

    # -- recording -----------------------------------------------------------------------------

    async def _record(
        self,
        rule: Rule,
        alert: AlertData,
        t: Transition,
        batch: _Batch,
        now: float,
        keep_labels: bool = False,
    ) -> None:
        """Write the incident and its decisions; `keep_labels`: the stored labels and
        annotations stay (a milder alert's, or a resolving one's, do not replace them)."""
        incident = t.incident
        batch.changes.incidents.append(
            IncidentWrite(
                incident,
                dict(zip(rule.incident_key, incident.key, strict=True)),
                labels=None if keep_labels else alert.labels,
                annotations=None if keep_labels else alert.annotations,
                generator_url=alert.generator_url,
                external_url=alert.external_url,
            )
        )
        done = await self._done_once(rule, incident, t.decisions, batch.changes)
        for decision in t.decisions:
            self._decide(rule, alert, incident, decision, batch.changes, now, done)

    async def _done_once(
        self, rule: Rule, incident: Incident, decisions: Sequence[Decision], changes: Changes
    ) -> set[str]:
        """The once_per_incident actions of the tiers to run that already took, or may still
        take, effect for the incident: claimed earlier in this batch, or in the store."""
        once = {
            name
            for d in decisions
            if isinstance(d, RunTier)
            for name in rule.tiers[d.tier].actions
            if self.config.policy(name).once_per_incident
        }
        if not once:
            return set()
        done = {c.action for c in changes.claims if c.incident_id == incident.id}
        if incident.id > 0:
            done |= await self.store.done_actions(incident.id)
        return done & once

    def _instance(
        self,
        rule: Rule,
        alert: Alert,
        incident: Incident,
        status: str,
        batch: _Batch,
        now: float,
    ) -> None:
        batch.starts[incident.id].append(alert.starts_at)
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

    def _decide(
        self,
        rule: Rule,
        alert: AlertData,
        incident: Incident,
        decision: Decision,
        changes: Changes,
        now: float,
        done: set[str],
    ) -> None:
        if isinstance(decision, RunTier):
            tier = rule.tiers[decision.tier]
            for name in tier.actions:
                if name in done:
                    changes.audit.append(not_repeated(rule, incident, tier.name, name, now))
                else:
                    self._claim(rule, alert, incident, tier.name, name, now, changes)
            return
        entry = describe(rule, incident, decision, now)
        if isinstance(decision, Opened):
            changes.audit.extend(self.storm.opened(now))
        if self.storm.active:
            entry = replace(entry, detail={**entry.detail, "storm": True})
        changes.audit.append(entry)
        self.metrics.decisions.labels(rule.name, entry.event).inc()
        if isinstance(decision, Escalated):
            self.metrics.escalations.labels(rule.name, decision.cause).inc()
        if isinstance(decision, Closed):
            for name in decision.actions:
                self._claim(rule, alert, incident, RESOLVED_STEP, name, now, changes)

    def _claim(
        self,
        rule: Rule,
        alert: AlertData,
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
        if self.storm.active:
            context["storm"] = True  # its routine lines are told by the storm's summary
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
                detail={"storm": True} if self.storm.active else {},
            )
        )

    def _commit_cache(self, batch: _Batch, ids: Mapping[int, int]) -> None:
        for ref in batch.closed:
            self._closed(ref)
        for ref, incident in batch.open.items():
            if incident.id in ids:
                incident = replace(incident, id=ids[incident.id])
            self._opened(ref, incident)
        for rule in {ref[0] for ref in (*batch.open, *batch.closed)}:
            self.metrics.incidents_open.labels(rule).set(self._open_per_rule[rule])

    def _placeholder(self) -> int:
        self._next_placeholder -= 1
        return self._next_placeholder

    def _remember_resolved(self, key: InstanceKey) -> None:
        self._recently_resolved[key] = None
        if len(self._recently_resolved) > RECENTLY_RESOLVED:
            self._recently_resolved.popitem(last=False)


class Storm:
    """More than `storm.incidents` incidents opening within `storm.within`: a storm. Actions go on
    within their budgets; decisions are marked so that people get one summary every
    `summary_every` instead of a message per incident."""

    def __init__(self, config: Config) -> None:
        self.settings = config.guardrails.storm
        self.metrics_gauge: Callable[[int], None] = lambda value: None
        self._opened: deque[float] = deque()
        self.active = False
        self._summarised_at = 0.0
        self._count_since_summary = 0

    def opened(self, now: float) -> list[AuditEntry]:
        self._opened.append(now)
        self._count_since_summary += 1
        self._trim(now)
        if self.active or len(self._opened) <= self.settings.incidents:
            return []
        self.active, self._summarised_at, self._count_since_summary = True, now, 0
        self.metrics_gauge(1)
        return [
            self._summary(
                "storm_started",
                f"Alert storm: {len(self._opened)} incidents "
                f"opened in the last {self.settings.within:g}s; acting within "
                "budgets, summarising instead of posting each one",
                now,
            )
        ]

    def tick(self, now: float) -> list[AuditEntry]:
        if not self.active:
            return []
        self._trim(now)
        if len(self._opened) <= self.settings.incidents:
            self.active = False
            self.metrics_gauge(0)
            return [
                self._summary(
                    "storm_ended",
                    f"Alert storm over: {self._count_since_summary} "
                    "more incidents opened since the last summary",
                    now,
                )
            ]
        if now - self._summarised_at < self.settings.summary_every:
            return []
        count, self._count_since_summary, self._summarised_at = self._count_since_summary, 0, now
        return [
            self._summary(
                "storm_summary",
                f"Alert storm continues: {count} incidents opened since the last summary",
                now,
            )
        ]

    def next_due(self) -> float | None:
        """The next summary, or the moment enough openings leave the window to end the storm:
        the surplus-th oldest one's expiry (0.0, due at once, if the storm is already over)."""
        if not self.active:
            return None
        surplus = len(self._opened) - self.settings.incidents
        ends = self._opened[surplus - 1] + self.settings.within if surplus > 0 else 0.0
        return min(self._summarised_at + self.settings.summary_every, ends)

    def _trim(self, now: float) -> None:
        """An opening `within` seconds old has left the window, so the moment next_due names is
        the moment tick sees the storm end (no timer stays due after it ran)."""
        while self._opened and now - self._opened[0] >= self.settings.within:
            self._opened.popleft()

    @staticmethod
    def _summary(event: str, message: str, now: float) -> AuditEntry:
        return AuditEntry(kind="summary", event=event, message=message, at=now)


def _renamed(old: str, new: str, now: float, moved: int) -> AuditEntry:
    return AuditEntry(
        kind="control",
        event="renamed",
        message=f"Rule {old!r} is now {new!r}: {moved} incident(s), their actions, cooldowns, "
        "approvals and mutes follow it",
        at=now,
        rule=new,
        actor="remediator",
        detail={"from": old, "to": new, "incidents": moved},
    )


def _closed_entry(incident: Incident, reason: str, by: str, now: float) -> AuditEntry:
    return AuditEntry(
        kind="decision",
        event="closed",
        message=f"Incident {incident.id} closed by {by}: {reason}; nothing was run",
        at=now,
        incident_id=incident.id,
        rule=incident.rule,
        actor=by,
        detail={"reason": reason},
    )


def _alerts(event: Event) -> int:
    return len(event.notification.alerts) if isinstance(event, Received) else 0


def _read_value(rule: Rule, alert: Alert) -> tuple[float | None, str | None]:
    if rule.value is None:
        return None, None
    value = rule.value.read(alert)
    return (None, value) if isinstance(value, str) else (value, None)


def not_repeated(rule: Rule, incident: Incident, tier: str, action: str, now: float) -> AuditEntry:
    """The audit line for a once_per_incident action a higher tier lists again."""
    return AuditEntry(
        kind="action",
        event="not_repeated",
        message=f"{action}: not repeated at tier {tier!r}: it runs once per incident and "
        "already took effect",
        at=now,
        incident_id=incident.id,
        rule=rule.name,
        tier=tier,
        action=action,
    )


def describe(
    rule: Rule,
    incident: Incident,
    decision: Opened | Escalated | NoValue | NeedsHuman | Closed,
    now: float,
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
    if isinstance(decision, NeedsHuman):
        return entry(
            "needs_human", f"A human is needed: {decision.reason}", {"reason": decision.reason}
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
