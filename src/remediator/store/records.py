"""The rows the store keeps, as immutable values, and the change set the engine commits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from remediator.incidents import Incident

# Claim states. `claimed` has not started; `running` started and may have reached the target.
# `held` waits for a maintenance window to end, `awaiting_approval` for a human.
CLAIMED, RUNNING, HELD, AWAITING_APPROVAL = "claimed", "running", "held", "awaiting_approval"
SUCCEEDED, FAILED, INTERRUPTED, SKIPPED = "succeeded", "failed", "interrupted", "skipped"
REFUSED, DRY_RUN, PRECONDITION_FAILED = "refused", "dry_run", "precondition_failed"
FINISHED = (SUCCEEDED, FAILED, INTERRUPTED, SKIPPED, REFUSED, DRY_RUN, PRECONDITION_FAILED)
STARTED = (RUNNING, SUCCEEDED, FAILED, INTERRUPTED)  # what counts against budgets
# Seconds a running claim's lease lasts; its holder renews it every third of that (leases.py).
CLAIM_LEASE = 15.0
# Verification of a succeeded claim.
VERIFY_PENDING, VERIFY_PASSED, VERIFY_FAILED = "pending", "passed", "failed"
# The steps of claims that do not fire for an alert: the undo when an incident resolves, and
# what a person asked for. They may run after their incident resolved; every other step never does.
RESOLVED_STEP, MANUAL_STEP = "on_resolved", "manual"
OUTLIVE_RESOLUTION = (RESOLVED_STEP, MANUAL_STEP)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit trail: a decision, an action's outcome, a refusal."""

    kind: str
    event: str
    message: str
    at: float
    incident_id: int | None = None
    rule: str = ""
    tier: str = ""
    action: str = ""
    actor: str = "remediator"
    detail: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None


@dataclass(frozen=True, slots=True)
class NewClaim:
    incident_id: int
    step: str
    action: str
    kind: str
    target: str
    rule: str
    idempotency_key: str
    context: Mapping[str, Any]  # the alert data the request is built from when it starts
    at: float


@dataclass(frozen=True, slots=True)
class Claim:
    id: int
    incident_id: int
    step: str
    action: str
    kind: str
    target: str
    rule: str
    idempotency_key: str
    context: Mapping[str, Any]
    request: Mapping[str, Any] | None  # built at start; None until then
    status: str
    detail: str
    attempts: int
    claimed_at: float
    started_at: float | None
    finished_at: float | None
    hold_until: float | None = None
    verify_status: str | None = None
    verify_detail: str = ""
    verify_next_at: float | None = None
    verify_deadline: float | None = None
    sent_at: float | None = None  # when its request could first have left; None while checking
    interruptions: int = 0  # how often it was run again after an interruption
    lease_until: float | None = None  # running: its holder renews this while the action runs
    lease_renewed_at: float | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    claim_id: int
    attempt: int
    started_at: float
    finished_at: float
    ok: bool
    detail: str
    status_code: int | None = None
    exit_code: int | None = None
    output: str = ""
    target_fault: bool = True  # counts towards the circuit breaker (AttemptResult.sick_target)


@dataclass(frozen=True, slots=True)
class IncidentWrite:
    """An incident to insert (negative id: a placeholder the store replaces) or update."""

    incident: Incident
    key_labels: Mapping[str, str]
    labels: Mapping[str, str] | None = None  # None: keep what is stored
    annotations: Mapping[str, str] | None = None
    generator_url: str | None = None  # the alert's link into Prometheus
    external_url: str | None = None  # the Alertmanager that sent it


@dataclass(frozen=True, slots=True)
class InstanceWrite:
    rule: str
    fingerprint: str
    starts_at: float
    incident_id: int
    status: str
    value: float | None
    at: float


@dataclass(slots=True)
class Changes:
    """Everything one batch of notifications changed, committed in one transaction with the
    journal entries it came from, so a crash replays the batch or none of it."""

    at: float = 0.0  # when the batch was processed
    journal_ids: list[int] = field(default_factory=list)
    incidents: list[IncidentWrite] = field(default_factory=list)
    instances: list[InstanceWrite] = field(default_factory=list)
    claims: list[NewClaim] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.journal_ids or self.incidents or self.instances or self.claims or self.audit
        )


@dataclass(frozen=True, slots=True)
class Applied:
    incident_ids: dict[int, int]  # placeholder id -> assigned id
    claims: list[Claim]  # the claims this commit won; a claim already held is not among them
    audit: list[AuditEntry]  # with ids and real incident ids
    # the claims started in this commit (apply's offer), each with the request it started with
    started: dict[int, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MuteRow:
    id: int
    rule: str | None
    target: str | None
    matchers: str | None
    reason: str
    created_by: str
    created_at: float
    until: float
    ended_at: float | None = None
    ended_by: str | None = None


@dataclass(frozen=True, slots=True)
class Approval:
    id: int
    claim_id: int
    incident_id: int
    rule: str
    action: str
    target: str
    request: Mapping[str, Any]
    requested_at: float
    expires_at: float
    status: str  # pending | approved | denied | expired | cancelled (its incident resolved)
    decided_by: str | None = None
    decided_at: float | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Needed:
    """Which of a TargetHistory's facts a claim is judged on (guardrails.needed says, from its
    policy): a fact not needed is not read, and left empty (None, []). Its incident's status,
    whether its target is busy and the active mutes are always read."""

    cooldown: bool = True  # last_other_start
    budgets: bool = True  # started_global, started_action
    breaker: bool = True  # failures
    approval: bool = True  # approval


EVERY_FACT = Needed()


@dataclass(frozen=True, slots=True)
class TargetHistory:
    """What the guardrails need to know about one claim's rule, action and target."""

    last_other_start: float | None  # same rule and target, another incident
    started_global: list[float]  # start times of every action since `since`
    started_action: list[float]  # start times of this action since `since`
    target_busy: bool  # another claim on the target is running
    failures: list[float]  # the target's failures since its last success or reset
    approval: Approval | None
    incident_status: str | None = None  # open, resolved; None if the incident is unknown


@dataclass(frozen=True, slots=True)
class Start:
    """An action that started: what cooldowns and budgets count."""

    rule: str
    action: str
    target: str
    key: tuple[str, ...]  # its incident's key values, as the cooldown compares them
    key_labels: dict[str, str]
    at: float


@dataclass(frozen=True, slots=True)
class GuardrailState:
    """What the guardrails that read the store see: the starts since a time, oldest first,
    and the targets an action is running on (one at a time)."""

    starts: list[Start]
    busy: list[str]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A Slack message to deliver. `thread` orders delivery (incident:<id>, channel:<c>);
    `ref` names a posted message so later updates and replies can find it."""

    thread: str
    channel: str
    method: str  # post | reply | update
    payload: Mapping[str, Any]
    ref: str | None = None
    parent: str | None = None
    audit_id: int | None = None


@dataclass(frozen=True, slots=True)
class Delivered:
    """A message's delivery as recorded: sent (with (ref, channel, ts) when later updates and
    replies need to find it) or failed."""

    row_id: int
    status: str  # sent | failed
    at: float
    error: str = ""
    sent: tuple[str, str, str] | None = None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    thread: str
    channel: str
    method: str
    ref: str | None
    parent: str | None
    payload: Mapping[str, Any]
    attempts: int
    created_at: float


@dataclass(frozen=True, slots=True)
class Page:
    """A page of newest-first results; pass `next_before` back as `before` for the next one."""

    items: list[dict[str, Any]]
    next_before: int | None


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """An incident as stored, for people (the API, Slack, the CLI)."""

    id: int
    rule: str
    key: tuple[str, ...]
    key_labels: Mapping[str, str]  # key label name -> value
    status: str
    tier: int
    value: float | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    opened_at: float
    tier_at: float
    updated_at: float
    resolved_at: float | None
    generator_url: str
    external_url: str
    acked_by: str | None
    acked_at: float | None
