"""The audit trail's one write, shared by every module that records what it did."""

from __future__ import annotations

import json
from dataclasses import replace

from remediator.store.records import AuditEntry
from remediator.store.sql import Tx


async def insert_audit(tx: Tx, e: AuditEntry) -> AuditEntry:
    """Store the line; the line with its id."""
    audit_id = await tx.fetchval(
        "INSERT INTO audit (at, kind, event, incident_id, rule, tier, action, actor, message, "
        "detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        e.at,
        e.kind,
        e.event,
        e.incident_id,
        e.rule,
        e.tier,
        e.action,
        e.actor,
        e.message,
        json.dumps(dict(e.detail)),
    )
    return replace(e, id=int(audit_id))
