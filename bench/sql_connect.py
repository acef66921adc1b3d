"""The `sql` kind opens a connection per attempt. What does that cost against a pool?

Runs the ingestion kill switch (`UPDATE ... WHERE workspace_id = $1`, in a transaction) against
a throwaway local PostgreSQL (tests/peers.py), N times each way, and prints the medians and
95th percentiles:

    .venv/bin/python bench/sql_connect.py [N]

Connect-per-attempt pays TCP, the startup packet and SCRAM-SHA-256 every time; the pool pays
them once. Loopback is the best case for the network part: add a round trip or two per attempt
for a database elsewhere.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from remediator.actions.base import (
    AttemptContext,
    RetryPolicy,
)
from remediator.actions.sql import RowCount, SqlAction
from remediator.schema import Secret
from tests.peers import postgres

STATEMENT = "UPDATE workspace_settings SET ingestion_paused = true WHERE workspace_id = $1"


def summary(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[int(len(ms) * 0.95) - 1]
    return f"{name:<28} median {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms"


async def main(n: int) -> None:
    async with postgres() as dsn:
        setup = await asyncpg.connect(dsn)
        await setup.execute(
            "CREATE TABLE workspace_settings (workspace_id text PRIMARY KEY, "
            "ingestion_paused boolean NOT NULL DEFAULT false);"
            "INSERT INTO workspace_settings VALUES ('ws-1', false)"
        )
        await setup.close()
        action = SqlAction(
            "kill_switch", 10.0, RetryPolicy(), Secret(dsn, "bench"), STATEMENT,
            (), RowCount(1, 1), "sql:bench",
        )  # fmt: skip
        prepared = {"statement": STATEMENT, "params": ["ws-1"]}
        async with httpx.AsyncClient() as http:
            ctx = AttemptContext(1, 10.0, "bench", http)
            per_attempt = []
            for _ in range(n):
                started = time.perf_counter()
                result = await action.attempt(prepared, ctx)
                per_attempt.append(time.perf_counter() - started)
                assert result.ok, result.detail
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        pooled = []
        for _ in range(n):
            started = time.perf_counter()
            async with pool.acquire() as conn, conn.transaction():
                status = await conn.execute(STATEMENT, "ws-1")
            pooled.append(time.perf_counter() - started)
            assert status == "UPDATE 1"
        await pool.close()
    print(f"{n} runs each, PostgreSQL on 127.0.0.1, scram-sha-256")
    print(summary("connect per attempt (sql)", per_attempt))
    print(summary("pooled connection", pooled))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
