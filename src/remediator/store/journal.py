"""The journal: every notification, written before the webhook is acknowledged."""

from __future__ import annotations

from remediator.store.audit import insert_audit
from remediator.store.leadership import fence
from remediator.store.records import AuditEntry
from remediator.store.sql import Runner, Tx, marks


class JournalSQL(Runner):
    async def append_journal(self, body: str, at: float) -> int:
        async def op(tx: Tx) -> int:
            sql = "INSERT INTO journal (received_at, body) VALUES (?, ?) RETURNING id"
            return int(await tx.fetchval(sql, at, body))

        return await self._write(op, urgent=True)

    async def quarantine_journal(self, journal_id: int, reason: str, audit: AuditEntry) -> None:
        """Set an entry the engine could not decide aside: marked processed, its reason kept,
        audited, in one transaction. Fenced: a deposed leader sets nothing aside."""
        epoch = self.epoch

        async def op(tx: Tx) -> None:
            await fence(tx, epoch)
            sql = (
                "UPDATE journal SET processed_at = ?, quarantined_at = ?, quarantine_reason = ? "
                "WHERE id = ?"
            )
            await tx.execute(sql, audit.at, audit.at, reason, journal_id)
            await insert_audit(tx, audit)

        await self._write(op)

    async def quarantined_journal(self) -> list[tuple[int, str]]:
        async def op(tx: Tx) -> list[tuple[int, str]]:
            sql = "SELECT id, quarantine_reason FROM journal WHERE quarantined_at IS NOT NULL"
            return [(r["id"], r["quarantine_reason"]) for r in await tx.fetch(sql)]

        return await self._read(op)

    async def unprocessed_journal(self) -> list[tuple[int, str]]:
        async def op(tx: Tx) -> list[tuple[int, str]]:
            sql = "SELECT id, body FROM journal WHERE processed_at IS NULL ORDER BY id"
            return [(r["id"], r["body"]) for r in await tx.fetch(sql)]

        return await self._read(op)

    async def unprocessed_ids(self, limit: int) -> list[int]:
        """The first `limit` entries no one decided yet, by id: what the leader reads of every
        replica's journal (feed.py)."""

        async def op(tx: Tx) -> list[int]:
            sql = "SELECT id FROM journal WHERE processed_at IS NULL ORDER BY id LIMIT ?"
            return [int(r["id"]) for r in await tx.fetch(sql, limit)]

        return await self._read(op)

    async def journal_bodies(self, ids: list[int]) -> list[tuple[int, str]]:
        """(id, body) of these entries, by id."""

        async def op(tx: Tx) -> list[tuple[int, str]]:
            found: list[tuple[int, str]] = []
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                sql = f"SELECT id, body FROM journal WHERE id IN ({marks(chunk)}) ORDER BY id"
                found += [(int(r["id"]), r["body"]) for r in await tx.fetch(sql, *chunk)]
            return found

        return await self._read(op)

    async def journal_between(self, since: float, until: float) -> list[tuple[int, float, str]]:
        """(id, received_at, body) of the notifications received in [since, until], in the
        order they were received: what `remediator replay` decides again."""

        async def op(tx: Tx) -> list[tuple[int, float, str]]:
            sql = (
                "SELECT id, received_at, body FROM journal "
                "WHERE received_at >= ? AND received_at <= ? ORDER BY id"
            )
            rows = await tx.fetch(sql, since, until)
            return [(r["id"], float(r["received_at"]), r["body"]) for r in rows]

        return await self._read(op)
