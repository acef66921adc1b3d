"""How big a store grows per thousand incidents, on each backend.

    .venv/bin/python -m bench.store_growth [N]

Writes N incidents (default 2,000) through the store's own API (tests/store/history.py: each
opened by a firing notification, one action run with its attempt, resolved by a resolved
notification, every notification in the journal) into a fresh SQLite file and a fresh
PostgreSQL database (tests/peers.py's throwaway server), and prints the bytes each grew by, per
thousand incidents, and how much of it retention's journal pruning frees.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from remediator.schema import Secret
from remediator.store.postgres import PostgresStore
from remediator.store.settings import PostgresSettings
from remediator.store.sqlite import SqliteStore
from remediator.types import Store
from tests.peers import postgres
from tests.store.history import fill

NOW = 1_795_338_000.0
MIB = 1024 * 1024


async def _filled(store: Store, n: int) -> None:
    await store.open()
    try:
        await fill(store, 10, n // 10, NOW)
    finally:
        await store.close()


async def sqlite_growth(n: int) -> tuple[int, int]:
    """Bytes the file grew by (empty -> filled), and its journal's share."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.db"
        empty = SqliteStore(path)
        await empty.open()
        await empty.close()
        before = path.stat().st_size
        await _filled(SqliteStore(path), n)
        grown = path.stat().st_size - before
        with sqlite3.connect(path) as conn:
            journal = conn.execute("SELECT SUM(pgsize) FROM dbstat WHERE name LIKE 'journal%'")
            share = int(journal.fetchone()[0] or 0)
        return grown, share


async def postgres_growth(n: int) -> tuple[int, int]:
    async with postgres() as dsn:
        store = PostgresStore(PostgresSettings(Secret(dsn, "bench")))
        await store.open()
        size = "SELECT pg_database_size(current_database())"
        before = await store._read(lambda tx: tx.fetchval(size))
        journal = "SELECT pg_total_relation_size('journal')"
        journal_before = await store._read(lambda tx: tx.fetchval(journal))
        await store.close()
        await _filled(PostgresStore(PostgresSettings(Secret(dsn, "bench"))), n)
        store = PostgresStore(PostgresSettings(Secret(dsn, "bench")))
        await store.open()
        after = await store._read(lambda tx: tx.fetchval(size))
        journal_after = await store._read(lambda tx: tx.fetchval(journal))
        await store.close()
        return int(after - before), int(journal_after - journal_before)


async def main(n: int) -> None:
    for name, measure in (("sqlite", sqlite_growth), ("postgres", postgres_growth)):
        started = time.monotonic()
        grown, journal = await measure(n)
        per_k = grown / (n / 1000) / MIB
        print(
            f"{name:<9} {per_k:5.2f} MiB per 1,000 incidents "
            f"(journal {journal / grown:4.0%} of it), {n} incidents in "
            f"{time.monotonic() - started:.0f} s"
        )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
