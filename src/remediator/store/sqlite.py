"""The embedded store: one SQLite file in WAL mode, commits durable at synchronous=FULL.

All writes go through one writer thread. It takes every write queued since its last commit and
runs them in one transaction, each in its own savepoint, then commits once: concurrent webhooks
share one fsync (group commit), and one failing write does not fail its neighbours. Journal
appends queued with other writes are committed first, in a transaction of their own: a webhook's
acknowledgement does not wait for an engine batch. Reads run on a
second connection in their own thread and never wait for a commit.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from remediator.clock import iso
from remediator.errors import StoreError
from remediator.guardrails import Verdict
from remediator.incidents import Incident
from remediator.store import migrations, statements
from remediator.store.pages import SqlitePages
from remediator.store.records import (
    AWAITING_APPROVAL,
    CLAIMED,
    FAILED,
    HELD,
    INTERRUPTED,
    OUTLIVE_RESOLUTION,
    REFUSED,
    RUNNING,
    SKIPPED,
    STARTED,
    SUCCEEDED,
    VERIFY_FAILED,
    VERIFY_PENDING,
    Applied,
    Approval,
    Attempt,
    AuditEntry,
    Changes,
    Claim,
    IncidentWrite,
    MuteRow,
    OutboxItem,
    OutboxRow,
    Page,
    TargetHistory,
)

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
InstanceKey = tuple[str, str, float]


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


@dataclass(slots=True)
class _Job:
    op: Op
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    urgent: bool = False  # someone is waiting for this commit to answer (a journal append)


class _Writer(threading.Thread):
    def __init__(self, path: Path) -> None:
        super().__init__(name="remediator-sqlite-writer", daemon=True)
        self.path = path
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.commits = 0
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def submit(self, op: Op, urgent: bool = False) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.jobs.put(_Job(op, future, loop, urgent))
        return future

    def run(self) -> None:
        try:
            conn = connect(self.path)
        except sqlite3.Error as e:
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        try:
            while (batch := self._next_batch()) is not None:
                urgent = [job for job in batch if job.urgent]
                if urgent and len(urgent) < len(batch):
                    # an acknowledgement waits for its commit: not also for an engine batch's
                    self._commit(conn, urgent)
                    batch = [job for job in batch if not job.urgent]
                self._commit(conn, batch)
        finally:
            conn.close()

    def _next_batch(self) -> list[_Job] | None:
        first = self.jobs.get()
        if first is None:
            return None
        batch = [first]
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return batch
            if job is None:
                self.jobs.put(None)  # finish this batch, then stop
                return batch
            batch.append(job)

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                outcomes.append(_run_in_savepoint(conn, job))
            conn.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = StoreError(f"commit failed: {e}")
            outcomes = [(job, None, failure) for job in batch]
        # one wake-up per event loop for the whole batch, not one per job
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Any, BaseException | None]]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].loop, []).append(outcome)
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(_settle_all, settled)


def _run_in_savepoint(
    conn: sqlite3.Connection, job: _Job
) -> tuple[_Job, Any, BaseException | None]:
    conn.execute("SAVEPOINT job")
    try:
        result = job.op(conn)
    except Exception as e:  # one job's failure must not fail the batch
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        return job, None, e
    conn.execute("RELEASE job")
    return job, result, None


def _settle_all(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
    for job, result, error in outcomes:
        if job.future.done():
            continue
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)


class SqliteStore(SqlitePages):
    """The Store protocol on one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: _Writer | None = None
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="remediator-sqlite-reader")
        self._read_conn: sqlite3.Connection | None = None

    @property
    def commits(self) -> int:
        """Transactions committed so far (group commit makes this smaller than the writes)."""
        return self._writer.commits if self._writer else 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(self._migrate)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open {self.path}: {e}") from e
        self._writer = _Writer(self.path)
        self._writer.start()
        await asyncio.to_thread(self._writer.ready.wait)
        if self._writer.error is not None:
            raise StoreError(f"cannot open {self.path}: {self._writer.error}")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.jobs.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        await self._read(lambda conn: conn.close())
        self._reader.shutdown(wait=True)

    def _migrate(self) -> None:
        conn = connect(self.path)
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_version")}
            for migration in migrations("sqlite"):
                if migration.version in done:
                    continue
                conn.execute("BEGIN IMMEDIATE")
                for statement in statements(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, name) VALUES (?, ?)",
                    (migration.version, migration.name),
                )
                conn.execute("COMMIT")
        finally:
            conn.close()

    async def _write(self, op: Callable[[sqlite3.Connection], T], urgent: bool = False) -> T:
        if self._writer is None:
            raise StoreError("the store is not open")
        result: T = await self._writer.submit(op, urgent)
        return result

    async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._with_read_conn, op)

    def _with_read_conn(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self._read_conn is None:
            self._read_conn = connect(self.path)
        try:
            return op(self._read_conn)
        except sqlite3.Error as e:
            raise StoreError(f"read failed: {e}") from e

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    # -- journal -------------------------------------------------------------------------------

    async def append_journal(self, body: str, at: float) -> int:
        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute("INSERT INTO journal (received_at, body) VALUES (?, ?)", (at, body))
            return int(cur.lastrowid or 0)

        return await self._write(op, urgent=True)

    async def unprocessed_journal(self) -> list[tuple[int, str]]:
        sql = "SELECT id, body FROM journal WHERE processed_at IS NULL ORDER BY id"
        return await self._read(lambda conn: [(r[0], r[1]) for r in conn.execute(sql)])

    # -- incidents -----------------------------------------------------------------------------

    async def load_open_incidents(self) -> list[Incident]:
        return await self._read(_load_open_incidents)

    async def resolved_instances(self, keys: list[InstanceKey]) -> set[InstanceKey]:
        def op(conn: sqlite3.Connection) -> set[InstanceKey]:
            found = set()
            sql = (
                "SELECT 1 FROM alert_instances WHERE rule = ? AND fingerprint = ? "
                "AND starts_at = ? AND status = 'resolved'"
            )
            for key in keys:
                if conn.execute(sql, key).fetchone():
                    found.add(key)
            return found

        return await self._read(op) if keys else set()

    async def ran_actions(self, incident_id: int) -> set[str]:
        """Actions that may have taken effect for this incident: succeeded, interrupted (the
        target may have seen it) or still running. What `if_ran` undoes."""
        return (await self.ran_actions_of([incident_id]))[incident_id]

    async def ran_actions_of(self, incident_ids: list[int]) -> dict[int, set[str]]:
        """ran_actions for several incidents in one read; every id is a key."""
        marks = ", ".join("?" for _ in incident_ids)
        sql = (
            f"SELECT DISTINCT incident_id, action FROM claims WHERE incident_id IN ({marks}) "
            "AND +status IN (?, ?, ?)"  # + keeps SQLite on these incidents' claims
        )
        params = (*incident_ids, SUCCEEDED, INTERRUPTED, RUNNING)

        def op(conn: sqlite3.Connection) -> dict[int, set[str]]:
            ran: dict[int, set[str]] = {i: set() for i in incident_ids}
            for incident_id, action in conn.execute(sql, params):
                ran[incident_id].add(action)
            return ran

        return await self._read(op)

    async def done_actions(self, incident_id: int) -> set[str]:
        """Actions claimed for this incident that did, or still may, take effect: not failed,
        refused, skipped, not run for a precondition, dry-run, nor failed their verification.
        What `once_per_incident` does not repeat."""
        sql = (
            "SELECT DISTINCT action FROM claims WHERE incident_id = ? AND status IN "
            "(?, ?, ?, ?, ?, ?) AND (verify_status IS NULL OR verify_status != ?)"
        )
        params = (incident_id, CLAIMED, RUNNING, HELD, AWAITING_APPROVAL, SUCCEEDED, INTERRUPTED)
        rows = await self._read(lambda conn: conn.execute(sql, (*params, VERIFY_FAILED)).fetchall())
        return {str(r[0]) for r in rows}

    async def incident_status(self, incident_id: int) -> str | None:
        sql = "SELECT status FROM incidents WHERE id = ?"
        row = await self._read(lambda conn: conn.execute(sql, (incident_id,)).fetchone())
        return None if row is None else str(row[0])

    async def apply(self, changes: Changes) -> Applied:
        return await self._write(lambda conn: _apply(conn, changes))

    # -- claims --------------------------------------------------------------------------------

    async def claims_in(self, statuses: tuple[str, ...]) -> list[Claim]:
        marks = ", ".join("?" for _ in statuses)
        sql = f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE status IN ({marks}) ORDER BY id"
        return await self._read(lambda conn: [_claim(r) for r in conn.execute(sql, statuses)])

    async def start_claim(self, claim_id: int, at: float, request: Mapping[str, Any]) -> bool:
        return await self._write(lambda conn: _start_claim(conn, claim_id, at, request))

    async def start_claim_if(
        self,
        claim: Claim,
        request: Mapping[str, Any],
        now: float,
        since: float,
        judge: Callable[[TargetHistory, list[MuteRow]], Verdict | None],
    ) -> tuple[Verdict | None, bool]:
        def op(conn: sqlite3.Connection) -> tuple[Verdict | None, bool]:
            verdict = judge(_target_history(conn, claim, since), _active_mutes(conn, now))
            if verdict is None or verdict.outcome != "allow":
                return verdict, False
            return verdict, _start_claim(conn, claim.id, now, request)

        return await self._write(op)

    async def record_attempt(self, attempt: Attempt) -> None:
        await self._write(lambda conn: _insert_attempt(conn, attempt))

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
        marks = ", ".join("?" for _ in from_statuses)
        sql = (
            f"UPDATE claims SET status = ?, detail = ?, hold_until = ? "
            f"WHERE id = ? AND status IN ({marks})"
        )

        def op(conn: sqlite3.Connection) -> bool:
            params = (status, detail, hold_until, claim_id, *from_statuses)
            if conn.execute(sql, params).rowcount != 1:
                return False
            if audit is not None:
                _insert_audit(conn, audit)
            return True

        return await self._write(op)

    async def claim(self, claim_id: int) -> Claim | None:
        sql = f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE id = ?"
        row = await self._read(lambda conn: conn.execute(sql, (claim_id,)).fetchone())
        return None if row is None else _claim(row)

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
        marks = ", ".join("?" for _ in from_statuses)
        sql = (
            f"UPDATE claims SET status = ?, detail = ?, finished_at = ? "
            f"WHERE id = ? AND status IN ({marks})"
        )

        def op(conn: sqlite3.Connection) -> AuditEntry | None:
            if last_attempt is not None:
                _insert_attempt(conn, last_attempt)
            if conn.execute(sql, (status, detail, at, claim_id, *from_statuses)).rowcount != 1:
                return None
            return _insert_audit(conn, audit)

        return await self._write(op)

    # -- verification --------------------------------------------------------------------------

    async def set_verification(
        self,
        claim_id: int,
        status: str,
        detail: str,
        next_at: float | None,
        deadline: float | None,
        audit: AuditEntry | None = None,
    ) -> AuditEntry | None:
        def op(conn: sqlite3.Connection) -> AuditEntry | None:
            conn.execute(
                "UPDATE claims SET verify_status = ?, verify_detail = ?, verify_next_at = ?, "
                "verify_deadline = ? WHERE id = ?",
                (status, detail, next_at, deadline, claim_id),
            )
            return None if audit is None else _insert_audit(conn, audit)

        return await self._write(op)

    async def claims_verifying(self) -> list[Claim]:
        sql = f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE verify_status = ? ORDER BY verify_next_at"
        return await self._read(
            lambda conn: [_claim(r) for r in conn.execute(sql, (VERIFY_PENDING,))]
        )

    # -- guardrail facts -----------------------------------------------------------------------

    async def recent_starts(self, rule: str, key: tuple[str, ...], since: float) -> list[float]:
        sql = (
            "SELECT a.starts_at FROM alert_instances a JOIN incidents i "
            "ON a.incident_id = i.id WHERE i.rule = ? AND i.incident_key = ? "
            "AND a.rule = ? AND a.starts_at >= ?"
        )
        params = (rule, json.dumps(list(key)), rule, since)
        return await self._read(lambda conn: [r[0] for r in conn.execute(sql, params)])

    async def incident_results(self, incident_id: int) -> dict[str, str]:
        """The output of each action that succeeded for this incident (the last one's, if an
        action ran in several tiers)."""
        sql = (  # + keeps SQLite on the incident's claims, not every succeeded claim
            "SELECT c.action, a.output FROM claims c JOIN attempts a ON a.claim_id = c.id "
            "WHERE c.incident_id = ? AND +c.status = ? AND a.ok = 1 ORDER BY a.id"
        )
        rows = await self._read(lambda conn: conn.execute(sql, (incident_id, SUCCEEDED)).fetchall())
        return {action: output for action, output in rows}

    async def incident_alert(self, incident_id: int) -> tuple[dict[str, str], dict[str, str]]:
        """The labels and annotations of the incident's latest alert."""
        sql = "SELECT labels, annotations FROM incidents WHERE id = ?"
        row = await self._read(lambda conn: conn.execute(sql, (incident_id,)).fetchone())
        return ({}, {}) if row is None else (json.loads(row[0]), json.loads(row[1]))

    # -- settings (the kill switch) ------------------------------------------------------------

    async def get_setting(self, name: str) -> Any:
        sql = "SELECT value FROM settings WHERE name = ?"
        row = await self._read(lambda conn: conn.execute(sql, (name,)).fetchone())
        return None if row is None else json.loads(row[0])

    async def put_setting(self, name: str, value: Any, at: float, audit: AuditEntry) -> AuditEntry:
        def op(conn: sqlite3.Connection) -> AuditEntry:
            _put_setting(conn, name, value, at)
            return _insert_audit(conn, audit)

        return await self._write(op)

    # -- mutes ---------------------------------------------------------------------------------

    async def add_mute(
        self, mute: MuteRow, audit: Callable[[MuteRow], AuditEntry]
    ) -> tuple[MuteRow, AuditEntry]:
        """Insert the mute and the audit line `audit` writes about it (it knows the mute's id)."""

        def op(conn: sqlite3.Connection) -> tuple[MuteRow, AuditEntry]:
            row = conn.execute(
                "INSERT INTO mutes (rule, target, matchers, reason, created_by, created_at, "
                f"until) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {_MUTE_COLUMNS}",
                (
                    mute.rule,
                    mute.target,
                    mute.matchers,
                    mute.reason,
                    mute.created_by,
                    mute.created_at,
                    mute.until,
                ),
            ).fetchone()
            added = MuteRow(*row)
            return added, _insert_audit(conn, audit(added))

        return await self._write(op)

    async def end_mute(self, mute_id: int, by: str, at: float, audit: AuditEntry) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE mutes SET ended_at = ?, ended_by = ? WHERE id = ? AND ended_at IS NULL "
                "AND until > ?",
                (at, by, mute_id, at),
            )
            if cur.rowcount != 1:
                return False
            _insert_audit(conn, audit)
            return True

        return await self._write(op)

    async def mutes(self, now: float, include_inactive: bool = False) -> list[MuteRow]:
        if not include_inactive:
            return await self._read(lambda conn: _active_mutes(conn, now))
        sql = f"SELECT {_MUTE_COLUMNS} FROM mutes ORDER BY id DESC"
        return await self._read(lambda conn: [MuteRow(*r) for r in conn.execute(sql)])

    # -- approvals -----------------------------------------------------------------------------

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

        def op(conn: sqlite3.Connection) -> Approval | None:
            cur = conn.execute(
                "UPDATE claims SET status = ?, detail = ? WHERE id = ? AND status = ?",
                (AWAITING_APPROVAL, "waiting for a human's approval", claim.id, CLAIMED),
            )
            if cur.rowcount != 1:
                return None
            row = conn.execute(
                "INSERT INTO approvals (claim_id, incident_id, rule, action, target, request, "
                "requested_at, expires_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending') "
                f"RETURNING {_APPROVAL_COLUMNS}",
                (
                    claim.id,
                    claim.incident_id,
                    claim.rule,
                    claim.action,
                    claim.target,
                    json.dumps(request),
                    at,
                    expires_at,
                ),
            ).fetchone()
            _insert_audit(conn, replace(audit, detail={**audit.detail, "approval_id": row[0]}))
            return _approval(row)

        return await self._write(op)

    async def decide_approval(
        self,
        approval_id: int,
        approved: bool,
        by: str,
        reason: str,
        at: float,
        audit: AuditEntry,
    ) -> tuple[Approval | None, str]:
        """Approve or deny a pending, unexpired approval. Returns (the approval after the
        decision, "") or (the approval as it stands or None, why it could not be decided)."""

        def op(conn: sqlite3.Connection) -> tuple[Approval | None, str]:
            row = conn.execute(
                f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE id = ?", (approval_id,)
            ).fetchone()
            if row is None:
                return None, f"no approval {approval_id}"
            current = _approval(row)
            if current.status != "pending":
                return current, f"approval {approval_id} is already {current.status}"
            if at >= current.expires_at:
                return current, f"approval {approval_id} expired at {iso(current.expires_at)}"
            status = "approved" if approved else "denied"
            conn.execute(
                "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, "
                "reason = ? WHERE id = ?",
                (status, by, at, reason, approval_id),
            )
            _set_claim_after_decision(conn, current.claim_id, approved, by, reason, at)
            # the stored line names the approval's incident: Slack updates that thread
            _insert_audit(
                conn,
                replace(
                    audit, incident_id=current.incident_id, rule=current.rule, action=current.action
                ),
            )
            return replace(current, status=status, decided_by=by, decided_at=at, reason=reason), ""

        return await self._write(op)

    async def expire_approvals(self, now: float) -> list[Approval]:
        """Expire every pending approval past its time; their claims are refused."""

        def op(conn: sqlite3.Connection) -> list[Approval]:
            rows = conn.execute(
                f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending' "
                "AND expires_at <= ?",
                (now,),
            ).fetchall()
            expired = []
            for row in rows:
                approval = _approval(row)
                conn.execute(
                    "UPDATE approvals SET status = 'expired', decided_at = ? WHERE id = ?",
                    (now, approval.id),
                )
                conn.execute(
                    "UPDATE claims SET status = ?, detail = ?, finished_at = ? WHERE id = ? "
                    "AND status = ?",
                    (
                        REFUSED,
                        f"approval: approval {approval.id} expired unanswered; an expired "
                        "approval never runs",
                        now,
                        approval.claim_id,
                        AWAITING_APPROVAL,
                    ),
                )
                expired.append(replace(approval, status="expired", decided_at=now))
            return expired

        return await self._write(op)

    async def pending_approvals(self) -> tuple[int, float | None]:
        """How many approvals wait, and when the first of them expires: every one of them, not
        a page of the newest (the gauge and the expiry timer must see them all)."""
        sql = "SELECT COUNT(*), MIN(expires_at) FROM approvals WHERE status = 'pending'"
        count, first = await self._read(lambda conn: conn.execute(sql).fetchone())
        return int(count), first

    async def count_incidents(self, status: str) -> int:
        sql = "SELECT COUNT(*) FROM incidents WHERE status = ?"
        return int(await self._read(lambda conn: conn.execute(sql, (status,)).fetchone()[0]))

    async def approvals(self, status: str | None = None) -> list[Approval]:
        sql = f"SELECT {_APPROVAL_COLUMNS} FROM approvals"
        params: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (status,)
        sql += " ORDER BY id DESC LIMIT 500"
        return await self._read(lambda conn: [_approval(r) for r in conn.execute(sql, params)])

    # -- circuit breakers ----------------------------------------------------------------------

    async def reset_circuit(self, target: str, by: str, at: float, audit: AuditEntry) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO circuit_resets (target, at, by_whom) VALUES (?, ?, ?)",
                (target, at, by),
            )
            _insert_audit(conn, audit)

        await self._write(op)

    async def target_failures(self, target: str) -> list[float]:
        return await self._read(lambda conn: _failures(conn, target))

    # -- rule identity -------------------------------------------------------------------------

    async def rename_rule(
        self, old: str, new: str, audit: Callable[[int], AuditEntry]
    ) -> AuditEntry | None:
        """Move what was recorded under a rule's previous name to its new name: incidents,
        alert instances, claims (the cooldown reads them), approvals and mutes. An open incident
        whose key is already open under the new name stays behind. The audit line, made from
        the number of incidents moved, is written only if anything moved."""

        def op(conn: sqlite3.Connection) -> AuditEntry | None:
            moved = _rename_rule(conn, old, new)
            return _insert_audit(conn, audit(moved)) if moved else None

        return await self._write(op)

    # -- Slack ---------------------------------------------------------------------------------

    async def audit_after(self, after: int, limit: int) -> list[AuditEntry]:
        sql = f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE id > ? ORDER BY id LIMIT ?"
        rows = await self._read(lambda conn: conn.execute(sql, (after, limit)).fetchall())
        return [_audit_entry(r) for r in rows]

    async def enqueue_slack(self, items: list[OutboxItem], cursor: int, at: float) -> None:
        """Queue messages and move the cursor past the audit lines they tell, atomically: each
        audit line becomes its messages exactly once, even across crashes."""

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO slack_outbox (audit_id, thread, channel, method, ref, parent, "
                "payload, status, next_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', "
                "?, ?)",
                [
                    (
                        i.audit_id,
                        i.thread,
                        i.channel,
                        i.method,
                        i.ref,
                        i.parent,
                        json.dumps(i.payload),
                        at,
                        at,
                    )
                    for i in items
                ],
            )
            _put_setting(conn, "slack_cursor", cursor, at)

        await self._write(op)

    async def outbox_due(self, now: float, limit: int) -> list[OutboxRow]:
        """The first pending message of each thread, if it is due: one at a time per thread
        keeps every thread in order."""
        sql = (
            f"SELECT {_OUTBOX_COLUMNS} FROM slack_outbox o WHERE status = 'pending' AND id = "
            "(SELECT MIN(id) FROM slack_outbox WHERE thread = o.thread AND status = 'pending') "
            "AND next_at <= ? ORDER BY id LIMIT ?"
        )
        rows = await self._read(lambda conn: conn.execute(sql, (now, limit)).fetchall())
        return [
            OutboxRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7], r[8])
            for r in rows
        ]

    async def outbox_done(
        self,
        row_id: int,
        status: str,
        at: float,
        error: str = "",
        sent: tuple[str, str, str] | None = None,
    ) -> None:
        """Mark a message sent (remembering (ref, channel, ts) for later updates) or failed."""

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE slack_outbox SET status = ?, sent_at = ?, error = ?, "
                "attempts = attempts + 1 WHERE id = ?",
                (status, at, error, row_id),
            )
            if sent is not None:
                conn.execute(
                    "INSERT INTO slack_messages (ref, channel, ts) VALUES (?, ?, ?) "
                    "ON CONFLICT (ref) DO UPDATE SET channel = excluded.channel, ts = excluded.ts",
                    sent,
                )

        await self._write(op)

    async def outbox_retry(self, row_id: int, next_at: float, error: str) -> None:
        sql = "UPDATE slack_outbox SET attempts = attempts + 1, next_at = ?, error = ? WHERE id = ?"
        await self._write(lambda conn: conn.execute(sql, (next_at, error, row_id)))

    async def outbox_stats(self) -> tuple[int, float | None]:
        """Pending messages, and when the earliest of them is due."""
        sql = "SELECT COUNT(*), MIN(next_at) FROM slack_outbox WHERE status = 'pending'"
        count, due = await self._read(lambda conn: conn.execute(sql).fetchone())
        return int(count), due

    async def slack_message(self, ref: str) -> tuple[str, str] | None:
        sql = "SELECT channel, ts FROM slack_messages WHERE ref = ?"
        row = await self._read(lambda conn: conn.execute(sql, (ref,)).fetchone())
        return None if row is None else (row[0], row[1])

    async def incident(self, incident_id: int) -> dict[str, Any] | None:
        sql = f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE id = ?"
        row = await self._read(lambda conn: conn.execute(sql, (incident_id,)).fetchone())
        return None if row is None else _incident_view(row)

    async def ack_incident(self, incident_id: int, by: str, at: float, audit: AuditEntry) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE incidents SET acked_by = ?, acked_at = ? WHERE id = ? AND status = 'open'",
                (by, at, incident_id),
            )
            if cur.rowcount != 1:
                return False
            _insert_audit(conn, audit)
            return True

        return await self._write(op)

    async def approval(self, approval_id: int) -> Approval | None:
        sql = f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE id = ?"
        row = await self._read(lambda conn: conn.execute(sql, (approval_id,)).fetchone())
        return None if row is None else _approval(row)

    # -- reading for people --------------------------------------------------------------------

    async def list_incidents(self, limit: int, before: int | None, status: str | None) -> Page:
        sql = (
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE (? IS NULL OR id < ?) "
            "AND (? IS NULL OR status = ?) ORDER BY id DESC LIMIT ?"
        )
        params = (before, before, status, status, limit + 1)
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return _page([_incident_view(r) for r in rows], limit)

    async def list_actions(self, limit: int, before: int | None) -> Page:
        sql = (
            f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE (? IS NULL OR id < ?) "
            "ORDER BY id DESC LIMIT ?"
        )
        rows = await self._read(
            lambda conn: conn.execute(sql, (before, before, limit + 1)).fetchall()
        )
        return _page([_claim_view(_claim(r)) for r in rows], limit)

    async def incident_record(self, incident_id: int) -> dict[str, Any] | None:
        """An incident with its claims (each with its attempts) and its audit trail, oldest
        first: everything /api/v1/incidents/{id} shows."""
        return await self._read(lambda conn: _incident_record(conn, incident_id))

    async def history(self, limit: int, before: int | None) -> Page:
        sql = (
            f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE (? IS NULL OR id < ?) "
            "ORDER BY id DESC LIMIT ?"
        )
        rows = await self._read(
            lambda conn: conn.execute(sql, (before, before, limit + 1)).fetchall()
        )
        return _page([_audit_view(r) for r in rows], limit)


# -- SQL helpers -------------------------------------------------------------------------------

_INCIDENT_COLUMNS = (
    "id, rule, incident_key, key_labels, status, tier, value, labels, "
    "annotations, opened_at, tier_at, updated_at, resolved_at, generator_url, external_url, "
    "acked_by, acked_at"
)
_OUTBOX_COLUMNS = "id, thread, channel, method, ref, parent, payload, attempts, created_at"
_CLAIM_COLUMNS = (
    "id, incident_id, step, action, kind, target, rule, idempotency_key, context, "
    "request, status, detail, attempts, claimed_at, started_at, finished_at, hold_until, "
    "verify_status, verify_detail, verify_next_at, verify_deadline"
)
_APPROVAL_COLUMNS = (
    "id, claim_id, incident_id, rule, action, target, request, requested_at, expires_at, "
    "status, decided_by, decided_at, reason"
)
_MUTE_COLUMNS = (
    "id, rule, target, matchers, reason, created_by, created_at, until, ended_at, ended_by"
)
_AUDIT_COLUMNS = "id, at, kind, event, incident_id, rule, tier, action, actor, message, detail"


_ATTEMPT_COLUMNS = "attempt, started_at, finished_at, ok, status_code, exit_code, detail, output"


def _incident_record(conn: sqlite3.Connection, incident_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE id = ?", (incident_id,)
    ).fetchone()
    if row is None:
        return None
    record = _incident_view(row)
    claims = conn.execute(
        f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE incident_id = ? ORDER BY id", (incident_id,)
    ).fetchall()
    record["claims"] = [_claim_view(_claim(c)) for c in claims]
    for claim in record["claims"]:
        attempts = conn.execute(
            f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE claim_id = ? ORDER BY id",
            (claim["id"],),
        )
        names = _ATTEMPT_COLUMNS.split(", ")
        claim["attempts"] = [_attempt_view(dict(zip(names, a, strict=True))) for a in attempts]
    audit = conn.execute(
        f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE incident_id = ? ORDER BY id", (incident_id,)
    ).fetchall()
    record["audit"] = [_audit_view(a) for a in audit]
    return record


def _attempt_view(a: dict[str, Any]) -> dict[str, Any]:
    return {
        **a,
        "ok": bool(a["ok"]),
        "started_at": iso(a["started_at"]),
        "finished_at": iso(a["finished_at"]),
    }


def _rename_rule(conn: sqlite3.Connection, old: str, new: str) -> int:
    """The number of incidents moved from `old` to `new`, with their dependants."""
    moved = conn.execute(
        "UPDATE incidents SET rule = ? WHERE rule = ? AND NOT (status = 'open' AND EXISTS ("
        "SELECT 1 FROM incidents n WHERE n.rule = ? AND n.status = 'open' "
        "AND n.incident_key = incidents.incident_key))",
        (new, old, new),
    ).rowcount
    conn.execute(
        "UPDATE alert_instances SET rule = ? WHERE rule = ? AND NOT EXISTS ("
        "SELECT 1 FROM alert_instances n WHERE n.rule = ? "
        "AND n.fingerprint = alert_instances.fingerprint "
        "AND n.starts_at = alert_instances.starts_at)",
        (new, old, new),
    )
    for table in ("claims", "approvals", "mutes"):
        conn.execute(f"UPDATE {table} SET rule = ? WHERE rule = ?", (new, old))
    return int(moved)


def _start_claim(
    conn: sqlite3.Connection, claim_id: int, at: float, request: Mapping[str, Any]
) -> bool:
    sql = "UPDATE claims SET status = ?, started_at = ?, request = ? WHERE id = ? AND status = ?"
    return conn.execute(sql, (RUNNING, at, json.dumps(request), claim_id, CLAIMED)).rowcount == 1


def _insert_attempt(conn: sqlite3.Connection, attempt: Attempt) -> None:
    conn.execute(
        "INSERT INTO attempts (claim_id, attempt, started_at, finished_at, ok, "
        "status_code, exit_code, detail, output) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            attempt.claim_id,
            attempt.attempt,
            attempt.started_at,
            attempt.finished_at,
            int(attempt.ok),
            attempt.status_code,
            attempt.exit_code,
            attempt.detail,
            attempt.output,
        ),
    )
    conn.execute("UPDATE claims SET attempts = ? WHERE id = ?", (attempt.attempt, attempt.claim_id))


def _active_mutes(conn: sqlite3.Connection, now: float) -> list[MuteRow]:
    sql = f"SELECT {_MUTE_COLUMNS} FROM mutes WHERE ended_at IS NULL AND until > ? ORDER BY id DESC"
    return [MuteRow(*r) for r in conn.execute(sql, (now,))]


def _target_history(conn: sqlite3.Connection, claim: Claim, since: float) -> TargetHistory:
    """Facts about `claim`'s rule, action and target: starts since `since` (budgets), the last
    start by another incident (cooldown), whether the target is busy, the target's failures since
    its last success or reset (circuit breaker), the claim's approval, its incident's status."""
    started = ", ".join(f"'{s}'" for s in STARTED)
    # Each read below must cost what this claim's history costs, not the whole claims table (it
    # runs before every action). A unary + keeps SQLite from using a column's index where the
    # planner, without statistics, would pick a far larger range (all of a target's claims).
    # cooldown: the same rule and incident key (the same problem, firing again), same target
    last_other = conn.execute(
        "SELECT MAX(c.started_at) FROM incidents i JOIN claims c ON c.incident_id = i.id "
        "WHERE i.incident_key = (SELECT incident_key FROM incidents WHERE id = ?) AND i.id != ? "
        f"AND +c.rule = ? AND +c.target = ? AND +c.status IN ({started})",
        (claim.incident_id, claim.incident_id, claim.rule, claim.target),
    ).fetchone()[0]
    starts = conn.execute(
        f"SELECT action, started_at FROM claims WHERE started_at >= ? AND +status IN ({started})",
        (since,),
    ).fetchall()
    busy = conn.execute(
        "SELECT 1 FROM claims WHERE target = ? AND status = ? AND id != ? LIMIT 1",
        (claim.target, RUNNING, claim.id),
    ).fetchone()
    row = conn.execute(
        f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE claim_id = ?", (claim.id,)
    ).fetchone()
    status = conn.execute("SELECT status FROM incidents WHERE id = ?", (claim.incident_id,))
    incident = status.fetchone()
    return TargetHistory(
        last_other_start=last_other,
        started_global=[t for _, t in starts],
        started_action=[t for a, t in starts if a == claim.action],
        target_busy=busy is not None,
        failures=_failures(conn, claim.target),
        approval=None if row is None else _approval(row),
        incident_status=None if incident is None else incident[0],
    )


def _failures(conn: sqlite3.Connection, target: str) -> list[float]:
    """Failed actions on the target after its last success and its last reset. A failed
    verification counts as a failure."""
    success = conn.execute(  # walks claims_target_status from the newest: stops at the first
        "SELECT finished_at FROM claims WHERE target = ? AND status = ? "
        "AND (verify_status IS NULL OR verify_status != ?) ORDER BY finished_at DESC LIMIT 1",
        (target, SUCCEEDED, VERIFY_FAILED),
    ).fetchone()
    last_success = None if success is None else success[0]
    last_reset = conn.execute(
        "SELECT MAX(at) FROM circuit_resets WHERE target = ?", (target,)
    ).fetchone()[0]
    after = max(last_success or 0.0, last_reset or 0.0)
    rows = conn.execute(
        "SELECT finished_at FROM claims WHERE target = ? AND status IN (?, ?) AND finished_at > ? "
        "AND (status = ? OR verify_status = ?) ORDER BY finished_at",
        (target, FAILED, SUCCEEDED, after, FAILED, VERIFY_FAILED),
    ).fetchall()
    return [r[0] for r in rows]


def _put_setting(conn: sqlite3.Connection, name: str, value: Any, at: float) -> None:
    conn.execute(
        "INSERT INTO settings (name, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (name, json.dumps(value), at),
    )


def _set_claim_after_decision(
    conn: sqlite3.Connection, claim_id: int, approved: bool, by: str, reason: str, at: float
) -> None:
    if approved:
        conn.execute(
            "UPDATE claims SET status = ?, detail = ? WHERE id = ? AND status = ?",
            (CLAIMED, f"approved by {by}", claim_id, AWAITING_APPROVAL),
        )
        return
    because = f": {reason}" if reason else ""
    conn.execute(
        "UPDATE claims SET status = ?, detail = ?, finished_at = ? WHERE id = ? AND status = ?",
        (REFUSED, f"approval: denied by {by}{because}", at, claim_id, AWAITING_APPROVAL),
    )


def _approval(r: Iterable[Any]) -> Approval:
    row = list(r)
    row[6] = json.loads(row[6])
    return Approval(*row)


def _load_open_incidents(conn: sqlite3.Connection) -> list[Incident]:
    instances: dict[int, dict[tuple[str, float], float | None]] = {}
    for incident_id, fingerprint, starts_at, value in conn.execute(
        "SELECT incident_id, fingerprint, starts_at, value FROM alert_instances "
        "WHERE status = 'firing'"
    ):
        instances.setdefault(incident_id, {})[(fingerprint, starts_at)] = value
    return [
        Incident(
            id=r[0],
            rule=sys.intern(r[1]),  # one string per rule and status, not one per row
            key=tuple(json.loads(r[2])),
            status=sys.intern(r[4]),
            tier=r[5],
            value=r[6],
            opened_at=r[9],
            tier_at=r[10],
            updated_at=r[11],
            resolved_at=r[12],
            acked=r[15] is not None,
            instances=instances.get(r[0], {}),
        )
        for r in conn.execute(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE status = 'open' ORDER BY id"
        )
    ]


def _apply(conn: sqlite3.Connection, changes: Changes) -> Applied:
    ids: dict[int, int] = {}
    for write in changes.incidents:
        incident = write.incident
        if incident.id < 0 and incident.id not in ids:
            ids[incident.id] = _insert_incident(conn, write)
        else:
            _update_incident(conn, write, ids.get(incident.id, incident.id))

    def real(incident_id: int) -> int:
        return ids.get(incident_id, incident_id)

    for inst in changes.instances:
        conn.execute(
            "INSERT INTO alert_instances (rule, fingerprint, starts_at, incident_id, status, "
            "value, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (rule, fingerprint, starts_at) DO UPDATE SET status = excluded.status, "
            "value = excluded.value, last_seen = excluded.last_seen",
            (
                inst.rule,
                inst.fingerprint,
                inst.starts_at,
                real(inst.incident_id),
                inst.status,
                inst.value,
                inst.at,
                inst.at,
            ),
        )
    claims = []
    for new in changes.claims:
        row = conn.execute(
            "INSERT INTO claims (incident_id, step, action, kind, target, rule, idempotency_key, "
            "context, status, claimed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            f"ON CONFLICT (incident_id, step, action) DO NOTHING RETURNING {_CLAIM_COLUMNS}",
            (
                real(new.incident_id),
                new.step,
                new.action,
                new.kind,
                new.target,
                new.rule,
                new.idempotency_key,
                json.dumps(new.context),
                CLAIMED,
                new.at,
            ),
        ).fetchone()
        if row is not None:
            claims.append(_claim(row))
    audit = [_insert_audit(conn, _with_incident(e, real)) for e in changes.audit]
    resolved = [w.incident.id for w in changes.incidents if w.incident.status == "resolved"]
    audit += _cancel_approvals(conn, [real(i) for i in resolved], changes.at)
    conn.executemany(
        "UPDATE journal SET processed_at = ? WHERE id = ?",
        [(changes.at, jid) for jid in changes.journal_ids],
    )
    return Applied(ids, claims, audit)


CANCELLED_BECAUSE = (
    "the incident resolved before anyone approved; a firing action never runs for a resolved alert"
)


def _cancel_approvals(
    conn: sqlite3.Connection, incident_ids: list[int], at: float
) -> list[AuditEntry]:
    """The incidents resolved: their pending approvals of firing actions are cancelled and those
    claims skipped, so that nobody is asked to approve what can no longer run. An undo's or a
    person's request keeps its approval: it may run after the resolution."""
    if not incident_ids:
        return []
    marks = ", ".join("?" for _ in incident_ids)
    steps = ", ".join("?" for _ in OUTLIVE_RESOLUTION)
    rows = conn.execute(
        f"SELECT a.id, a.claim_id, a.incident_id, a.rule, a.action, c.step FROM approvals a "
        f"JOIN claims c ON c.id = a.claim_id WHERE a.incident_id IN ({marks}) "
        f"AND a.status = 'pending' AND c.status = ? AND c.step NOT IN ({steps})",
        (*incident_ids, AWAITING_APPROVAL, *OUTLIVE_RESOLUTION),
    ).fetchall()
    entries = []
    for approval_id, claim_id, incident_id, rule, action, step in rows:
        conn.execute(
            "UPDATE approvals SET status = 'cancelled', decided_by = 'remediator', "
            "decided_at = ?, reason = ? WHERE id = ?",
            (at, CANCELLED_BECAUSE, approval_id),
        )
        conn.execute(
            "UPDATE claims SET status = ?, detail = ?, finished_at = ? WHERE id = ?",
            (SKIPPED, f"approval {approval_id} cancelled: {CANCELLED_BECAUSE}", at, claim_id),
        )
        entry = AuditEntry(
            kind="action",
            event="approval_cancelled",
            message=f"Approval {approval_id} for {action} cancelled: {CANCELLED_BECAUSE}",
            at=at,
            incident_id=incident_id,
            rule=rule,
            tier=step,
            action=action,
            detail={"approval_id": approval_id, "claim_id": claim_id},
        )
        entries.append(_insert_audit(conn, entry))
    return entries


def _insert_incident(conn: sqlite3.Connection, write: IncidentWrite) -> int:
    i = write.incident
    row = conn.execute(
        "INSERT INTO incidents (rule, incident_key, key_labels, status, tier, value, labels, "
        "annotations, opened_at, tier_at, updated_at, resolved_at, generator_url, external_url) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            i.rule,
            json.dumps(list(i.key)),
            json.dumps(dict(write.key_labels)),
            i.status,
            i.tier,
            i.value,
            json.dumps(dict(write.labels or {})),
            json.dumps(dict(write.annotations or {})),
            i.opened_at,
            i.tier_at,
            i.updated_at,
            i.resolved_at,
            write.generator_url or "",
            write.external_url or "",
        ),
    ).fetchone()
    return int(row[0])


def _update_incident(conn: sqlite3.Connection, write: IncidentWrite, incident_id: int) -> None:
    i = write.incident
    conn.execute(
        "UPDATE incidents SET status = ?, tier = ?, value = ?, tier_at = ?, updated_at = ?, "
        "resolved_at = ?, labels = COALESCE(?, labels), annotations = COALESCE(?, annotations), "
        "generator_url = COALESCE(?, generator_url), external_url = COALESCE(?, external_url) "
        "WHERE id = ?",
        (
            i.status,
            i.tier,
            i.value,
            i.tier_at,
            i.updated_at,
            i.resolved_at,
            None if write.labels is None else json.dumps(dict(write.labels)),
            None if write.annotations is None else json.dumps(dict(write.annotations)),
            write.generator_url or None,
            write.external_url or None,
            incident_id,
        ),
    )


def _insert_audit(conn: sqlite3.Connection, e: AuditEntry) -> AuditEntry:
    row = conn.execute(
        "INSERT INTO audit (at, kind, event, incident_id, rule, tier, action, actor, message, "
        "detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
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
        ),
    ).fetchone()
    return _replace_audit(e, id=int(row[0]))


def _with_incident(e: AuditEntry, real: Callable[[int], int]) -> AuditEntry:
    return e if e.incident_id is None else _replace_audit(e, incident_id=real(e.incident_id))


def _replace_audit(e: AuditEntry, **changes: Any) -> AuditEntry:
    return replace(e, **changes)


def _claim(r: Iterable[Any]) -> Claim:
    row = list(r)
    row[8] = json.loads(row[8])
    row[9] = None if row[9] is None else json.loads(row[9])
    return Claim(*row)


def _claim_view(c: Claim) -> dict[str, Any]:
    return {
        "id": c.id,
        "incident_id": c.incident_id,
        "rule": c.rule,
        "step": c.step,
        "action": c.action,
        "kind": c.kind,
        "target": c.target,
        "status": c.status,
        "detail": c.detail,
        "attempts": c.attempts,
        "request": c.request,
        "idempotency_key": c.idempotency_key,
        "context": c.context,
        "claimed_at": iso(c.claimed_at),
        "started_at": iso(c.started_at),
        "finished_at": iso(c.finished_at),
        "hold_until": iso(c.hold_until),
        "verify_status": c.verify_status,
        "verify_detail": c.verify_detail,
        "verify_deadline": iso(c.verify_deadline),
    }


def _incident_view(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "id": r[0],
        "rule": r[1],
        "key": json.loads(r[3]),
        "status": r[4],
        "tier": r[5],
        "value": r[6],
        "labels": json.loads(r[7]),
        "annotations": json.loads(r[8]),
        "opened_at": iso(r[9]),
        "tier_at": iso(r[10]),
        "updated_at": iso(r[11]),
        "resolved_at": iso(r[12]),
        "generator_url": r[13],
        "external_url": r[14],
        "acked_by": r[15],
        "acked_at": iso(r[16]),
    }


def _audit_entry(r: tuple[Any, ...]) -> AuditEntry:
    return AuditEntry(
        kind=r[2],
        event=r[3],
        message=r[9],
        at=r[1],
        incident_id=r[4],
        rule=r[5],
        tier=r[6],
        action=r[7],
        actor=r[8],
        detail=json.loads(r[10]),
        id=r[0],
    )


def _audit_view(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "id": r[0],
        "at": iso(r[1]),
        "kind": r[2],
        "event": r[3],
        "incident_id": r[4],
        "rule": r[5],
        "tier": r[6],
        "action": r[7],
        "actor": r[8],
        "message": r[9],
        "detail": json.loads(r[10]),
    }


def _page(items: list[dict[str, Any]], limit: int) -> Page:
    more = len(items) > limit
    items = items[:limit]
    return Page(items, items[-1]["id"] if more and items else None)
