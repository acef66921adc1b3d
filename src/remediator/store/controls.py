"""What people steer, as stored: settings (the kill switch), mutes, approvals, circuit resets and
acknowledgements. What an approval's state means is in remediator.approvals."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from remediator import approvals
from remediator.store import rows
from remediator.store.audit import insert_audit
from remediator.store.claims import active_mutes, close_claim
from remediator.store.records import (
    AWAITING_APPROVAL,
    CLAIMED,
    Approval,
    AuditEntry,
    Claim,
    MuteRow,
)
from remediator.store.sql import Runner, Tx

APPROVALS_LISTED = 500


class ControlsSQL(Runner):
    async def get_setting(self, name: str) -> Any:
        async def op(tx: Tx) -> Any:
            value = await tx.fetchval("SELECT value FROM settings WHERE name = ?", name)
            return None if value is None else json.loads(value)

        return await self._read(op)

    async def put_setting(self, name: str, value: Any, at: float, audit: AuditEntry) -> AuditEntry:
        async def op(tx: Tx) -> AuditEntry:
            await put_setting(tx, name, value, at)
            return await insert_audit(tx, audit)

        return await self._write(op)

    async def add_mute(
        self, mute: MuteRow, audit: Callable[[MuteRow], AuditEntry]
    ) -> tuple[MuteRow, AuditEntry]:
        """Insert the mute and the audit line `audit` writes about it (it knows the mute's id)."""

        async def op(tx: Tx) -> tuple[MuteRow, AuditEntry]:
            r = await tx.fetchrow(
                "INSERT INTO mutes (rule, target, matchers, reason, created_by, created_at, "
                f"until) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {rows.MUTE_COLUMNS}",
                mute.rule,
                mute.target,
                mute.matchers,
                mute.reason,
                mute.created_by,
                mute.created_at,
                mute.until,
            )
            assert r is not None  # an INSERT ... RETURNING returns its row
            added = rows.mute(r)
            return added, await insert_audit(tx, audit(added))

        return await self._write(op)

    async def end_mute(self, mute_id: int, by: str, at: float, audit: AuditEntry) -> bool:
        async def op(tx: Tx) -> bool:
            sql = (
                "UPDATE mutes SET ended_at = ?, ended_by = ? WHERE id = ? AND ended_at IS NULL "
                "AND until > ?"
            )
            if await tx.execute(sql, at, by, mute_id, at) != 1:
                return False
            await insert_audit(tx, audit)
            return True

        return await self._write(op)

    async def mutes(self, now: float, include_inactive: bool = False) -> list[MuteRow]:
        async def op(tx: Tx) -> list[MuteRow]:
            if not include_inactive:
                return await active_mutes(tx, now)
            sql = f"SELECT {rows.MUTE_COLUMNS} FROM mutes ORDER BY id DESC"
            return [rows.mute(r) for r in await tx.fetch(sql)]

        return await self._read(op)

    async def request_approval(
        self,
        claim: Claim,
        request: Mapping[str, Any],
        at: float,
        expires_at: float,
        audit: AuditEntry,
    ) -> Approval | None:
        """Park the claim as awaiting approval and open its approval; None if the claim is no
        longer claimed."""

        async def op(tx: Tx) -> Approval | None:
            sql = "UPDATE claims SET status = ?, detail = ? WHERE id = ? AND status = ?"
            if await tx.execute(sql, AWAITING_APPROVAL, approvals.WAITING, claim.id, CLAIMED) != 1:
                return None
            r = await tx.fetchrow(
                "INSERT INTO approvals (claim_id, incident_id, rule, action, target, request, "
                "requested_at, expires_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending') "
                f"RETURNING {rows.APPROVAL_COLUMNS}",
                claim.id,
                claim.incident_id,
                claim.rule,
                claim.action,
                claim.target,
                json.dumps(request),
                at,
                expires_at,
            )
            assert r is not None  # an INSERT ... RETURNING returns its row
            approval = rows.approval(r)
            await insert_audit(
                tx, replace(audit, detail={**audit.detail, "approval_id": approval.id})
            )
            return approval

        return await self._write(op)

    async def decide_approval(
        self, approval_id: int, approved: bool, by: str, reason: str, at: float, audit: AuditEntry
    ) -> tuple[Approval | None, str]:
        """Approve or deny an approval approvals.undecidable allows. Returns (the approval after
        the decision, "") or (the approval as it stands or None, why it could not be decided)."""
        return await self._write(
            lambda tx: _decide(tx, approval_id, approved, by, reason, at, audit)
        )

    async def expire_approvals(self, now: float) -> list[Approval]:
        """Expire every pending approval past its time; their claims are refused."""

        async def op(tx: Tx) -> list[Approval]:
            sql = (
                f"SELECT {rows.APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending' "
                "AND expires_at <= ?"
            )
            expired = []
            for approval in [rows.approval(r) for r in await tx.fetch(sql, now)]:
                update = (
                    "UPDATE approvals SET status = 'expired', decided_at = ? "
                    "WHERE id = ? AND status = 'pending'"
                )
                if await tx.execute(update, now, approval.id) != 1:
                    continue
                await close_claim(tx, approval.claim_id, approvals.after_expiry(approval), now)
                expired.append(replace(approval, status="expired", decided_at=now))
            return expired

        return await self._write(op)

    async def approval(self, approval_id: int) -> Approval | None:
        async def op(tx: Tx) -> Approval | None:
            sql = f"SELECT {rows.APPROVAL_COLUMNS} FROM approvals WHERE id = ?"
            r = await tx.fetchrow(sql, approval_id)
            return None if r is None else rows.approval(r)

        return await self._read(op)

    async def approvals(self, status: str | None = None) -> list[Approval]:
        """The newest APPROVALS_LISTED approvals, of one status or all."""

        async def op(tx: Tx) -> list[Approval]:
            where, args = ("", ()) if status is None else (" WHERE status = ?", (status,))
            sql = f"SELECT {rows.APPROVAL_COLUMNS} FROM approvals{where} ORDER BY id DESC LIMIT ?"
            return [rows.approval(r) for r in await tx.fetch(sql, *args, APPROVALS_LISTED)]

        return await self._read(op)

    async def pending_approvals(self) -> tuple[int, float | None]:
        """How many approvals wait, and when the first of them expires: every one of them, not
        a page of the newest (the gauge and the expiry timer must see them all)."""

        async def op(tx: Tx) -> tuple[int, float | None]:
            sql = (
                "SELECT COUNT(*) AS n, MIN(expires_at) AS first FROM approvals "
                "WHERE status = 'pending'"
            )
            r = await tx.fetchrow(sql)
            assert r is not None  # an aggregate returns one row
            return int(r["n"]), r["first"]

        return await self._read(op)

    async def reset_circuit(self, target: str, by: str, at: float, audit: AuditEntry) -> None:
        async def op(tx: Tx) -> None:
            sql = "INSERT INTO circuit_resets (target, at, by_whom) VALUES (?, ?, ?)"
            await tx.execute(sql, target, at, by)
            await insert_audit(tx, audit)

        await self._write(op)

    async def ack_incident(self, incident_id: int, by: str, at: float, audit: AuditEntry) -> bool:
        async def op(tx: Tx) -> bool:
            sql = "UPDATE incidents SET acked_by = ?, acked_at = ? WHERE id = ? AND status = 'open'"
            if await tx.execute(sql, by, at, incident_id) != 1:
                return False
            await insert_audit(tx, audit)
            return True

        return await self._write(op)


async def put_setting(tx: Tx, name: str, value: Any, at: float) -> None:
    await tx.execute(
        "INSERT INTO settings (name, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        name,
        json.dumps(value),
        at,
    )


async def _decide(
    tx: Tx, approval_id: int, approved: bool, by: str, reason: str, at: float, audit: AuditEntry
) -> tuple[Approval | None, str]:
    r = await tx.fetchrow(
        f"SELECT {rows.APPROVAL_COLUMNS} FROM approvals WHERE id = ?", approval_id
    )
    if r is None:
        return None, f"no approval {approval_id}"
    current = rows.approval(r)
    if problem := approvals.undecidable(current, at):
        return current, problem
    status = "approved" if approved else "denied"
    sql = (
        "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, reason = ? "
        "WHERE id = ? AND status = 'pending'"
    )
    if await tx.execute(sql, status, by, at, reason, approval_id) != 1:  # decided meanwhile
        return await _decide(tx, approval_id, approved, by, reason, at, audit)
    await close_claim(tx, current.claim_id, approvals.after_decision(approved, by, reason), at)
    # the stored line names the approval's incident: Slack updates that thread
    named = replace(
        audit, incident_id=current.incident_id, rule=current.rule, action=current.action
    )
    await insert_audit(tx, named)
    return replace(current, status=status, decided_by=by, decided_at=at, reason=reason), ""
