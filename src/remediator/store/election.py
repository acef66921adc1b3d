"""Who leads, on PostgreSQL: a session-level advisory lock (dialect.LOCK_LEADER) held on a
connection of its own, outside the pool.

The lock is the server's: when the leader's process dies or its connection is cut, PostgreSQL
drops the session and the lock with it, and the next replica to try takes it. The connection is
also the lease: its `idle_session_timeout` is the lease, so a leader that stops talking to the
server (hung, partitioned) loses its session and its lock after that long, and a round trip on
it that takes longer than the lease makes the leader step down on its side. Whoever takes the
lock bumps the leadership epoch on the same connection (leadership.take), which fences the
deposed leader's transactions. The same connection LISTENs for journal appends, so that the
leader reads what other replicas acknowledged without waiting for its poll."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

from remediator.errors import StoreError
from remediator.store.dialect import LOCK_LEADER
from remediator.store.leadership import take
from remediator.store.postgres import PostgresTx, store_error
from remediator.store.settings import PostgresSettings

log = logging.getLogger(__name__)
JOURNAL_CHANNEL = "remediator_journal"  # NOTIFY'd by every journal commit (batcher.py)


class Elector:
    def __init__(self, settings: PostgresSettings, replica: str) -> None:
        self.settings = settings
        self.replica = replica
        self._conn: asyncpg.Connection | None = None
        self.on_lost: Callable[[], None] = lambda: None  # the leader's connection is gone
        self.on_journal: Callable[[], None] = lambda: None  # another replica journaled
        self.leading = False

    async def try_lead(self, at: float) -> int | None:
        """Take the lock if it is free, and with it a new epoch; None if another replica leads.
        StoreError if the server cannot be reached."""
        try:
            conn = await self._connection()
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_LEADER):
                return None
            async with conn.transaction():
                epoch = await take(PostgresTx(conn), self.replica, at)
            await conn.add_listener(JOURNAL_CHANNEL, self._notified)
        except (TimeoutError, asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as e:
            await self.resign()
            raise store_error(e) from e
        self.leading = True
        return epoch

    async def still_leading(self) -> bool:
        """A round trip on the leader's connection within the lease."""
        conn = self._conn
        if not self.leading or conn is None or conn.is_closed():
            return False
        try:
            await asyncio.wait_for(conn.fetchval("SELECT 1"), self.settings.lease)
        except (TimeoutError, asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            await self.resign()
            return False
        return True

    async def resign(self) -> None:
        """Close the connection: the server drops the lock with the session."""
        self.leading = False
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.remove_termination_listener(self._terminated)
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except (TimeoutError, asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
                conn.terminate()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        s = self.settings
        conn = await asyncpg.connect(
            s.dsn.reveal(),
            timeout=s.connect_timeout,
            server_settings={
                "application_name": f"{s.application_name}-elector",
                "idle_session_timeout": str(int(s.lease * 1000)),
                "statement_timeout": str(int(s.lease * 1000)),
            },
        )
        conn.add_termination_listener(self._terminated)
        self._conn = conn
        return conn

    def _terminated(self, conn: asyncpg.Connection) -> None:
        if conn is self._conn:
            self._conn = None
            if self.leading:
                self.leading = False
                log.error("the leader's connection to PostgreSQL is gone: no longer leading")
                self.on_lost()

    def _notified(self, *args: object) -> None:
        self.on_journal()


__all__ = ["Elector", "StoreError"]
