"""Every rule-pack replay runs on both store backends (SQLite, and a fresh PostgreSQL database)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _on_each_backend(store_backend: str) -> str:
    return store_backend
