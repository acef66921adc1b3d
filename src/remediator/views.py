"""How stored records read for people: the JSON of /api/v1, the CLI's history and Slack's
status lines. Times as ISO 8601; the stored JSON columns as objects."""

from __future__ import annotations

from typing import Any

from remediator.clock import iso
from remediator.store.records import RUNNING, Attempt, AuditEntry, Claim, IncidentRecord


def incident_view(i: IncidentRecord) -> dict[str, Any]:
    return {
        "id": i.id,
        "rule": i.rule,
        "key": dict(i.key_labels),
        "status": i.status,
        "tier": i.tier,
        "value": i.value,
        "labels": dict(i.labels),
        "annotations": dict(i.annotations),
        "opened_at": iso(i.opened_at),
        "tier_at": iso(i.tier_at),
        "updated_at": iso(i.updated_at),
        "resolved_at": iso(i.resolved_at),
        "generator_url": i.generator_url,
        "external_url": i.external_url,
        "acked_by": i.acked_by,
        "acked_at": iso(i.acked_at),
    }


def claim_view(c: Claim) -> dict[str, Any]:
    return {
        "id": c.id,
        "incident_id": c.incident_id,
        "rule": c.rule,
        "step": c.step,
        "action": c.action,
        "kind": c.kind,
        "target": c.target,
        "status": c.status,
        "phase": _phase(c),
        "detail": c.detail,
        "attempts": c.attempts,
        "interruptions": c.interruptions,
        "request": c.request,
        "idempotency_key": c.idempotency_key,
        "context": c.context,
        "claimed_at": iso(c.claimed_at),
        "started_at": iso(c.started_at),
        "finished_at": iso(c.finished_at),
        "sent_at": iso(c.sent_at),
        "lease_until": iso(c.lease_until),
        "hold_until": iso(c.hold_until),
        "verify_status": c.verify_status,
        "verify_detail": c.verify_detail,
        "verify_deadline": iso(c.verify_deadline),
    }


def _phase(c: Claim) -> str | None:
    """A running claim is `checking` (guardrails passed, precondition in flight: no request can
    have left) or `sent` (its request may have reached the target)."""
    if c.status != RUNNING:
        return None
    return "checking" if c.sent_at is None else "sent"


def attempt_view(a: Attempt) -> dict[str, Any]:
    return {
        "attempt": a.attempt,
        "started_at": iso(a.started_at),
        "finished_at": iso(a.finished_at),
        "ok": a.ok,
        "status_code": a.status_code,
        "exit_code": a.exit_code,
        "detail": a.detail,
        "output": a.output,
    }


def audit_view(e: AuditEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": iso(e.at),
        "kind": e.kind,
        "event": e.event,
        "incident_id": e.incident_id,
        "rule": e.rule,
        "tier": e.tier,
        "action": e.action,
        "actor": e.actor,
        "message": e.message,
        "detail": dict(e.detail),
    }
