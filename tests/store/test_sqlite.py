"""What only the SQLite backend does: its file, WAL at synchronous=FULL, one process per file."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from remediator.errors import StoreError
from remediator.store.dialect import SQLITE
from remediator.store.migrate import numbered
from remediator.store.sql import Tx
from remediator.store.sqlite import SqliteStore


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
