"""A read-only copy of a live SQLite store: the copy holds what the WAL holds, and the live
database and WAL are what they were, no file added."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from remediator.errors import StoreError
from remediator.store.snapshot import copy_sqlite


def files(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def test_a_copy_beside_a_running_writer_holds_its_wal(tmp_path: Path) -> None:
    live = tmp_path / "live" / "store.db"
    live.parent.mkdir()
    writer = sqlite3.connect(live, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # the row stays in the -wal file
    writer.execute("CREATE TABLE journal (body TEXT)")
    writer.execute("INSERT INTO journal VALUES ('in the wal')")
    before = files(live.parent)

    copy_sqlite(live, tmp_path / "copy.db")

    # the database and its WAL are untouched; the -shm file is the readers' shared-memory
    # index, in which any reader (remediator history too) marks what it reads
    after = files(live.parent)
    assert {k: after[k] for k in ("store.db", "store.db-wal")} == {
        k: before[k] for k in ("store.db", "store.db-wal")
    }
    rows = sqlite3.connect(tmp_path / "copy.db").execute("SELECT body FROM journal").fetchall()
    assert rows == [("in the wal",)]
    writer.close()


def test_a_copy_of_a_closed_store_adds_no_file_beside_it(tmp_path: Path) -> None:
    live = tmp_path / "live" / "store.db"
    live.parent.mkdir()
    conn = sqlite3.connect(live, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    before = files(live.parent)

    copy_sqlite(live, tmp_path / "copy.db")

    assert files(live.parent) == before == {"store.db": before["store.db"]}


def test_a_missing_store_is_named(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no-such\.db: no such database"):
        copy_sqlite(tmp_path / "no-such.db", tmp_path / "copy.db")
