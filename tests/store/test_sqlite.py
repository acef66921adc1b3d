"""What only the SQLite backend does: its file, WAL at synchronous=FULL, one process per file,
the writer's commits."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from remediator.errors import StoreError
from remediator.guardrails import Verdict
from remediator.store import sqlite as sqlite_module
from remediator.store.dialect import SQLITE
from remediator.store.migrate import numbered
from remediator.store.records import (
    SUCCEEDED,
    AuditEntry,
    Changes,
    InstanceWrite,
    MuteRow,
    TargetHistory,
)
from remediator.store.sql import Tx
from remediator.store.sqlite import SqliteStore, _commit_groups, _Job
from tests.store.test_contract import audit, claim, new_incident
from tests.store.test_controls import claims


async def test_migrations_apply_once_and_record_their_version(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    for _ in range(2):
        s = SqliteStore(path)
        await s.open()
        await s.close()
    with sqlite3.connect(path) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version")]
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    assert versions == [m.version for m in numbered(SQLITE)]
    assert {"journal", "incidents", "alert_instances", "claims", "attempts", "audit"} <= tables


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state" / "r.db")
    await s.open()
    yield s
    await s.close()


async def test_the_database_is_in_wal_mode_with_full_sync(sqlite_store: SqliteStore) -> None:
    store = sqlite_store

    async def pragmas(tx: Tx) -> tuple[str, int]:
        return await tx.fetchval("PRAGMA journal_mode"), await tx.fetchval("PRAGMA synchronous")

    assert await store._write(pragmas) == ("wal", 2)  # 2 is FULL


async def test_a_claims_start_and_finish_are_each_prepared_once(sqlite_store: SqliteStore) -> None:
    """SQLite prepares again, at every execution, a statement that compares a partially indexed
    column with a bound parameter (sql.literal): none of the statements of a claim's start,
    lease, send, finish and verification is, nor the reads of the indexes that hold only the
    claims with a start or a verification (the writer's and the reader's connections'
    sqlite_stmt count each statement's runs and re-prepares)."""
    store = sqlite_store

    def allow(history: TargetHistory, mutes: list[MuteRow]) -> Verdict:
        return Verdict("allow")

    ids = await claims(store, 4)
    for n, claim_id in enumerate(ids):
        claim = await store.claim(claim_id)
        assert claim is not None
        assert (await store.start_claim_if(claim, {}, 5.0 + n, 0.0, allow, str(n)))[1]
        assert await store.renew_leases([claim_id], 5.5 + n, 20.0 + n) == 1
        assert await store.renew_leases([claim_id, claim_id + 99], 5.5 + n, 20.0 + n) == 1
        assert await store.mark_sent(claim_id, 5.5 + n)
        await store.finish_claim(claim_id, SUCCEEDED, "ok", 6.0 + n, audit("done"))
        await store.set_verification(claim_id, "pending", "checking", 7.0 + n, 9.0 + n)
    for _ in range(2):  # the reads of the partial indexes claims_verify and claims_started
        assert [c.id for c in await store.claims_verifying()] == ids
        assert len((await store.guardrail_state(0.0)).starts) == 4
    ran = await store._write(lambda tx: tx.fetch("SELECT sql, run, reprep FROM sqlite_stmt"))
    assert [r["sql"] for r in ran if r["run"] >= 2 and r["reprep"] >= r["run"]] == []
    read = await store._read(lambda tx: tx.fetch("SELECT sql, run, reprep FROM sqlite_stmt"))
    assert [r["sql"] for r in read if r["run"] >= 2 and r["reprep"] >= r["run"]] == []
    assert sum(1 for r in ran if r["sql"].startswith("WITH batch") and r["run"] == 4) == 2


async def test_writes_after_close_fail_clearly(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "r.db")
    await s.open()
    await s.close()
    with pytest.raises(StoreError, match="not open"):
        await s.append_journal("{}", 0.0)


async def test_an_unwritable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot open"):
        await SqliteStore(tmp_path / "file" / "r.db").open()


async def test_the_state_directory_and_database_are_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "r.db"
    s = SqliteStore(path)
    await s.open()
    await s.append_journal("{}", 0.0)
    await s.close()
    assert path.parent.stat().st_mode & 0o777 == 0o700
    for file in path.parent.iterdir():
        assert file.stat().st_mode & 0o777 == 0o600, file


async def test_a_database_made_readable_by_an_older_version_is_made_private(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    s = SqliteStore(path)
    await s.open()
    await s.close()
    assert path.stat().st_mode & 0o777 == 0o600


async def _insert(tx: Tx) -> int:
    return await tx.execute("INSERT INTO journal (received_at, body) VALUES (1, 'lazy')")


async def test_a_lazy_write_waits_to_commit_with_the_next_write(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "LINGER", 30.0)  # only the append below ends its wait
    before = sqlite_store.commits
    lazy = asyncio.ensure_future(sqlite_store._write(_insert, lazy=True))
    await asyncio.sleep(0.05)
    assert not lazy.done()
    await sqlite_store.append_journal("acknowledged", 2.0)
    assert await lazy == 1
    assert sqlite_store.commits - before == 1


async def test_a_lazy_write_alone_commits_once_it_waited(sqlite_store: SqliteStore) -> None:
    before = sqlite_store.commits
    assert await asyncio.wait_for(sqlite_store._write(_insert, lazy=True), 5.0) == 1
    assert sqlite_store.commits - before == 1


async def test_an_acknowledgement_commits_apart_from_all_but_a_few_lazy_writes() -> None:
    loop = asyncio.get_running_loop()

    def job(urgent: bool = False, lazy: bool = False) -> _Job:
        return _Job(_insert, loop.create_future(), loop, urgent, lazy)

    ack, engine, outcomes = job(urgent=True), job(), [job(lazy=True) for _ in range(20)]
    assert _commit_groups([engine, ack]) == [[ack], [engine]]
    assert _commit_groups([outcomes[0], ack, outcomes[1]]) == [[outcomes[0], ack, outcomes[1]]]
    assert _commit_groups([outcomes[0], ack, engine]) == [[ack], [outcomes[0], engine]]
    assert _commit_groups([ack, *outcomes]) == [[ack], outcomes]
    assert _commit_groups([engine, *outcomes]) == [[engine, *outcomes]]


async def _synchronous(tx: Tx) -> int:
    return int(await tx.fetchval("PRAGMA synchronous"))  # 1 is NORMAL, 2 FULL


async def test_a_commit_with_a_durable_write_runs_at_full_sync(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "LINGER", 30.0)  # the relaxed write waits for the other
    before = sqlite_store.commits
    relaxed = asyncio.ensure_future(sqlite_store._write(_synchronous, lazy=True, relaxed=True))
    await asyncio.sleep(0.05)
    assert await sqlite_store._write(_synchronous) == 2
    assert await relaxed == 2
    assert sqlite_store.commits - before == 1


async def test_a_commit_of_relaxed_writes_only_runs_at_normal_sync(
    sqlite_store: SqliteStore,
) -> None:
    assert await sqlite_store._write(_synchronous, relaxed=True) == 1
    assert await sqlite_store._write(_synchronous) == 2  # and the next durable one at FULL again


async def test_only_an_engine_batch_apply_and_an_outcome_are_relaxed(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, relaxed = sqlite_store, []
    writer = store._writer
    assert writer is not None
    submit = writer.submit

    def spy(op: Any, urgent: bool = False, lazy: bool = False, relax: bool = False) -> Any:
        relaxed.append(relax)
        return submit(op, urgent, lazy, relax)

    monkeypatch.setattr(writer, "submit", spy)
    journal_id = await store.append_journal("{}", 1.0)
    line = AuditEntry("decision", "opened", "a person's command", 1.0)
    await store.apply(Changes(at=1.0, audit=[line]))  # a person's command: durable
    applied = await store.apply(
        Changes(at=1.0, journal_ids=[journal_id], incidents=[new_incident()], claims=[claim(-1)])
    )
    await store.finish_claim(applied.claims[0].id, "failed", "no", 2.0, line)
    assert relaxed == [False, False, True, True]


async def test_a_write_alone_in_its_commit_that_fails_leaves_nothing(
    sqlite_store: SqliteStore,
) -> None:
    async def broken(tx: Tx) -> None:
        await _insert(tx)
        await tx.execute("INSERT INTO no_such_table VALUES (1)")

    before = sqlite_store.commits
    with pytest.raises(StoreError, match="no_such_table"):
        await sqlite_store._write(broken)
    assert sqlite_store.commits == before
    assert await sqlite_store._write(_insert) == 1  # the writer goes on
    assert [body for _, body in await sqlite_store.unprocessed_journal()] == ["lazy"]


async def test_the_engines_look_up_reads_in_place_not_behind_the_reader(
    sqlite_store: SqliteStore,
) -> None:
    """resolved_instances, which the engine waits on before each batch, reads on the event
    loop's own connection (_peek): it answers while the reader thread is held by another read,
    and sees what the writer committed just before."""
    store = sqlite_store
    placeholder = -1
    applied = await store.apply(Changes(at=1.0, incidents=[new_incident(placeholder, "k")]))
    incident_id = applied.incident_ids[placeholder]
    key = ("r", "f", 1.0)
    resolved = InstanceWrite("r", "f", 1.0, incident_id, "resolved", None, 2.0)
    await store.apply(Changes(at=2.0, instances=[resolved]))
    release = threading.Event()

    async def hold(tx: Tx) -> None:
        release.wait(10)

    held = asyncio.ensure_future(store._read(hold))
    try:
        found = await asyncio.wait_for(store.resolved_instances([key, ("r", "g", 1.0)]), 5)
        assert not held.done()
    finally:
        release.set()
        await held
    assert found == {key}
