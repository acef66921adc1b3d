"""The store's settings, as config.py reads them (`store:` in the main config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from remediator.schema import Secret

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    dsn: Secret  # from dsn_env or dsn_file only; never logged, never in an error message
    pool_size: int = 10
    connect_timeout: float = 10.0
    statement_timeout: float = 30.0
    application_name: str = "remediator"
    lease: float = 8.0  # a leader silent this long to the server loses its lock
    heartbeat: float = 1.0  # the leader's round trip, a follower's try for the lock, heartbeats


@dataclass(frozen=True, slots=True)
class Retention:
    """How long decided rows stay. A guardrail's window is always kept, whatever these say."""

    journal: float = 7 * DAY  # journal entries, after they were decided
    incidents: float = 90 * DAY  # resolved incidents with their claims, attempts, audit lines
    batch: int = 500  # rows deleted per transaction: the writer is never held long
    every: float = 300.0  # seconds between two passes


@dataclass(frozen=True, slots=True)
class StoreSettings:
    sqlite_path: Path = Path("remediator.db")  # the default backend, unless postgres is set
    postgres: PostgresSettings | None = None
    retention: Retention = field(default_factory=Retention)

    @property
    def backend(self) -> str:
        return "postgres" if self.postgres is not None else "sqlite"
