"""Reading for people: pages of incidents, actions and the audit trail, newest first. The
records become JSON in remediator.views, shared by both backends."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from remediator import views
from remediator.store import rows
from remediator.store.records import RUNNING, STARTED, GuardrailState, Page, Start
from remediator.store.sql import Row, Runner, Tx, literal, marks


class ReadsSQL(Runner):
    async def list_incidents(self, limit: int, before: int | None, status: str | None) -> Page:
        conditions = [] if status is None else [("status = ?", status)]
        return await self._read(
            lambda tx: _page(
                tx,
                "incidents",
                rows.INCIDENT_COLUMNS,
                limit,
                before,
                conditions,
                lambda r: views.incident_view(rows.incident_record(r)),
            )
        )

    async def list_actions(self, limit: int, before: int | None) -> Page:
        return await self._read(
            lambda tx: _page(
                tx,
                "claims",
                rows.CLAIM_COLUMNS,
                limit,
                before,
                [],
                lambda r: views.claim_view(rows.claim(r)),
            )
        )

    async def history(self, limit: int, before: int | None) -> Page:
        return await self._read(
            lambda tx: _page(
                tx,
                "audit",
                rows.AUDIT_COLUMNS,
                limit,
                before,
                [],
                lambda r: views.audit_view(rows.audit(r)),
            )
        )

    async def incident(self, incident_id: int) -> dict[str, Any] | None:
        async def op(tx: Tx) -> dict[str, Any] | None:
            sql = f"SELECT {rows.INCIDENT_COLUMNS} FROM incidents WHERE id = ?"
            r = await tx.fetchrow(sql, incident_id)
            return None if r is None else views.incident_view(rows.incident_record(r))

        return await self._read(op)

    async def incidents(self, incident_ids: list[int]) -> dict[int, dict[str, Any]]:
        """incident() for several in one read (the Slack outbox's pass); missing ones are not
        keys."""

        async def op(tx: Tx) -> dict[int, dict[str, Any]]:
            where = f"id IN ({marks(incident_ids)})"
            sql = f"SELECT {rows.INCIDENT_COLUMNS} FROM incidents WHERE {where}"
            found = [rows.incident_record(r) for r in await tx.fetch(sql, *incident_ids)]
            return {i.id: views.incident_view(i) for i in found}

        return await self._read(op) if incident_ids else {}

    async def incident_record(self, incident_id: int) -> dict[str, Any] | None:
        """An incident with its claims (each with its attempts) and its audit trail, oldest
        first: everything /api/v1/incidents/{id} shows."""
        return await self._read(lambda tx: _incident_record(tx, incident_id))

    async def guardrail_state(self, since: float) -> GuardrailState:
        """The actions started since `since` and the busy targets (GET /api/v1/guardrails)."""
        return await self._read(lambda tx: _guardrail_state(tx, since))

    async def count_incidents(self, status: str) -> int:
        async def op(tx: Tx) -> int:
            sql = "SELECT COUNT(*) FROM incidents WHERE status = ?"
            return int(await tx.fetchval(sql, status))

        return await self._read(op)


async def _guardrail_state(tx: Tx, since: float) -> GuardrailState:
    started = await tx.fetch(
        "SELECT c.rule, c.action, c.target, i.incident_key, i.key_labels, c.started_at "
        "FROM claims c JOIN incidents i ON i.id = c.incident_id WHERE c.started_at >= ? "
        f"AND c.status IN ({', '.join('?' for _ in STARTED)}) ORDER BY c.started_at, c.id",
        since,
        *STARTED,
    )
    busy = await tx.fetch(
        f"SELECT DISTINCT target FROM claims WHERE status = {literal(RUNNING)} ORDER BY target"
    )
    return GuardrailState(
        [
            Start(
                r["rule"],
                r["action"],
                r["target"],
                tuple(json.loads(r["incident_key"])),
                json.loads(r["key_labels"]),
                float(r["started_at"]),
            )
            for r in started
        ],
        [r["target"] for r in busy],
    )


async def _incident_record(tx: Tx, incident_id: int) -> dict[str, Any] | None:
    sql = f"SELECT {rows.INCIDENT_COLUMNS} FROM incidents WHERE id = ?"
    r = await tx.fetchrow(sql, incident_id)
    if r is None:
        return None
    record = views.incident_view(rows.incident_record(r))
    sql = f"SELECT {rows.CLAIM_COLUMNS} FROM claims WHERE incident_id = ? ORDER BY id"
    record["claims"] = [views.claim_view(rows.claim(c)) for c in await tx.fetch(sql, incident_id)]
    sql = f"SELECT {rows.ATTEMPT_COLUMNS} FROM attempts WHERE claim_id = ? ORDER BY id"
    for claim in record["claims"]:
        attempts = await tx.fetch(sql, claim["id"])
        claim["attempts"] = [views.attempt_view(rows.attempt(a)) for a in attempts]
    sql = f"SELECT {rows.AUDIT_COLUMNS} FROM audit WHERE incident_id = ? ORDER BY id"
    record["audit"] = [views.audit_view(rows.audit(a)) for a in await tx.fetch(sql, incident_id)]
    return record


async def _page(
    tx: Tx,
    table: str,
    columns: str,
    limit: int,
    before: int | None,
    conditions: list[tuple[str, Any]],
    view: Callable[[Row], dict[str, Any]],
) -> Page:
    if before is not None:
        conditions = [*conditions, ("id < ?", before)]
    where = " AND ".join(c for c, _ in conditions)
    where = f" WHERE {where}" if where else ""
    sql = f"SELECT {columns} FROM {table}{where} ORDER BY id DESC LIMIT ?"
    items = [view(r) for r in await tx.fetch(sql, *(v for _, v in conditions), limit + 1)]
    more = len(items) > limit
    items = items[:limit]
    return Page(items, items[-1]["id"] if more and items else None)
