"""The SQLite side of paging: the pages table (an incident's escalation level, its pagers) and the
pager outbox. A mixin of SqliteStore: it uses the store's reader and single writer."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from remediator.paging.records import PageEvent, PageRow, PageState, Unacked
from remediator.store.records import AuditEntry

T = TypeVar("T")
PAGE_CURSOR = "pager_cursor"
_ROW_COLUMNS = "id, incident_id, pager, event, payload, attempts, created_at"
_STATE_COLUMNS = "incident_id, policy, level, level_at, pagers"


class SqlitePages:
    """The paging methods of the Store protocol (types.PageStore)."""

    _read: Callable[..., Any]
    _write: Callable[..., Any]

    async def record_pages(
        self,
        events: list[PageEvent],
        states: list[PageState],
        audit: list[AuditEntry],
        cursor: int,
        at: float,
    ) -> list[AuditEntry]:
        """Queue pager events, keep the incidents' page states, add their audit lines and move
        the pager cursor past what they tell, atomically: each audit line pages exactly once."""
        from remediator.store.sqlite import _insert_audit, _put_setting

        def op(conn: sqlite3.Connection) -> list[AuditEntry]:
            _insert_events(conn, events, at)
            for state in states:
                _put_state(conn, state)
            written = [_insert_audit(conn, entry) for entry in audit]
            _put_setting(conn, PAGE_CURSOR, cursor, at)
            return written

        result: list[AuditEntry] = await self._write(op)
        return result

    async def page_state(self, incident_id: int) -> PageState | None:
        sql = f"SELECT {_STATE_COLUMNS} FROM pages WHERE incident_id = ?"
        row = await self._read(lambda conn: conn.execute(sql, (incident_id,)).fetchone())
        return None if row is None else _state(row)

    async def unacked_pages(self) -> list[Unacked]:
        """The pages of open incidents nobody acknowledged: where escalations come due."""
        sql = (
            "SELECT p.incident_id, p.policy, p.level, p.level_at, p.pagers, i.labels FROM pages p "
            "JOIN incidents i ON i.id = p.incident_id "
            "WHERE i.status = 'open' AND i.acked_at IS NULL ORDER BY p.incident_id"
        )
        rows = await self._read(lambda conn: conn.execute(sql).fetchall())
        return [Unacked(_state(r[:5]), json.loads(r[5])) for r in rows]

    async def escalate_page(
        self, state: PageState, to_level: int, at: float, audit: AuditEntry
    ) -> AuditEntry | None:
        """Move an incident's page from `state.level` to `to_level`, with its audit line, if it
        is still open, unacknowledged and at that level (None otherwise: an ack, a resolution
        or another escalation came first)."""
        from remediator.store.sqlite import _insert_audit

        def op(conn: sqlite3.Connection) -> AuditEntry | None:
            cur = conn.execute(
                "UPDATE pages SET level = ?, level_at = ? WHERE incident_id = ? AND level = ? "
                "AND incident_id IN (SELECT id FROM incidents WHERE status = 'open' "
                "AND acked_at IS NULL)",
                (to_level, at, state.incident_id, state.level),
            )
            return _insert_audit(conn, audit) if cur.rowcount == 1 else None

        result: AuditEntry | None = await self._write(op)
        return result

    async def pages_due(self, now: float, limit: int) -> list[PageRow]:
        """The first pending event of each (incident, pager), if due: in order per pager."""
        sql = (
            f"SELECT {_ROW_COLUMNS} FROM page_outbox o WHERE status = 'pending' AND id = "
            "(SELECT MIN(id) FROM page_outbox WHERE incident_id = o.incident_id "
            "AND pager = o.pager AND status = 'pending') AND next_at <= ? ORDER BY id LIMIT ?"
        )
        rows = await self._read(lambda conn: conn.execute(sql, (now, limit)).fetchall())
        return [_row(r) for r in rows]

    async def page_done(self, row_id: int, status: str, at: float, error: str = "") -> None:
        sql = (
            "UPDATE page_outbox SET status = ?, sent_at = ?, error = ?, attempts = attempts + 1 "
            "WHERE id = ?"
        )
        await self._write(lambda conn: conn.execute(sql, (status, at, error, row_id)))

    async def page_retry(self, row_id: int, next_at: float, error: str) -> None:
        sql = "UPDATE page_outbox SET attempts = attempts + 1, next_at = ?, error = ? WHERE id = ?"
        await self._write(lambda conn: conn.execute(sql, (next_at, error, row_id)))

    async def page_stats(self) -> tuple[int, float | None]:
        """Pending pager events, and when the earliest of them is due."""
        sql = "SELECT COUNT(*), MIN(next_at) FROM page_outbox WHERE status = 'pending'"
        count, due = await self._read(lambda conn: conn.execute(sql).fetchone())
        return int(count), due


def _insert_events(conn: sqlite3.Connection, events: list[PageEvent], at: float) -> None:
    conn.executemany(
        "INSERT INTO page_outbox (incident_id, pager, event, payload, status, next_at, "
        "created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
        [(e.incident_id, e.pager, e.event, json.dumps(e.payload), at, at) for e in events],
    )


def _put_state(conn: sqlite3.Connection, state: PageState) -> None:
    conn.execute(
        "INSERT INTO pages (incident_id, policy, level, level_at, pagers) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (incident_id) DO UPDATE SET policy = excluded.policy, level = "
        "excluded.level, level_at = excluded.level_at, pagers = excluded.pagers",
        (
            state.incident_id,
            state.policy,
            state.level,
            state.level_at,
            json.dumps(list(state.pagers)),
        ),
    )


def _state(r: Any) -> PageState:
    return PageState(
        incident_id=r[0], policy=r[1], level=r[2], level_at=r[3], pagers=tuple(json.loads(r[4]))
    )


def _row(r: Any) -> PageRow:
    return PageRow(
        id=r[0],
        incident_id=r[1],
        pager=r[2],
        event=r[3],
        payload=json.loads(r[4]),
        attempts=r[5],
        created_at=r[6],
    )
