"""The one place a store is built from settings: the daemon and the CLI get it passed in."""

from __future__ import annotations

from remediator.store.postgres import PostgresStore
from remediator.store.settings import StoreSettings
from remediator.store.sqlite import SqliteStore
from remediator.types import Store


def build_store(settings: StoreSettings, exclusive: bool = True) -> Store:
    """The configured backend, not yet open. `exclusive`: this process owns the store (the
    daemon); False for a reader beside it (the CLI's history)."""
    if settings.postgres is not None:
        return PostgresStore(settings.postgres)
    return SqliteStore(settings.sqlite_path, exclusive)
