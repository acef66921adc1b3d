"""The Slack outbox as stored: audit lines become messages once, messages leave in order per
thread, and what was posted is remembered for later updates."""

from __future__ import annotations

import json

from remediator.store import rows
from remediator.store.controls import put_setting
from remediator.store.records import AuditEntry, Delivered, OutboxItem, OutboxRow
from remediator.store.sql import Runner, Tx

CURSOR = "slack_cursor"  # the setting naming the last audit line turned into messages


class OutboxSQL(Runner):
    async def audit_after(self, after: int, limit: int) -> list[AuditEntry]:
        async def op(tx: Tx) -> list[AuditEntry]:
            sql = f"SELECT {rows.AUDIT_COLUMNS} FROM audit WHERE id > ? ORDER BY id LIMIT ?"
            return [rows.audit(r) for r in await tx.fetch(sql, after, limit)]

        return await self._read(op)

    async def enqueue_slack(self, items: list[OutboxItem], cursor: int, at: float) -> None:
        """Queue messages and move the cursor past the audit lines they tell, atomically: each
        audit line becomes its messages exactly once, even across crashes."""

        async def op(tx: Tx) -> None:
            await tx.executemany(
                "INSERT INTO slack_outbox (audit_id, thread, channel, method, ref, parent, "
                "payload, status, next_at, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                [
                    (i.audit_id, i.thread, i.channel, i.method, i.ref, i.parent, *_payload(i, at))
                    for i in items
                ],
            )
            await put_setting(tx, CURSOR, cursor, at)

        await self._write(op)

    async def outbox_due(self, now: float, limit: int) -> list[OutboxRow]:
        """The first pending message of each thread, if it is due: one at a time per thread
        keeps every thread in order."""

        async def op(tx: Tx) -> list[OutboxRow]:
            sql = (
                f"SELECT {rows.OUTBOX_COLUMNS} FROM slack_outbox o WHERE status = 'pending' "
                "AND id = (SELECT MIN(id) FROM slack_outbox WHERE thread = o.thread "
                "AND status = 'pending') AND next_at <= ? ORDER BY id LIMIT ?"
            )
            return [rows.outbox(r) for r in await tx.fetch(sql, now, limit)]

        return await self._read(op)

    async def outbox_done(
        self,
        row_id: int,
        status: str,
        at: float,
        error: str = "",
        sent: tuple[str, str, str] | None = None,
    ) -> None:
        """Mark a message sent (remembering (ref, channel, ts) for later updates) or failed."""
        await self.outbox_delivered([Delivered(row_id, status, at, error, sent)])

    async def outbox_delivered(self, done: list[Delivered]) -> None:
        """Record a delivery pass's messages, sent or failed, in one commit (issue 17: a commit
        per message was most of the outbox's writes)."""

        async def op(tx: Tx) -> None:
            await tx.executemany(
                "UPDATE slack_outbox SET status = ?, sent_at = ?, error = ?, "
                "attempts = attempts + 1 WHERE id = ?",
                [(d.status, d.at, d.error, d.row_id) for d in done],
            )
            sent = [d.sent for d in done if d.sent is not None]
            if sent:
                await tx.executemany(
                    "INSERT INTO slack_messages (ref, channel, ts) VALUES (?, ?, ?) "
                    "ON CONFLICT (ref) DO UPDATE SET channel = excluded.channel, ts = excluded.ts",
                    sent,
                )

        if done:
            await self._write(op)

    async def outbox_retry(self, row_id: int, next_at: float, error: str) -> None:
        async def op(tx: Tx) -> None:
            sql = (
                "UPDATE slack_outbox SET attempts = attempts + 1, next_at = ?, error = ? "
                "WHERE id = ?"
            )
            await tx.execute(sql, next_at, error, row_id)

        await self._write(op)

    async def outbox_stats(self) -> tuple[int, float | None]:
        """Pending messages, and when the earliest of them is due."""

        async def op(tx: Tx) -> tuple[int, float | None]:
            sql = (
                "SELECT COUNT(*) AS n, MIN(next_at) AS due FROM slack_outbox "
                "WHERE status = 'pending'"
            )
            r = await tx.fetchrow(sql)
            assert r is not None  # an aggregate returns one row
            return int(r["n"]), r["due"]

        return await self._read(op)

    async def slack_message(self, ref: str) -> tuple[str, str] | None:
        async def op(tx: Tx) -> tuple[str, str] | None:
            r = await tx.fetchrow("SELECT channel, ts FROM slack_messages WHERE ref = ?", ref)
            return None if r is None else (r["channel"], r["ts"])

        return await self._read(op)


def _payload(item: OutboxItem, at: float) -> tuple[str, float, float]:
    return json.dumps(item.payload), at, at  # payload, next_at, created_at
