"""What only the PostgreSQL backend does: durable commits per connection, a DSN that never shows,
and start_claim_if's promise held across processes by the starts lock."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from remediator.errors import StoreUnavailable
from remediator.schema import Secret
from remediator.store.election import JOURNAL_CHANNEL
from remediator.store.postgres import PostgresStore
from remediator.store.records import Changes
from remediator.store.settings import PostgresSettings
from remediator.store.sql import Tx
from tests.store.test_contract import claim, new_incident

ROOT = Path(__file__).parents[2]


@pytest.fixture
async def pg(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(PostgresSettings(Secret(postgres_dsn, "test"), pool_size=4))
    await store.open()
    yield store
    await store.close()


async def test_every_connection_commits_durably_and_names_itself(pg: PostgresStore) -> None:
    async def settings(tx: Tx) -> tuple[str, str]:
        return (
            await tx.fetchval("SHOW synchronous_commit"),
            await tx.fetchval("SELECT current_setting('application_name')"),
        )

    assert await pg._write(settings) == ("on", "remediator")
    assert await pg._read(settings) == ("on", "remediator")


async def test_migrations_run_once_when_two_processes_open_one_database(postgres_dsn: str) -> None:
    stores = [PostgresStore(PostgresSettings(Secret(postgres_dsn, "t"))) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        versions = await stores[0]._read(
            lambda tx: tx.fetch("SELECT version FROM schema_version ORDER BY version")
        )
        numbers = [r["version"] for r in versions]
        assert numbers == sorted(set(numbers))
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_an_unreachable_server_is_unavailable_and_the_dsn_never_shows() -> None:
    dsn = "postgresql://remediator:hunter2-secret@127.0.0.1:1/remediator"
    store = PostgresStore(PostgresSettings(Secret(dsn, "$PG_DSN"), connect_timeout=2.0))
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(caught.value.__cause__)


def race(dsn: str, hold: float, budget: int, ids: list[int]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store.race", dsn, str(hold), str(budget), *map(str, ids)],
        cwd=ROOT, env=os.environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


async def claims_on_one_target(pg: PostgresStore, n: int) -> list[int]:
    incidents = [new_incident(-1 - i, f"c{i}") for i in range(n)]
    claims = [claim(-1 - i) for i in range(n)]
    applied = await pg.apply(Changes(at=1.0, incidents=incidents, claims=claims))
    return [c.id for c in applied.claims]


async def run_race(dsn: str, hold: float, budget: int, ids: list[int]) -> list[list[float]]:
    """Two processes, each trying every claim (in opposite orders); what they started."""
    procs = [race(dsn, hold, budget, ids), race(dsn, hold, budget, ids[::-1])]
    started = []
    for proc in procs:
        out, err = await asyncio.to_thread(proc.communicate, timeout=120)
        assert proc.returncode == 0, err
        started += json.loads(out)["started"]
    return started


async def test_two_processes_never_start_more_than_the_budget(
    pg: PostgresStore, postgres_dsn: str
) -> None:
    ids = await claims_on_one_target(pg, 30)
    started = await run_race(postgres_dsn, 0.0, 3, ids)
    assert len(started) == 3
    count = await pg._read(
        lambda tx: tx.fetchval("SELECT COUNT(*) FROM claims WHERE started_at IS NOT NULL")
    )
    assert count == 3


async def test_two_processes_never_run_two_actions_at_once_on_one_target(
    pg: PostgresStore, postgres_dsn: str
) -> None:
    ids = await claims_on_one_target(pg, 12)
    started = sorted(await run_race(postgres_dsn, 0.05, 100, ids), key=lambda s: s[1])
    assert len(started) == 12  # every claim ran, one after the other
    for (_, _, ended), (_, began, _) in itertools.pairwise(started):
        assert began >= ended, "two actions ran at once on one target"


async def test_a_journal_append_notifies_the_leader_once_its_rows_are_committed(
    pg: PostgresStore, postgres_dsn: str
) -> None:
    """The append and its NOTIFY are one statement: the listener hears of the batch once, after
    the commit, and reads its rows."""
    listener = await asyncpg.connect(postgres_dsn)
    heard: asyncio.Queue[int] = asyncio.Queue()

    async def read(*_: object) -> None:
        heard.put_nowait(await listener.fetchval("SELECT count(*) FROM journal"))

    await listener.add_listener(JOURNAL_CHANNEL, lambda *args: asyncio.create_task(read()))
    try:
        ids = await asyncio.gather(*(pg.append_journal(f'{{"n": {i}}}', 1.0) for i in range(5)))
        assert len(set(ids)) == 5
        seen = await asyncio.wait_for(heard.get(), 10)
        assert seen >= 1  # the rows of the batch it was told of are there
        while not heard.empty() or seen < 5:
            seen = await asyncio.wait_for(heard.get(), 10)
        assert seen == 5
    finally:
        await listener.close()
