"""The embedded store: one SQLite file in WAL mode, commits durable at synchronous=FULL.

All writes go through one writer thread. It takes every write queued since its last commit and
runs them in one transaction, each in its own savepoint, then commits once: concurrent webhooks
share one fsync (group commit), and one failing write does not fail its neighbours. Reads run on a
second connection in their own thread and never wait for a commit.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from remediator.clock import iso
from remediator.errors import StoreError
from remediator.incidents import Incident
from remediator.store import migrations, statements
from remediator.store.records import (
    CLAIMED,
    INTERRUPTED,
    RUNNING,
    SUCCEEDED,
    Applied,
    Attempt,
    AuditEntry,
    Changes,
    Claim,
    IncidentWrite,
    Page,
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


class _Writer(threading.Thread):
    def __init__(self, path: Path) -> None:
        super().__init__(name="remediator-sqlite-writer", daemon=True)
        self.path = path
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.commits = 0
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def submit(self, op: Op) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.jobs.put(_Job(op, future, loop))
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
        for job in batch:
            job.loop.call_soon_threadsafe(_settle_all, [o for o in outcomes if o[0] is job])


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


class SqliteStore:
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

    async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise StoreError("the store is not open")
        result: T = await self._writer.submit(op)
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

        return await self._write(op)

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
        sql = "SELECT DISTINCT action FROM claims WHERE incident_id = ? AND status IN (?, ?)"
        return await self._read(
            lambda conn: {r[0] for r in conn.execute(sql, (incident_id, SUCCEEDED, INTERRUPTED))}
        )

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
        sql = (
            "UPDATE claims SET status = ?, started_at = ?, request = ? WHERE id = ? AND status = ?"
        )
        params = (RUNNING, at, json.dumps(request), claim_id, CLAIMED)
        return await self._write(lambda conn: conn.execute(sql, params).rowcount == 1)

    async def record_attempt(self, attempt: Attempt) -> None:
        def op(conn: sqlite3.Connection) -> None:
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
            conn.execute(
                "UPDATE claims SET attempts = ? WHERE id = ?", (attempt.attempt, attempt.claim_id)
            )

        await self._write(op)

    async def finish_claim(
        self,
        claim_id: int,
        status: str,
        detail: str,
        at: float,
        audit: AuditEntry,
        from_statuses: tuple[str, ...] = (CLAIMED, RUNNING),
    ) -> AuditEntry | None:
        marks = ", ".join("?" for _ in from_statuses)
        sql = (
            f"UPDATE claims SET status = ?, detail = ?, finished_at = ? "
            f"WHERE id = ? AND status IN ({marks})"
        )

        def op(conn: sqlite3.Connection) -> AuditEntry | None:
            if conn.execute(sql, (status, detail, at, claim_id, *from_statuses)).rowcount != 1:
                return None
            return _insert_audit(conn, audit)

        return await self._write(op)

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
    "annotations, opened_at, tier_at, updated_at, resolved_at"
)
_CLAIM_COLUMNS = (
    "id, incident_id, step, action, kind, target, rule, idempotency_key, context, "
    "request, status, detail, attempts, claimed_at, started_at, finished_at"
)
_AUDIT_COLUMNS = "id, at, kind, event, incident_id, rule, tier, action, actor, message, detail"


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
            rule=r[1],
            key=tuple(json.loads(r[2])),
            status=r[4],
            tier=r[5],
            value=r[6],
            opened_at=r[9],
            tier_at=r[10],
            updated_at=r[11],
            resolved_at=r[12],
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
    conn.executemany(
        "UPDATE journal SET processed_at = ? WHERE id = ?",
        [(changes.at, jid) for jid in changes.journal_ids],
    )
    return Applied(ids, claims, audit)


def _insert_incident(conn: sqlite3.Connection, write: IncidentWrite) -> int:
    i = write.incident
    row = conn.execute(
        "INSERT INTO incidents (rule, incident_key, key_labels, status, tier, value, labels, "
        "annotations, opened_at, tier_at, updated_at, resolved_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
        ),
    ).fetchone()
    return int(row[0])


def _update_incident(conn: sqlite3.Connection, write: IncidentWrite, incident_id: int) -> None:
    i = write.incident
    conn.execute(
        "UPDATE incidents SET status = ?, tier = ?, value = ?, tier_at = ?, updated_at = ?, "
        "resolved_at = ?, labels = COALESCE(?, labels), annotations = COALESCE(?, annotations) "
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
    from dataclasses import replace

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
    }


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
