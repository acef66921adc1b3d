"""The PostgreSQL backend, on asyncpg: the same SQL and migrations as SQLite's, in PostgreSQL's
dialect (dialect.py).

Journal appends go through one writer task, as on SQLite: it takes every append queued since its
last commit and commits them in one transaction (group commit). The starts batcher commits what
waits for it together, in order (batcher.py): it judges and starts claims (all that wait with one
read of each fact) and writes the finishes a waiter was handed the turn of. Every other write
runs at once in a transaction of its own on a pooled connection, so that a write's round trips
to the server overlap with the others' (one writer would add them up); PostgreSQL flushes the
WAL of concurrent commits together. Every commit is durable (synchronous_commit=on, set on each
connection). What must hold between concurrent writes, in this process or another, holds by
PostgreSQL's locks: start_claim_if takes a transaction-level advisory lock
(dialect.LOCK_STARTS), claims and open incidents are unique rows, and every check-then-write op
writes conditionally. A transaction PostgreSQL fails to break a deadlock runs again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg

from remediator.errors import StoreConflict, StoreError, StoreUnavailable
from remediator.store.batcher import Batcher, JournalAppender
from remediator.store.claims import ClaimsSQL
from remediator.store.controls import ControlsSQL
from remediator.store.dialect import POSTGRES, Dialect
from remediator.store.finishes import Finished, FinishesSQL, FinishIf
from remediator.store.incidents import IncidentsSQL
from remediator.store.journal import JournalSQL
from remediator.store.leadership import LeadershipSQL
from remediator.store.migrate import migrate
from remediator.store.outbox import OutboxSQL
from remediator.store.pages import PagesSQL
from remediator.store.reads import ReadsSQL
from remediator.store.retention import RetentionSQL
from remediator.store.settings import PostgresSettings
from remediator.store.sql import Op, Row
from remediator.store.starts import Started, StartIf, StartsSQL

T = TypeVar("T")
DEADLOCK_RETRIES = 3
COMMAND_MARGIN = 5.0  # seconds past statement_timeout before asyncpg gives up on the server
log = logging.getLogger(__name__)
_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.TooManyConnectionsError,
    # 57xxx: statement_timeout, an administrator's or a crash's shutdown, "starting up"
    asyncpg.OperatorInterventionError,
    # a connection the server dropped mid-exchange ("another operation is in progress")
    asyncpg.InternalClientError,
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


class PostgresStore(
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
    """Every store protocol on one PostgreSQL database."""

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None
        # appends, committed together; judge-and-start writes, one after the other; finishes
        # beside them, together
        self._journal = JournalAppender(self._autocommit, _batch_error)
        self._starts = Batcher("starts", self._transaction, _batch_error, _deadlocked)
        self._finishes = Batcher("finishes", self._transaction, _batch_error, _deadlocked)
        self._open = False
        self.commits = 0

    async def open(self) -> None:
        s = self.settings
        try:
            self._pool = await asyncpg.create_pool(
                s.dsn.reveal(),
                min_size=1,
                max_size=s.pool_size,
                timeout=s.connect_timeout,
                reset=_keep_session,
                # a server that went away without closing the socket fails the call, not hangs it
                command_timeout=s.statement_timeout + COMMAND_MARGIN,
                server_settings={
                    "application_name": s.application_name,
                    "synchronous_commit": "on",
                    "statement_timeout": str(int(s.statement_timeout * 1000)),
                },
            )
            async with self._acquire() as conn, conn.transaction():
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
        self._journal.start()
        self._starts.start()
        self._finishes.start()
        self._open = True

    async def close(self) -> None:
        self._open = False
        await self._journal.stop()
        await self._starts.stop()
        await self._finishes.stop()
        await self._close_pool()

    async def append_journal(self, body: str, at: float) -> int:
        """Written before the webhook is acknowledged: with every append waiting for the same
        commit, in one transaction of two statements (batcher.JournalAppender)."""
        if not self._open:
            raise StoreUnavailable("the store is not open")
        return await self._journal.append(body, at)

    async def _start_if(self, start: StartIf) -> Started:
        """Judged with every claim that waits for the starts batcher (in one transaction, one
        read of each fact for all of them), in order with the ordered finishes."""
        if not self._open or self._pool is None:
            raise StoreUnavailable("the store is not open")
        return await self._starts.judge_and_start(start)

    async def _finish_if(self, finish: FinishIf, ordered: bool) -> Finished:
        """Finished with every claim that waits for its batcher (finishes.py), in one
        transaction: `ordered`, the starts batcher's, in order with the starts; otherwise the
        finishes batcher's, beside them."""
        if not self._open or self._pool is None:
            raise StoreUnavailable("the store is not open")
        return await (self._starts if ordered else self._finishes).finish(finish)

    async def ping(self) -> None:
        await self._read(lambda tx: tx.fetchval("SELECT 1"))

    def _acquire(self) -> Any:
        """A pooled connection within connect_timeout: a dead connection is replaced on the way
        (asyncpg reconnects), and a server that is down fails the caller fast, never holds it."""
        assert self._pool is not None
        return self._pool.acquire(timeout=self.settings.connect_timeout)

    async def _close_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _write(
        self,
        op: Op[T],
        urgent: bool = False,
        serial: bool = False,
        lazy: bool = False,
        relaxed: bool = False,
    ) -> T:
        """Finishes a waiter was handed the turn of (`serial`) queue for the starts batcher,
        which commits all that wait in one transaction, in order: such a finish lands before the
        start of the claim handed its turn. Every other write runs now, in a transaction of its
        own on a pooled connection (journal appends have their own path: append_journal)."""
        if not self._open or self._pool is None:
            raise StoreUnavailable("the store is not open")
        if serial:
            result: T = await self._starts.submit(op)
            return result
        for attempt in range(1, DEADLOCK_RETRIES + 1):
            try:
                async with self._acquire() as conn, conn.transaction():
                    done = await op(PostgresTx(conn))
                self.commits += 1
                return done
            except StoreError as e:
                if not _deadlocked(e) or attempt == DEADLOCK_RETRIES:
                    raise
            except (asyncpg.PostgresError, *_UNAVAILABLE) as e:
                raise store_error(e) from e
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[tuple[asyncpg.Connection, PostgresTx]]:
        """A transaction on a pooled connection, for a batcher; counted when it commits."""
        assert self._pool is not None
        async with self._acquire() as conn, conn.transaction():
            yield conn, PostgresTx(conn)
        self.commits += 1

    @asynccontextmanager
    async def _autocommit(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection whose one statement commits on its own; counted as a commit."""
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            yield conn
        self.commits += 1

    async def _read(self, op: Op[T]) -> T:
        if self._pool is None:
            raise StoreUnavailable("the store is not open")
        try:
            async with self._acquire() as conn:
                return await op(PostgresTx(conn))
        except (asyncpg.PostgresError, *_UNAVAILABLE) as e:
            raise store_error(e) from e


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A connection goes back to the pool as it is: asyncpg's default reset is one more round
    trip per use (unlock, CLOSE ALL, UNLISTEN, RESET ALL), and the store leaves nothing to reset:
    its only lock is transaction-level, it never listens, and its settings are the connection's
    own (server_settings)."""


def _batch_error(e: Exception) -> Exception:
    return store_error(e) if isinstance(e, (asyncpg.PostgresError, *_UNAVAILABLE)) else e


def _deadlocked(e: BaseException) -> bool:
    """PostgreSQL broke a deadlock (or a serialization failure) by failing this transaction:
    running it again is safe and will succeed."""
    return isinstance(e.__cause__, asyncpg.DeadlockDetectedError | asyncpg.SerializationError)


def _scrub(message: str, dsn: str) -> str:
    """The message without the DSN or its password, whatever a driver put in it."""
    password = urlsplit(dsn).password
    for secret in (dsn, password):
        if secret:
            message = message.replace(secret, "***")
    return message
