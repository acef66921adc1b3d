"""Claims and their attempts: what the executor starts and records, and the facts the guardrails
judge a claim on (starts.py judges and starts claims on them, finishes.py finishes them)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from remediator import guardrails
from remediator.approvals import ClaimAfter
from remediator.store import rows
from remediator.store.audit import insert_audit
from remediator.store.finishes import count_attempts, insert_attempts
from remediator.store.leadership import fence
from remediator.store.records import (
    CLAIM_LEASE,
    CLAIMED,
    FAILED,
    RUNNING,
    SUCCEEDED,
    VERIFY_FAILED,
    VERIFY_PENDING,
    Attempt,
    AuditEntry,
    Claim,
    MuteRow,
)
from remediator.store.sql import Row, Runner, Tx, literal, marks


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
        epoch = self.epoch

        async def op(tx: Tx) -> bool:
            await fence(tx, epoch)
            return await _start_claim(tx, claim_id, at, request)

        return await self._write(op)

    async def mark_sent(self, claim_id: int, at: float) -> bool:
        """From now on the claim's request may have left: an interruption is no longer a claim
        that never acted. False if the claim is no longer running. Fenced: a deposed leader's
        request never leaves."""
        sql = "UPDATE claims SET sent_at = ? WHERE id = ? AND status = ? AND sent_at IS NULL"
        epoch = self.epoch

        async def op(tx: Tx) -> int:
            await fence(tx, epoch)
            return await tx.execute(sql, at, claim_id, RUNNING)

        return await self._write(op) == 1

    async def renew_leases(self, claim_ids: Sequence[int], now: float, until: float) -> int:
        """Renew the leases of these claims, those still running, to `until`; how many."""
        if not claim_ids:
            return 0
        sql = (  # the status written in (sql.literal): with two ids or more, SQLite plans
            "UPDATE claims SET lease_until = ?, lease_renewed_at = ? "
            f"WHERE status = {literal(RUNNING)} AND id IN ({marks(claim_ids)})"
        )
        return await self._write(lambda tx: tx.execute(sql, until, now, *claim_ids))

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
        it was no longer running. Fenced."""
        epoch = self.epoch

        async def op(tx: Tx) -> bool:
            await fence(tx, epoch)
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


async def _start_claim(
    tx: Tx,
    claim_id: int,
    at: float,
    request: Mapping[str, Any],
    lane: str | None = None,
    sent: bool = False,
) -> bool:
    """Running from `at`, with a lease of CLAIM_LEASE that its holder renews from then on; in
    `lane` of its target, and sent at once if `sent`."""
    sql = (
        "UPDATE claims SET status = ?, started_at = ?, request = ?, lease_until = ?, "
        "lease_renewed_at = ?, lane = ?, sent_at = ? WHERE id = ? AND status = ?"
    )
    body, lease, sent_at = json.dumps(request), at + CLAIM_LEASE, at if sent else None
    return (
        await tx.execute(sql, RUNNING, at, body, lease, at, lane, sent_at, claim_id, CLAIMED) == 1
    )


async def _insert_attempt(tx: Tx, attempt: Attempt) -> None:
    """The attempt, and its number as its claim's count of attempts."""
    await insert_attempts(tx, [attempt])
    await count_attempts(tx, attempt)


async def active_mutes(tx: Tx, now: float) -> list[MuteRow]:
    sql = (
        f"SELECT {rows.MUTE_COLUMNS} FROM mutes WHERE ended_at IS NULL AND until > ? "
        "ORDER BY id DESC"
    )
    return [rows.mute(r) for r in await tx.fetch(sql, now)]


_RESET = "SELECT MAX(at) FROM circuit_resets WHERE target = ?"
# An action whose request's own data was refused (an attempt without target_fault) says nothing
# about its target: neither a success nor a failure for its breaker.
_COUNTS = "NOT EXISTS (SELECT 1 FROM attempts a WHERE a.claim_id = c.id AND a.target_fault = 0)"
# a success that ends a breaker's count (one whose verification did not fail)
_SUCCESS = (
    f"c.status = {literal(SUCCEEDED)} "
    f"AND (c.verify_status IS NULL OR c.verify_status != {literal(VERIFY_FAILED)}) AND {_COUNTS}"
)
_OUTCOMES = ", ".join(literal(s) for s in guardrails.BREAKER_OUTCOMES)
# the target's last success since its last reset: claims_target_status walked from the newest
_LAST_SUCCESS = (
    f"SELECT c.finished_at, c.id FROM claims c WHERE c.target = ? AND {_SUCCESS} "
    "AND c.finished_at > ? ORDER BY c.finished_at DESC, c.id DESC LIMIT 1"
)
# its outcomes after a point in (finished_at, id) order: the failures, once that point is the
# last success (or its reset)
_FAILURES = (
    f"SELECT c.finished_at FROM claims c WHERE c.target = ? AND c.status IN ({_OUTCOMES}) "
    f"AND c.finished_at >= ? AND (c.finished_at > ? OR c.id > ?) AND {_COUNTS} "
    "ORDER BY c.finished_at, c.id"
)


def _newest(target: str, status: str, column: str) -> str:
    """`column` of the target's newest claim in `status`: one step back along
    claims_target_status (at equal times, the larger id is the newer)."""
    return (
        f"(SELECT {column} FROM claims c WHERE c.target = {target} "
        f"AND c.status = {literal(status)} AND c.finished_at IS NOT NULL "
        "ORDER BY c.finished_at DESC, c.id DESC LIMIT 1)"
    )


def breaker_newest(target: str) -> dict[str, str]:
    """SQL expressions by column name, for breaker_quiet, of the target `target` (an SQL
    expression): its newest success, whether it counts as one, and its newest failed outcome."""
    counts = (
        f"CASE WHEN (c.verify_status IS NULL OR c.verify_status != {literal(VERIFY_FAILED)}) "
        f"AND {_COUNTS} THEN 1 ELSE 0 END"
    )
    return {
        "success_at": _newest(target, SUCCEEDED, "c.finished_at"),
        "success_counts": _newest(target, SUCCEEDED, counts),
        "failed_at": _newest(target, FAILED, "c.finished_at"),
    }


def breaker_quiet(newest: Row) -> bool:
    """True if the target has no failure since its last success, by breaker_newest's columns
    and without reading its failures: it has no outcome at all, or its newest success counts
    and no failed outcome finished at or after it. False is not a failure (the one after may not
    count, or be older than a reset): breaker_failures reads them then."""
    success, failed = newest["success_at"], newest["failed_at"]
    if success is None:
        return failed is None
    return bool(newest["success_counts"]) and (failed is None or failed < success)


async def breaker_failures(tx: Tx, target: str) -> list[float]:
    """The target's failures (a failed action, or a success whose verification failed) since
    its last success and its last reset, oldest first: every outcome after the last success
    that counts is a failure. Two index walks, whatever the target's history."""
    since = await tx.fetchval(_RESET, target) or 0.0
    last = await tx.fetchrow(_LAST_SUCCESS, target, since)
    # strictly after the last success, or after the reset (no claim has an id that large)
    after, after_id = (since, 2**62) if last is None else (last["finished_at"], last["id"])
    return [r["finished_at"] for r in await tx.fetch(_FAILURES, target, after, after, after_id)]
