"""The PostgreSQL backend, on asyncpg: the same SQL and migrations as SQLite's, in PostgreSQL's
dialect (dialect.py).

Writes go through one writer task per process, as on SQLite: it takes every write queued since
its last commit and runs them in one transaction, each in its own savepoint, then commits once
(group commit; journal appends first, in a transaction of their own). Every commit is durable
(synchronous_commit=on, set on each connection). What must hold across processes holds by
PostgreSQL's locks: start_claim_if takes a transaction-level advisory lock (dialect.LOCK_STARTS),
claims and open incidents are unique rows. Reads use the pool's other connections."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg

from remediator.errors import StoreConflict, StoreError, StoreUnavailable
from remediator.store.claims import ClaimsSQL
from remediator.store.controls import ControlsSQL
from remediator.store.dialect import POSTGRES, Dialect
from remediator.store.incidents import IncidentsSQL
from remediator.store.journal import JournalSQL
from remediator.store.migrate import migrate
from remediator.store.outbox import OutboxSQL
from remediator.store.pages import PagesSQL
from remediator.store.reads import ReadsSQL
from remediator.store.retention import RetentionSQL
from remediator.store.settings import PostgresSettings
from remediator.store.sql import Op, Row

T = TypeVar("T")
log = logging.getLogger(__name__)
_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.QueryCanceledError,  # statement_timeout
)


def store_error(e: BaseException) -> StoreError:
    """asyncpg's error as ours. Its message names the SQL problem, never the DSN."""
    if isinstance(e, asyncpg.IntegrityConstraintViolationError):
        return StoreConflict(str(e))
    if isinstance(e, _UNAVAILABLE):
        return StoreUnavailable(f"PostgreSQL unavailable: {type(e).__name__}: {e}")
    return StoreError(f"PostgreSQL: {e}")


class PostgresTx:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @property
    def dialect(self) -> Dialect:
        return POSTGRES

    async def execute(self, sql: str, *args: Any) -> int:
        try:
            status: str = await self._conn.execute(POSTGRES.sql(sql), *args)
        except (asyncpg.PostgresError, *_UNAVAILABLE) as e:
            raise store_error(e) from e
        count = status.rsplit(" ", 1)[-1]
        return int(count) if count.isdigit() else 0

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        rows = list(args)
        if not rows:
            return
        try:
            await self._conn.executemany(POSTGRES.sql(sql), rows)
        except (asyncpg.PostgresError, *_UNAVAILABLE) as e:
            raise store_error(e) from e

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        try:
            found: list[Row] = await self._conn.fetch(POSTGRES.sql(sql), *args)
        except (asyncpg.PostgresError, *_UNAVAILABLE) as e:
            raise store_error(e) from e
        return found

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        try:
            row: Row | None = await self._conn.fetchrow(POSTGRES.sql(sql), *args)
        except (asyncpg.PostgresError, *_UNAVAILABLE) as e:
            raise store_error(e) from e
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else row[0]


@dataclass(slots=True)
class _Job:
    op: Op[Any]
    future: asyncio.Future[Any]
    urgent: bool


_Result = tuple[_Job, Any, BaseException | None]


class PostgresStore(
    JournalSQL,
    IncidentsSQL,
    ClaimsSQL,
    ControlsSQL,
    OutboxSQL,
    PagesSQL,
    ReadsSQL,
    RetentionSQL,
):
    """Every store protocol on one PostgreSQL database."""

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None
        self._jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.commits = 0

    async def open(self) -> None:
        s = self.settings
        try:
            self._pool = await asyncpg.create_pool(
                s.dsn.reveal(),
                min_size=1,
                max_size=s.pool_size,
                timeout=s.connect_timeout,
                server_settings={
                    "application_name": s.application_name,
                    "synchronous_commit": "on",
                    "statement_timeout": str(int(s.statement_timeout * 1000)),
                },
            )
            async with self._pool.acquire() as conn, conn.transaction():
                applied = await migrate(PostgresTx(conn))
        except StoreError:
            await self._close_pool()
            raise
        except Exception as e:  # asyncpg's, or a DSN it cannot parse: never its text
            await self._close_pool()
            problem = type(e).__name__ if isinstance(e, ValueError) else str(store_error(e))
            raise StoreUnavailable(
                _scrub(f"cannot open the PostgreSQL store: {problem}", s.dsn.reveal())
            ) from None
        if applied:
            log.info("PostgreSQL store: applied migrations %s", applied)
        self._jobs = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name="remediator-postgres-writer")

    async def close(self) -> None:
        if self._writer is not None:
            self._jobs.put_nowait(None)
            await self._writer
            self._writer = None
        await self._close_pool()

    async def ping(self) -> None:
        await self._read(lambda tx: tx.fetchval("SELECT 1"))

    async def _close_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _write(self, op: Op[T], urgent: bool = False) -> T:
        if self._writer is None or self._writer.done():
            raise StoreUnavailable("the store is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put_nowait(_Job(op, future, urgent))
        return await future

    async def _read(self, op: Op[T]) -> T:
        if self._pool is None:
            raise StoreUnavailable("the store is not open")
        try:
            async with self._pool.acquire() as conn:
                return await op(PostgresTx(conn))
        except (asyncpg.PostgresError, *_UNAVAILABLE) as e:
            raise store_error(e) from e

    async def _write_loop(self) -> None:
        while (batch := await self._next_batch()) is not None:
            urgent = [job for job in batch if job.urgent]
            if urgent and len(urgent) < len(batch):
                await self._commit(urgent)  # an acknowledgement waits for its commit only
                batch = [job for job in batch if not job.urgent]
            await self._commit(batch)

    async def _next_batch(self) -> list[_Job] | None:
        first = await self._jobs.get()
        if first is None:
            return None
        batch = [first]
        while not self._jobs.empty():
            job = self._jobs.get_nowait()
            if job is None:
                self._jobs.put_nowait(None)  # finish this batch, then stop
                break
            batch.append(job)
        return batch

    async def _commit(self, batch: list[_Job]) -> None:
        """One transaction for the batch. A job that fails rolls it back; the batch then runs
        again with a savepoint per job, so that only the failing job fails (its neighbours'
        ops are pure but for the database, so running them again is safe)."""
        results = await self._transaction(batch, savepoints=False)
        if len(batch) > 1 and any(error is not None for _, _, error in results):
            results = await self._transaction(batch, savepoints=True)
        for job, result, error in results:
            if job.future.done():
                continue
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)

    async def _transaction(self, batch: list[_Job], savepoints: bool) -> list[_Result]:
        assert self._pool is not None
        results: list[_Result] = []
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                tx = PostgresTx(conn)
                for job in batch:
                    results.append(await _run_job(conn, tx, job, savepoints))
                    if results[-1][2] is not None and not savepoints:
                        raise _Abandon
            self.commits += 1
            return results
        except _Abandon:
            return results + [(job, None, _ABANDONED) for job in batch[len(results) :]]
        except Exception as e:  # the batch failed: every job in it did
            failure = store_error(e) if isinstance(e, (asyncpg.PostgresError, *_UNAVAILABLE)) else e
            return [(job, None, failure) for job in batch]


async def _run_job(conn: asyncpg.Connection, tx: PostgresTx, job: _Job, savepoint: bool) -> _Result:
    """Run one job, in a savepoint if asked, so that its failure fails only itself."""
    try:
        if not savepoint:
            return job, await job.op(tx), None
        async with conn.transaction():
            return job, await job.op(tx), None
    except Exception as e:  # one job's failure must not fail the batch
        return job, None, e


class _Abandon(Exception):
    """A job failed in a batch without savepoints: roll back, run the batch again with them."""


_ABANDONED = StoreError("the batch was rolled back")


def _scrub(message: str, dsn: str) -> str:
    """The message without the DSN or its password, whatever a driver put in it."""
    password = urlsplit(dsn).password
    for secret in (dsn, password):
        if secret:
            message = message.replace(secret, "***")
    return message
