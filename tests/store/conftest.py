"""The store under test, once per backend: every test that takes `store` runs on SQLite and on
a real PostgreSQL server (tests/postgres.py), a fresh file or database each time."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from remediator.schema import Secret
from remediator.store.postgres import PostgresStore
from remediator.store.settings import PostgresSettings
from remediator.store.sqlite import SqliteStore

AnyStore = SqliteStore | PostgresStore


def make_store(backend: str, tmp_path: Path) -> AnyStore:
    if backend == "postgres":
        dsn = Secret(os.environ["TEST_PG_DSN"], "$TEST_PG_DSN")
        return PostgresStore(PostgresSettings(dsn, pool_size=4))
    return SqliteStore(tmp_path / "state" / "r.db")


@pytest.fixture
async def store(store_backend: str, tmp_path: Path) -> AsyncIterator[AnyStore]:
    s = make_store(store_backend, tmp_path)
    await s.open()
    yield s
    await s.close()
