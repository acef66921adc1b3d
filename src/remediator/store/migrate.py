"""The one migration runner: the numbered files in migrations/, in order, each once, on either
backend, inside one transaction that holds the migration lock (two processes starting at once
on one PostgreSQL database migrate one after the other)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files

from remediator.store.dialect import LOCK_MIGRATIONS, Dialect
from remediator.store.sql import Tx

_NUMBERED = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def numbered(dialect: Dialect) -> list[Migration]:
    """The numbered migrations in order, written for `dialect` (__ID__ is its identity key)."""
    found = []
    for entry in files("remediator.store.migrations").iterdir():
        m = _NUMBERED.fullmatch(entry.name)
        if m:
            sql = entry.read_text(encoding="utf-8").replace("__ID__", dialect.identity)
            found.append(Migration(int(m.group(1)), entry.name, sql))
    return sorted(found, key=lambda mig: mig.version)


def statements(sql: str) -> list[str]:
    """Split a migration into statements (no semicolons inside our literals)."""
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


async def migrate(tx: Tx) -> list[int]:
    """Apply what is missing; the versions applied now."""
    await tx.fetchval(tx.dialect.lock, LOCK_MIGRATIONS)
    await tx.execute(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
    )
    done = {row["version"] for row in await tx.fetch("SELECT version FROM schema_version")}
    applied = []
    for migration in numbered(tx.dialect):
        if migration.version in done:
            continue
        for statement in statements(migration.sql):
            await tx.execute(statement)
        await tx.execute(
            "INSERT INTO schema_version (version, name) VALUES (?, ?)",
            migration.version,
            migration.name,
        )
        applied.append(migration.version)
    return applied
