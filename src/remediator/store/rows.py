"""Rows into records, by column name; the column lists every SELECT of a record uses."""

from __future__ import annotations

import json
import sys

from remediator.incidents import Incident
from remediator.store.records import (
    Approval,
    Attempt,
    AuditEntry,
    Claim,
    IncidentRecord,
    MuteRow,
    OutboxRow,
)
from remediator.store.sql import Row

INCIDENT_COLUMNS = (
    "id, rule, incident_key, key_labels, status, tier, value, labels, annotations, opened_at, "
    "tier_at, updated_at, resolved_at, generator_url, external_url, acked_by, acked_at"
)
OPEN_INCIDENT_COLUMNS = (  # what open_incident reads
    "id, rule, incident_key, status, tier, value, opened_at, tier_at, updated_at, resolved_at, "
    "acked_by"
)
CLAIM_COLUMNS = (
    "id, incident_id, step, action, kind, target, rule, idempotency_key, context, request, "
    "status, detail, attempts, claimed_at, started_at, finished_at, hold_until, verify_status, "
    "verify_detail, verify_next_at, verify_deadline, sent_at, interruptions, lease_until, "
    "lease_renewed_at"
)
APPROVAL_COLUMNS = (
    "id, claim_id, incident_id, rule, action, target, request, requested_at, expires_at, "
    "status, decided_by, decided_at, reason"
)
MUTE_COLUMNS = (
    "id, rule, target, matchers, reason, created_by, created_at, until, ended_at, ended_by"
)
AUDIT_COLUMNS = "id, at, kind, event, incident_id, rule, tier, action, actor, message, detail"
ATTEMPT_COLUMNS = (
    "claim_id, attempt, started_at, finished_at, ok, status_code, exit_code, detail, output"
)
OUTBOX_COLUMNS = "id, thread, channel, method, ref, parent, payload, attempts, created_at"


def claim(r: Row) -> Claim:
    request = r["request"]
    return Claim(
        id=r["id"],
        incident_id=r["incident_id"],
        step=r["step"],
        action=r["action"],
        kind=r["kind"],
        target=r["target"],
        rule=r["rule"],
        idempotency_key=r["idempotency_key"],
        context=json.loads(r["context"]),
        request=None if request is None else json.loads(request),
        status=r["status"],
        detail=r["detail"],
        attempts=r["attempts"],
        claimed_at=r["claimed_at"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        hold_until=r["hold_until"],
        verify_status=r["verify_status"],
        verify_detail=r["verify_detail"],
        verify_next_at=r["verify_next_at"],
        verify_deadline=r["verify_deadline"],
        sent_at=r["sent_at"],
        interruptions=r["interruptions"],
        lease_until=r["lease_until"],
        lease_renewed_at=r["lease_renewed_at"],
    )


def attempt(r: Row) -> Attempt:
    return Attempt(
        claim_id=r["claim_id"],
        attempt=r["attempt"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        ok=bool(r["ok"]),
        detail=r["detail"],
        status_code=r["status_code"],
        exit_code=r["exit_code"],
        output=r["output"],
    )


def approval(r: Row) -> Approval:
    return Approval(
        id=r["id"],
        claim_id=r["claim_id"],
        incident_id=r["incident_id"],
        rule=r["rule"],
        action=r["action"],
        target=r["target"],
        request=json.loads(r["request"]),
        requested_at=r["requested_at"],
        expires_at=r["expires_at"],
        status=r["status"],
        decided_by=r["decided_by"],
        decided_at=r["decided_at"],
        reason=r["reason"],
    )


def mute(r: Row) -> MuteRow:
    return MuteRow(
        id=r["id"],
        rule=r["rule"],
        target=r["target"],
        matchers=r["matchers"],
        reason=r["reason"],
        created_by=r["created_by"],
        created_at=r["created_at"],
        until=r["until"],
        ended_at=r["ended_at"],
        ended_by=r["ended_by"],
    )


def audit(r: Row) -> AuditEntry:
    return AuditEntry(
        kind=r["kind"],
        event=r["event"],
        message=r["message"],
        at=r["at"],
        incident_id=r["incident_id"],
        rule=r["rule"],
        tier=r["tier"],
        action=r["action"],
        actor=r["actor"],
        detail=json.loads(r["detail"]),
        id=r["id"],
    )


def outbox(r: Row) -> OutboxRow:
    return OutboxRow(
        id=r["id"],
        thread=r["thread"],
        channel=r["channel"],
        method=r["method"],
        ref=r["ref"],
        parent=r["parent"],
        payload=json.loads(r["payload"]),
        attempts=r["attempts"],
        created_at=r["created_at"],
    )


def incident_record(r: Row) -> IncidentRecord:
    return IncidentRecord(
        id=r["id"],
        rule=r["rule"],
        key=tuple(json.loads(r["incident_key"])),
        key_labels=json.loads(r["key_labels"]),
        status=r["status"],
        tier=r["tier"],
        value=r["value"],
        labels=json.loads(r["labels"]),
        annotations=json.loads(r["annotations"]),
        opened_at=r["opened_at"],
        tier_at=r["tier_at"],
        updated_at=r["updated_at"],
        resolved_at=r["resolved_at"],
        generator_url=r["generator_url"],
        external_url=r["external_url"],
        acked_by=r["acked_by"],
        acked_at=r["acked_at"],
    )


def open_incident(r: Row, instances: dict[tuple[str, float], float | None]) -> Incident:
    return Incident(
        id=r["id"],
        rule=sys.intern(r["rule"]),  # one string per rule and status, not one per row
        key=tuple(json.loads(r["incident_key"])),
        status=sys.intern(r["status"]),
        tier=r["tier"],
        value=r["value"],
        opened_at=r["opened_at"],
        tier_at=r["tier_at"],
        updated_at=r["updated_at"],
        resolved_at=r["resolved_at"],
        acked=r["acked_by"] is not None,
        instances=instances,
    )
