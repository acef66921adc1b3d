"""The embedded backend: one SQLite file in WAL mode, commits durable at synchronous=FULL.

All writes go through one writer thread. It takes every write queued since its last commit and
runs them in one transaction, each in its own savepoint, then commits once: concurrent webhooks
share one fsync (group commit), and one failing write does not fail its neighbours. Journal
appends queued with other writes are committed first, in a transaction of their own: a webhook's
acknowledgement does not wait for an engine batch. A lazy write (an action's outcome: nobody
answers or acts on its commit) waits up to LINGER for another write to commit with, rather than
costing a commit of its own. A commit of relaxed writes only (what is decided again, or harmlessly
redone, if a power cut loses it) runs at synchronous=NORMAL, without an fsync: the WAL is
sequential, so the next commit at FULL makes it durable too, and a power cut loses at most a
suffix of relaxed commits; any other commit runs at FULL. Reads run on a second connection in
their own thread and never wait for a commit; the engine's look-up before each batch, a few
indexed rows, reads in place on a third, the event loop's (_peek). One process owns the file
(lock.py)."""

from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from remediator.errors import StoreConflict, StoreError, StoreUnavailable
from remediator.store.claims import ClaimsSQL
from remediator.store.controls import ControlsSQL
from remediator.store.dialect import SQLITE, Dialect
from remediator.store.finishes import FinishesSQL
from remediator.store.incidents import IncidentsSQL
from remediator.store.journal import JournalSQL
from remediator.store.leadership import LeadershipSQL
from remediator.store.lock import InstanceLock
from remediator.store.migrate import migrate
from remediator.store.outbox import OutboxSQL
from remediator.store.pages import PagesSQL
from remediator.store.reads import ReadsSQL
from remediator.store.retention import RetentionSQL
from remediator.store.sql import Op, Row, run_sync
from remediator.store.starts import StartsSQL

T = TypeVar("T")

LINGER = 0.005  # the longest a lazy write waits for company: at 200 notifications/s, one appears
LAZY_WITH_URGENT = 16  # lazy writes that may join an acknowledgement's commit (~0.1 ms each)


def private(path: Path) -> None:
    """The state directory (created 0700) and the database file (0600: it holds alerts, the
    audit and Slack references); SQLite gives its -wal and -shm files the database's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


def store_error(e: sqlite3.Error) -> StoreError:
    if isinstance(e, sqlite3.IntegrityError):
        return StoreConflict(str(e))
    if isinstance(e, sqlite3.OperationalError) and (
        "locked" in str(e) or "unable to open" in str(e)
    ):
        return StoreUnavailable(str(e))
    return StoreError(str(e))


class SqliteTx:
    """A Tx on a blocking connection: its awaits never suspend (sql.run_sync drives them)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def dialect(self) -> Dialect:
        return SQLITE

    def _run(self, sql: str, args: Sequence[Any]) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, args)
        except sqlite3.Error as e:
            raise store_error(e) from e

    async def execute(self, sql: str, *args: Any) -> int:
        return self._run(sql, args).rowcount

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        try:
            self._conn.executemany(sql, args)
        except sqlite3.Error as e:
            raise store_error(e) from e

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return self._run(sql, args).fetchall()

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = self._run(sql, args).fetchone()
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = self._run(sql, args).fetchone()
        return None if row is None else row[0]


@dataclass(slots=True)
class _Job:
    op: Op[Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    urgent: bool = False  # someone is waiting for this commit to answer (a journal append)
    lazy: bool = False  # nobody waits on this commit to answer or act: it may wait for company
    queued: float = 0.0  # time.monotonic() when submitted
    relaxed: bool = False  # decided again or harmlessly redone if lost: may commit without fsync


Outcome = tuple[_Job, Any, BaseException | None]


class _Writer(threading.Thread):
    def __init__(self, path: Path) -> None:
        super().__init__(name="remediator-sqlite-writer", daemon=True)
        self.path = path
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.commits = 0
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.relaxed = False  # the connection's synchronous: NORMAL (True) or FULL

    def submit(
        self, op: Op[Any], urgent: bool = False, lazy: bool = False, relaxed: bool = False
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        job = _Job(op, future, loop, urgent, lazy and not urgent, time.monotonic(), relaxed)
        self.jobs.put(job)
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
                for group in _commit_groups(batch):
                    self._commit(conn, group)
        finally:
            conn.close()

    def _next_batch(self) -> list[_Job] | None:
        """Every write queued; if they are all lazy, and whatever came within LINGER of the
        first of them."""
        first = self.jobs.get()
        if first is None:
            return None
        batch = [first]
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                if not all(job.lazy for job in batch):
                    return batch
                wait = batch[0].queued + LINGER - time.monotonic()
                if wait <= 0:
                    return batch
                try:
                    job = self.jobs.get(timeout=wait)
                except queue.Empty:
                    return batch
            if job is None:
                self.jobs.put(None)  # finish this batch, then stop
                return batch
            batch.append(job)

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        outcomes: list[Outcome] = []
        tx = SqliteTx(conn)
        try:
            relaxed = all(job.relaxed for job in batch)
            if relaxed != self.relaxed:
                conn.execute(f"PRAGMA synchronous={'NORMAL' if relaxed else 'FULL'}")
                self.relaxed = relaxed
            conn.execute("BEGIN IMMEDIATE")
            if len(batch) == 1:  # its failure rolls back the transaction: no savepoint needed
                outcomes = [_run_alone(conn, tx, batch[0])]
            else:
                outcomes = [_run_in_savepoint(conn, tx, job) for job in batch]
            if conn.in_transaction:
                conn.execute("COMMIT")
                self.commits += 1
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = store_error(e)
            outcomes = [(job, None, failure) for job in batch]
        # one wake-up per event loop for the whole batch, not one per job
        by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].loop, []).append(outcome)
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(_settle_all, settled)


def _commit_groups(batch: list[_Job]) -> list[list[_Job]]:
    """The transactions a batch commits in, in order. An acknowledgement waits for its commit,
    not also for an engine batch's: journal appends queued with other writes commit first, on
    their own, but for a few lazy writes, which cost less than a commit of their own."""
    urgent = [job for job in batch if job.urgent]
    if not urgent or len(urgent) == len(batch):
        return [batch]
    others = [job for job in batch if not job.urgent]
    if all(job.lazy for job in others) and len(others) <= LAZY_WITH_URGENT:
        return [batch]
    return [urgent, others]


def _run_alone(conn: sqlite3.Connection, tx: SqliteTx, job: _Job) -> Outcome:
    """The only job of its transaction, which its failure rolls back."""
    if job.future.cancelled():
        return job, None, None  # as in _run_in_savepoint
    try:
        return job, run_sync(job.op(tx)), None
    except Exception as e:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return job, None, e


def _run_in_savepoint(conn: sqlite3.Connection, tx: SqliteTx, job: _Job) -> Outcome:
    if job.future.cancelled():
        # its caller gave up before it ran (a webhook past journal_timeout answered 503, say):
        # not run, so what was refused is not stored behind the caller's back. Read from this
        # thread: a cancellation is never undone, and one that lands just after this look only
        # means the write is kept, as if it had finished first.
        return job, None, None
    conn.execute("SAVEPOINT job")
    try:
        result = run_sync(job.op(tx))
    except Exception as e:  # one job's failure must not fail the batch
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        return job, None, e
    conn.execute("RELEASE job")
    return job, result, None


def _settle_all(outcomes: list[Outcome]) -> None:
    for job, result, error in outcomes:
        if job.future.done():
            continue
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)


class SqliteStore(
    JournalSQL,
    IncidentsSQL,
    ClaimsSQL,
    ControlsSQL,
    OutboxSQL,
    PagesSQL,
    ReadsSQL,
    RetentionSQL,
    LeadershipSQL,
    StartsSQL,
    FinishesSQL,
):
    """Every store protocol on one SQLite file. `exclusive`: own the file (the daemon); a
    reader beside it (the CLI's history) opens it without the lock."""

    def __init__(self, path: Path, exclusive: bool = True) -> None:
        self.path = path
        self._lock = InstanceLock(path) if exclusive else None
        self._writer: _Writer | None = None
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="remediator-sqlite-reader")
        self._read_conn: sqlite3.Connection | None = None
        self._peek_conn: sqlite3.Connection | None = None  # the event loop's own (_peek)

    @property
    def commits(self) -> int:
        """Transactions committed so far (group commit makes this smaller than the writes)."""
        return self._writer.commits if self._writer else 0

    async def open(self) -> None:
        try:
            private(self.path)
        except OSError as e:
            raise StoreUnavailable(f"cannot open {self.path}: {e}") from e
        if self._lock is not None:
            self._lock.acquire()
        try:
            await asyncio.to_thread(self._migrate)
        except (OSError, StoreError, sqlite3.Error) as e:
            self._release()
            raise StoreUnavailable(f"cannot open {self.path}: {e}") from e
        self._writer = _Writer(self.path)
        self._writer.start()
        await asyncio.to_thread(self._writer.ready.wait)
        if self._writer.error is not None:
            self._release()
            raise StoreUnavailable(f"cannot open {self.path}: {self._writer.error}")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.jobs.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        await asyncio.get_running_loop().run_in_executor(self._reader, self._close_reader)
        if self._peek_conn is not None:
            self._peek_conn.close()
            self._peek_conn = None
        self._reader.shutdown(wait=True)
        self._release()

    async def ping(self) -> None:
        await self._read(lambda tx: tx.fetchval("SELECT 1"))

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def _close_reader(self) -> None:
        if self._read_conn is not None:
            self._read_conn.close()
            self._read_conn = None

    def _migrate(self) -> None:
        conn = connect(self.path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            run_sync(migrate(SqliteTx(conn)))
            conn.execute("COMMIT")
        finally:
            conn.close()

    async def _write(
        self,
        op: Op[T],
        urgent: bool = False,
        serial: bool = False,
        lazy: bool = False,
        relaxed: bool = False,
    ) -> T:
        if self._writer is None:
            raise StoreUnavailable("the store is not open")
        result: T = await self._writer.submit(op, urgent, lazy, relaxed)
        return result

    async def _read(self, op: Op[T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._with_read_conn, op)

    async def _peek(self, op: Op[T]) -> T:
        """In place, on the event loop's own connection: in WAL mode a read waits for no
        commit, and a few indexed rows cost less than a hand-off to the reader thread and back
        (two loop iterations and two thread switches on the path of every new incident)."""
        try:
            if self._peek_conn is None:
                self._peek_conn = connect(self.path)
            return run_sync(op(SqliteTx(self._peek_conn)))
        except sqlite3.Error as e:
            raise store_error(e) from e

    def _with_read_conn(self, op: Op[T]) -> T:
        try:
            if self._read_conn is None:
                self._read_conn = connect(self.path)
            return run_sync(op(SqliteTx(self._read_conn)))
        except sqlite3.Error as e:
            raise store_error(e) from e
