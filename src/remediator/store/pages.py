"""Paging as stored: an incident's page (the escalation level reached, when, and the pagers
triggered) and the pager outbox, whose events leave in order per incident and pager. The same
SQL on both backends."""

from __future__ import annotations

import json

from remediator.paging.records import PageEvent, PageRow, PageState, Unacked
from remediator.store import rows
from remediator.store.audit import insert_audit
from remediator.store.controls import put_setting
from remediator.store.records import AuditEntry
from remediator.store.sql import Row, Runner, Tx, marks

CURSOR = "pager_cursor"  # the setting naming the last audit line the pager desk has read
_STATE_COLUMNS = "incident_id, policy, level, level_at, pagers"
_ROW_COLUMNS = "id, incident_id, pager, event, payload, attempts, created_at"


class PagesSQL(Runner):
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

        async def op(tx: Tx) -> list[AuditEntry]:
            await tx.executemany(
                "INSERT INTO page_outbox (incident_id, pager, event, payload, status, next_at, "
                "created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                [(e.incident_id, e.pager, e.event, json.dumps(e.payload), at, at) for e in events],
            )
            for state in states:
                await _put_state(tx, state)
            written = [await insert_audit(tx, entry) for entry in audit]
            await put_setting(tx, CURSOR, cursor, at)
            return written

        return await self._write(op)

    async def audit_events_after(
        self, after: int, limit: int, events: tuple[str, ...]
    ) -> tuple[list[AuditEntry], int]:
        """The first `limit` audit lines after `after` whose event is one of `events`, and the
        id read up to: the last of them if there are `limit`, else the trail's end. The desk
        follows the trail for a few events; the lines between them are skipped in the
        statement, not built and looked at one by one (issue 17: three lines per incident)."""

        async def op(tx: Tx) -> tuple[list[AuditEntry], int]:
            end = int(await tx.fetchval("SELECT COALESCE(MAX(id), 0) FROM audit"))
            if end <= after:
                return [], after
            sql = (
                f"SELECT {rows.AUDIT_COLUMNS} FROM audit WHERE id > ? AND id <= ? "
                f"AND event IN ({marks(events)}) ORDER BY id LIMIT ?"
            )
            found = [rows.audit(r) for r in await tx.fetch(sql, after, end, *events, limit)]
            last = found[-1].id if len(found) == limit else None
            return found, last or end

        return await self._read(op)

    async def page_state(self, incident_id: int) -> PageState | None:
        async def op(tx: Tx) -> PageState | None:
            sql = f"SELECT {_STATE_COLUMNS} FROM pages WHERE incident_id = ?"
            r = await tx.fetchrow(sql, incident_id)
            return None if r is None else _state(r)

        return await self._read(op)

    async def unacked_pages(self) -> list[Unacked]:
        """The pages of open incidents nobody acknowledged: where escalations come due."""

        async def op(tx: Tx) -> list[Unacked]:
            sql = (
                "SELECT p.incident_id, p.policy, p.level, p.level_at, p.pagers, i.labels "
                "FROM pages p JOIN incidents i ON i.id = p.incident_id "
                "WHERE i.status = 'open' AND i.acked_at IS NULL ORDER BY p.incident_id"
            )
            return [Unacked(_state(r), json.loads(r["labels"])) for r in await tx.fetch(sql)]

        return await self._read(op)

    async def escalate_page(
        self, state: PageState, to_level: int, at: float, audit: AuditEntry
    ) -> AuditEntry | None:
        """Move an incident's page from `state.level` to `to_level`, with its audit line, if it
        is still open, unacknowledged and at that level (None otherwise: an ack, a resolution or
        another escalation came first)."""

        async def op(tx: Tx) -> AuditEntry | None:
            moved = await tx.execute(
                "UPDATE pages SET level = ?, level_at = ? WHERE incident_id = ? AND level = ? "
                "AND incident_id IN (SELECT id FROM incidents WHERE status = 'open' "
                "AND acked_at IS NULL)",
                to_level,
                at,
                state.incident_id,
                state.level,
            )
            return await insert_audit(tx, audit) if moved == 1 else None

        return await self._write(op)

    async def pages_due(self, now: float, limit: int) -> list[PageRow]:
        """The first pending event of each (incident, pager), if due: in order per pager."""

        async def op(tx: Tx) -> list[PageRow]:
            sql = (
                f"SELECT {_ROW_COLUMNS} FROM page_outbox o WHERE status = 'pending' AND id = "
                "(SELECT MIN(id) FROM page_outbox WHERE incident_id = o.incident_id "
                "AND pager = o.pager AND status = 'pending') AND next_at <= ? ORDER BY id LIMIT ?"
            )
            return [_row(r) for r in await tx.fetch(sql, now, limit)]

        return await self._read(op)

    async def page_done(self, row_id: int, status: str, at: float, error: str = "") -> None:
        async def op(tx: Tx) -> None:
            await tx.execute(
                "UPDATE page_outbox SET status = ?, sent_at = ?, error = ?, "
                "attempts = attempts + 1 WHERE id = ?",
                status,
                at,
                error,
                row_id,
            )

        await self._write(op)

    async def page_retry(self, row_id: int, next_at: float, error: str) -> None:
        async def op(tx: Tx) -> None:
            await tx.execute(
                "UPDATE page_outbox SET attempts = attempts + 1, next_at = ?, error = ? "
                "WHERE id = ?",
                next_at,
                error,
                row_id,
            )

        await self._write(op)

    async def page_stats(self) -> tuple[int, float | None]:
        """Pending pager events, and when the earliest of them is due."""

        async def op(tx: Tx) -> tuple[int, float | None]:
            sql = (
                "SELECT COUNT(*) AS n, MIN(next_at) AS due FROM page_outbox "
                "WHERE status = 'pending'"
            )
            r = await tx.fetchrow(sql)
            assert r is not None  # an aggregate returns one row
            return int(r["n"]), r["due"]

        return await self._read(op)


async def _put_state(tx: Tx, state: PageState) -> None:
    await tx.execute(
        "INSERT INTO pages (incident_id, policy, level, level_at, pagers) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (incident_id) DO UPDATE SET policy = excluded.policy, "
        "level = excluded.level, level_at = excluded.level_at, pagers = excluded.pagers",
        state.incident_id,
        state.policy,
        state.level,
        state.level_at,
        json.dumps(list(state.pagers)),
    )


def _state(r: Row) -> PageState:
    return PageState(
        incident_id=int(r["incident_id"]),
        policy=r["policy"],
        level=int(r["level"]),
        level_at=float(r["level_at"]),
        pagers=tuple(json.loads(r["pagers"])),
    )


def _row(r: Row) -> PageRow:
    return PageRow(
        id=int(r["id"]),
        incident_id=int(r["incident_id"]),
        pager=r["pager"],
        event=r["event"],
        payload=json.loads(r["payload"]),
        attempts=int(r["attempts"]),
        created_at=float(r["created_at"]),
    )
