"""A consistent copy of a SQLite store, taken without writing to it: replay reads the live
daemon's journal and audit from the copy, so the live file stays byte for byte what it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from remediator.errors import StoreError


def copy_sqlite(live: Path, copy: Path) -> None:
    """Copy `live` into `copy` with SQLite's online backup, read-only: the database and its WAL
    are not written. With a -wal file beside it (a daemon is running, or stopped uncleanly) the
    copy includes what the WAL holds; like any reader's, the read marks go in the -shm index.
    Without one the database is opened immutable, so no -wal or -shm file appears."""
    if not live.is_file():
        raise StoreError(f"{live}: no such database")
    wal = live.with_name(live.name + "-wal").exists()
    mode = "mode=ro" if wal else "immutable=1"
    try:
        source = sqlite3.connect(f"{live.resolve().as_uri()}?{mode}", uri=True)
        try:
            target = sqlite3.connect(copy)
            try:
                source.backup(target)
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.Error as e:
        raise StoreError(f"cannot read {live}: {e}") from e
