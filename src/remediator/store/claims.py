"""Claims and their attempts: what the executor starts, records and finishes, and the facts the
guardrails judge a claim on, read in the transaction that starts it."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from remediator import guardrails
from remediator.approvals import ClaimAfter
from remediator.guardrails import Verdict
from remediator.store import rows
from remediator.store.audit import insert_audit
from remediator.store.dialect import LOCK_STARTS
from remediator.store.records import (
    CLAIM_LEASE,
    CLAIMED,
    RUNNING,
    STARTED,
    VERIFY_PENDING,
    Attempt,
    AuditEntry,
    Claim,
    MuteRow,
    TargetHistory,
)
from remediator.store.sql import Runner, Tx, marks

Judge = Callable[[TargetHistory, list[MuteRow]], Verdict | None]
BREAKER_PAGE = 100  # a target's outcomes are read newest first, this many at a time


class ClaimsSQL(Runner):
    async def claim(self, claim_id: int) -> Claim | None:
        async def op(tx: Tx) -> Claim | None:
            r = await tx.fetchrow(f"SELECT {rows.CLAIM_COLUMNS} FROM claims WHERE id = ?", claim_id)
            return None if r is None else rows.claim(r)

        return await self._read(op)

    async def claims_in(self, statuses: tuple[str, ...]) -> list[Claim]:
        async def op(tx: Tx) -> list[Claim]:
            sql = (
                f"SELECT {rows.CLAIM_COLUMNS} FROM claims "
                f"WHERE status IN ({marks(statuses)}) ORDER BY id"
            )
            return [rows.claim(r) for r in await tx.fetch(sql, *statuses)]

        return await self._read(op)

    async def start_claim(self, claim_id: int, at: float, request: Mapping[str, Any]) -> bool:
        return await self._write(lambda tx: _start_claim(tx, claim_id, at, request))

    async def start_claim_if(
        self, claim: Claim, request: Mapping[str, Any], now: float, since: float, judge: Judge
    ) -> tuple[Verdict | None, bool]:
        """Judge the claim on the store's facts and, if the verdict allows, start it, in one
        transaction that holds the starts lock to its commit: no other claim, in this process
        or another on the same database, is judged or started in between."""

        async def op(tx: Tx) -> tuple[Verdict | None, bool]:
            await tx.fetchval(tx.dialect.lock, LOCK_STARTS)
            facts = await target_history(tx, claim, since)
            verdict = judge(facts, await active_mutes(tx, now))
            if verdict is None or verdict.outcome != "allow":
                return verdict, False
            return verdict, await _start_claim(tx, claim.id, now, request)

        return await self._write(op, serial=True)

    async def mark_sent(self, claim_id: int, at: float) -> bool:
        """From now on the claim's request may have left: an interruption is no longer a claim
        that never acted. False if the claim is no longer running."""
        sql = "UPDATE claims SET sent_at = ? WHERE id = ? AND status = ? AND sent_at IS NULL"
        return await self._write(lambda tx: tx.execute(sql, at, claim_id, RUNNING)) == 1

    async def renew_leases(self, claim_ids: Sequence[int], now: float, until: float) -> int:
        """Renew the leases of these claims, those still running, to `until`; how many."""
        if not claim_ids:
            return 0
        sql = (
            "UPDATE claims SET lease_until = ?, lease_renewed_at = ? "
            f"WHERE status = ? AND id IN ({marks(claim_ids)})"
        )
        return await self._write(lambda tx: tx.execute(sql, until, now, RUNNING, *claim_ids))

    async def claims_lease_expired(self, now: float) -> list[Claim]:
        """Running claims whose lease ran out before `now` (or that never had one): their
        holder stopped renewing them, so it died or lost the store."""

        async def op(tx: Tx) -> list[Claim]:
            sql = (
                f"SELECT {rows.CLAIM_COLUMNS} FROM claims WHERE status = ? "
                "AND (lease_until IS NULL OR lease_until < ?) ORDER BY id"
            )
            return [rows.claim(r) for r in await tx.fetch(sql, RUNNING, now)]

        return await self._read(op)

    async def rerun_claim(self, claim_id: int, detail: str, audit: AuditEntry) -> bool:
        """A running claim interrupted by its holder's death goes back to `claimed`, to be
        judged and run again, with its audit line; it counts one more interruption. False if
        it was no longer running."""

        async def op(tx: Tx) -> bool:
            sql = (
                "UPDATE claims SET status = ?, detail = ?, started_at = NULL, request = NULL, "
                "sent_at = NULL, lease_until = NULL, lease_renewed_at = NULL, "
                "interruptions = interruptions + 1 WHERE id = ? AND status = ?"
            )
            if await tx.execute(sql, CLAIMED, detail, claim_id, RUNNING) != 1:
                return False
            await insert_audit(tx, audit)
            return True

        return await self._write(op)

    async def record_attempt(self, attempt: Attempt) -> None:
        await self._write(lambda tx: _insert_attempt(tx, attempt))

    async def set_claim(
        self,
        claim_id: int,
        status: str,
        detail: str,
        audit: AuditEntry | None,
        from_statuses: tuple[str, ...],
        hold_until: float | None = None,
    ) -> bool:
        """Move a claim between unfinished states (held, back to claimed), with its audit line.
        False if the claim was not in `from_statuses`."""

        async def op(tx: Tx) -> bool:
            sql = (
                "UPDATE claims SET status = ?, detail = ?, hold_until = ? "
                f"WHERE id = ? AND status IN ({marks(from_statuses)})"
            )
            if await tx.execute(sql, status, detail, hold_until, claim_id, *from_statuses) != 1:
                return False
            if audit is not None:
                await insert_audit(tx, audit)
            return True

        return await self._write(op)

    async def finish_claim(
        self,
        claim_id: int,
        status: str,
        detail: str,
        at: float,
        audit: AuditEntry,
        from_statuses: tuple[str, ...] = (CLAIMED, RUNNING),
        last_attempt: Attempt | None = None,
    ) -> AuditEntry | None:
        async def op(tx: Tx) -> AuditEntry | None:
            if last_attempt is not None:
                await _insert_attempt(tx, last_attempt)
            sql = (
                "UPDATE claims SET status = ?, detail = ?, finished_at = ?, lease_until = NULL "
                f"WHERE id = ? AND status IN ({marks(from_statuses)})"
            )
            if await tx.execute(sql, status, detail, at, claim_id, *from_statuses) != 1:
                return None
            return await insert_audit(tx, audit)

        return await self._write(op)

    async def set_verification(
        self,
        claim_id: int,
        status: str,
        detail: str,
        next_at: float | None,
        deadline: float | None,
        audit: AuditEntry | None = None,
    ) -> AuditEntry | None:
        async def op(tx: Tx) -> AuditEntry | None:
            await tx.execute(
                "UPDATE claims SET verify_status = ?, verify_detail = ?, verify_next_at = ?, "
                "verify_deadline = ? WHERE id = ?",
                status,
                detail,
                next_at,
                deadline,
                claim_id,
            )
            return None if audit is None else await insert_audit(tx, audit)

        return await self._write(op)

    async def claims_verifying(self) -> list[Claim]:
        async def op(tx: Tx) -> list[Claim]:
            sql = (
                f"SELECT {rows.CLAIM_COLUMNS} FROM claims WHERE verify_status = ? "
                "ORDER BY verify_next_at"
            )
            return [rows.claim(r) for r in await tx.fetch(sql, VERIFY_PENDING)]

        return await self._read(op)

    async def target_failures(self, target: str) -> list[float]:
        return await self._read(lambda tx: breaker_failures(tx, target))


async def close_claim(tx: Tx, claim_id: int, after: ClaimAfter, at: float) -> None:
    """A claim awaiting approval becomes what the approval's outcome says."""
    await tx.execute(
        "UPDATE claims SET status = ?, detail = ?, "
        "finished_at = CASE WHEN ? = 1 THEN ? ELSE finished_at END WHERE id = ? AND status = ?",
        after.status,
        after.detail,
        int(after.finished),
        at,
        claim_id,
        "awaiting_approval",
    )


async def _start_claim(tx: Tx, claim_id: int, at: float, request: Mapping[str, Any]) -> bool:
    """Running from `at`, with a lease of CLAIM_LEASE that its holder renews from then on."""
    sql = (
        "UPDATE claims SET status = ?, started_at = ?, request = ?, lease_until = ?, "
        "lease_renewed_at = ? WHERE id = ? AND status = ?"
    )
    body, lease = json.dumps(request), at + CLAIM_LEASE
    return await tx.execute(sql, RUNNING, at, body, lease, at, claim_id, CLAIMED) == 1


async def _insert_attempt(tx: Tx, attempt: Attempt) -> None:
    await tx.execute(
        "INSERT INTO attempts (claim_id, attempt, started_at, finished_at, ok, "
        "status_code, exit_code, detail, output, target_fault) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        attempt.claim_id,
        attempt.attempt,
        attempt.started_at,
        attempt.finished_at,
        int(attempt.ok),
        attempt.status_code,
        attempt.exit_code,
        attempt.detail,
        attempt.output,
        int(attempt.target_fault),
    )
    sql = "UPDATE claims SET attempts = ? WHERE id = ?"
    await tx.execute(sql, attempt.attempt, attempt.claim_id)


async def active_mutes(tx: Tx, now: float) -> list[MuteRow]:
    sql = (
        f"SELECT {rows.MUTE_COLUMNS} FROM mutes WHERE ended_at IS NULL AND until > ? "
        "ORDER BY id DESC"
    )
    return [rows.mute(r) for r in await tx.fetch(sql, now)]


async def target_history(tx: Tx, claim: Claim, since: float) -> TargetHistory:
    """Facts about `claim`'s rule, action and target: starts since `since` (budgets), the last
    start by another incident (cooldown), whether the target is busy, the target's failures since
    its last success or reset (circuit breaker), the claim's approval, its incident's status."""
    # Each read below must cost what this claim's history costs, not the whole claims table (it
    # runs before every action). A unary + keeps SQLite from using a column's index where the
    # planner, without statistics, would pick a far larger range (all of a target's claims).
    started = marks(STARTED)
    last_other = await tx.fetchval(  # cooldown: the same rule and incident key, same target
        "SELECT MAX(c.started_at) FROM incidents i JOIN claims c ON c.incident_id = i.id "
        "WHERE i.incident_key = (SELECT incident_key FROM incidents WHERE id = ?) AND i.id != ? "
        f"AND +c.rule = ? AND +c.target = ? AND +c.status IN ({started})",
        claim.incident_id,
        claim.incident_id,
        claim.rule,
        claim.target,
        *STARTED,
    )
    starts = await tx.fetch(
        f"SELECT action, started_at FROM claims WHERE started_at >= ? AND +status IN ({started})",
        since,
        *STARTED,
    )
    busy = await tx.fetchrow(
        "SELECT 1 FROM claims WHERE target = ? AND status = ? AND id != ? LIMIT 1",
        claim.target,
        RUNNING,
        claim.id,
    )
    approval = await tx.fetchrow(
        f"SELECT {rows.APPROVAL_COLUMNS} FROM approvals WHERE claim_id = ?", claim.id
    )
    status = await tx.fetchval("SELECT status FROM incidents WHERE id = ?", claim.incident_id)
    return TargetHistory(
        last_other_start=last_other,
        started_global=[r["started_at"] for r in starts],
        started_action=[r["started_at"] for r in starts if r["action"] == claim.action],
        target_busy=busy is not None,
        failures=await breaker_failures(tx, claim.target),
        approval=None if approval is None else rows.approval(approval),
        incident_status=status,
    )


async def breaker_failures(tx: Tx, target: str) -> list[float]:
    """The target's failures (as guardrails.breaker_failure counts them) since its last success
    and its last reset, oldest first: its outcomes read newest first until a success. An action
    whose request's own data was refused (an attempt without target_fault) is neither: it says
    nothing about the target."""
    reset = await tx.fetchval("SELECT MAX(at) FROM circuit_resets WHERE target = ?", target)
    sql = (  # walks claims_target_status from the newest
        f"SELECT id, finished_at, status, verify_status FROM claims WHERE target = ? "
        f"AND status IN ({marks(guardrails.BREAKER_OUTCOMES)}) AND finished_at > ? "
        "AND (finished_at < ? OR (finished_at = ? AND id < ?)) "
        "AND id NOT IN (SELECT claim_id FROM attempts WHERE target_fault = 0) "
        "ORDER BY finished_at DESC, id DESC LIMIT ?"
    )
    failures: list[float] = []
    before, before_id = float("inf"), 2**62
    while True:
        page = await tx.fetch(
            sql,
            target,
            *guardrails.BREAKER_OUTCOMES,
            reset or 0.0,
            before,
            before,
            before_id,
            BREAKER_PAGE,
        )
        for r in page:
            if not guardrails.breaker_failure(r["status"], r["verify_status"]):
                return failures[::-1]
            failures.append(r["finished_at"])
        if len(page) < BREAKER_PAGE:
            return failures[::-1]
        before, before_id = page[-1]["finished_at"], page[-1]["id"]
