"""The rows the store keeps, as immutable values, and the change set the engine commits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from remediator.incidents import Incident

# Claim states. `claimed` has not started; `running` started and may have reached the target.
CLAIMED, RUNNING = "claimed", "running"
SUCCEEDED, FAILED, INTERRUPTED, SKIPPED = "succeeded", "failed", "interrupted", "skipped"
FINISHED = (SUCCEEDED, FAILED, INTERRUPTED, SKIPPED)


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


@dataclass(frozen=True, slots=True)
class IncidentWrite:
    """An incident to insert (negative id: a placeholder the store replaces) or update."""

    incident: Incident
    key_labels: Mapping[str, str]
    labels: Mapping[str, str] | None = None  # None: keep what is stored
    annotations: Mapping[str, str] | None = None


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


@dataclass(frozen=True, slots=True)
class Page:
    """A page of newest-first results; pass `next_before` back as `before` for the next one."""

    items: list[dict[str, Any]]
    next_before: int | None
