"""The audit trail's one write, shared by every module that records what it did."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from remediator.store.records import AuditEntry
from remediator.store.sql import Tx, chunks, value_rows

_INSERT = (
    "INSERT INTO audit (at, kind, event, incident_id, rule, tier, action, actor, message, "
    "detail) VALUES {rows} RETURNING id"
)


async def insert_audit(tx: Tx, e: AuditEntry) -> AuditEntry:
    """Store the line; the line with its id."""
    audit_id = await tx.fetchval(_INSERT.format(rows=value_rows(10, 1)), *_values(e))
    return replace(e, id=int(audit_id))


async def insert_audits(tx: Tx, entries: Sequence[AuditEntry]) -> list[AuditEntry]:
    """Store the lines, many in one statement; the lines with their ids, in order. A multi-row
    VALUES inserts its rows in order on both backends, each taking the next id: the ids it
    returns, sorted, are its rows'."""
    stored: list[AuditEntry] = []
    for chunk in chunks(entries):
        args = [v for e in chunk for v in _values(e)]
        found = await tx.fetch(_INSERT.format(rows=value_rows(10, len(chunk))), *args)
        ids = sorted(int(r["id"]) for r in found)
        stored += [replace(e, id=i) for e, i in zip(chunk, ids, strict=True)]
    return stored


def _values(e: AuditEntry) -> tuple[Any, ...]:
    detail = json.dumps(dict(e.detail))
    return (
        e.at,
        e.kind,
        e.event,
        e.incident_id,
        e.rule,
        e.tier,
        e.action,
        e.actor,
        e.message,
        detail,
    )
