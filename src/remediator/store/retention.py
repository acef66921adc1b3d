"""Deleting what is no longer needed, a small batch per transaction: journal entries already
decided, resolved incidents with everything that hangs from them (alert instances, claims,
attempts, approvals, audit lines, Slack message refs, their page), and delivered or given-up
Slack messages and pager events. The caller (remediator.retention) says how old is old enough;
an open incident, or one with an unfinished claim, is never deleted, and neither is a message or
pager event still waiting for delivery."""

from __future__ import annotations

from remediator.store.sql import Runner, Tx, marks

# What hangs from a batch of incidents, deleted children first. `{ids}` is the batch's marks.
_CASCADE = (
    (
        "attempts",
        "DELETE FROM attempts WHERE claim_id IN "
        "(SELECT id FROM claims WHERE incident_id IN ({ids}))",
    ),
    ("approvals", "DELETE FROM approvals WHERE incident_id IN ({ids})"),
    ("claims", "DELETE FROM claims WHERE incident_id IN ({ids})"),
    ("alert_instances", "DELETE FROM alert_instances WHERE incident_id IN ({ids})"),
    ("audit", "DELETE FROM audit WHERE incident_id IN ({ids})"),
    ("pages", "DELETE FROM pages WHERE incident_id IN ({ids})"),
    ("incidents", "DELETE FROM incidents WHERE id IN ({ids})"),
)


class RetentionSQL(Runner):
    async def prune_journal(self, decided_before: float, limit: int) -> int:
        """Delete up to `limit` journal entries decided before `decided_before`; how many."""

        async def op(tx: Tx) -> int:
            return await tx.execute(
                "DELETE FROM journal WHERE id IN (SELECT id FROM journal WHERE processed_at < ? "
                "ORDER BY processed_at LIMIT ?)",
                decided_before,
                limit,
            )

        return await self._write(op)

    async def prune_incidents(self, resolved_before: float, limit: int) -> dict[str, int]:
        """Delete up to `limit` incidents resolved before `resolved_before` whose claims have
        all finished, with what hangs from them; the rows deleted per table."""
        return await self._write(lambda tx: _prune_incidents(tx, resolved_before, limit))

    async def prune_outbox(self, before: float, limit: int) -> int:
        """Delete up to `limit` Slack messages delivered or given up before `before`."""

        async def op(tx: Tx) -> int:
            return await tx.execute(
                "DELETE FROM slack_outbox WHERE id IN (SELECT id FROM slack_outbox "
                "WHERE status != 'pending' AND created_at < ? ORDER BY id LIMIT ?)",
                before,
                limit,
            )

        return await self._write(op)

    async def prune_pages(self, before: float, limit: int) -> dict[str, int]:
        """Delete up to `limit` pager events delivered or given up before `before`, and up to
        `limit` pages whose incident is gone (pruned before pages went with it); the rows
        deleted per table, none when nothing was. Pending events stay, whatever their age."""
        return await self._write(lambda tx: _prune_pages(tx, before, limit))


async def _prune_pages(tx: Tx, before: float, limit: int) -> dict[str, int]:
    deleted = {
        "page_outbox": await tx.execute(
            "DELETE FROM page_outbox WHERE id IN (SELECT id FROM page_outbox "
            "WHERE status != 'pending' AND created_at < ? ORDER BY id LIMIT ?)",
            before,
            limit,
        ),
        "pages": await tx.execute(
            "DELETE FROM pages WHERE incident_id IN (SELECT incident_id FROM pages p "
            "WHERE NOT EXISTS (SELECT 1 FROM incidents i WHERE i.id = p.incident_id) "
            "ORDER BY incident_id LIMIT ?)",
            limit,
        ),
    }
    return {table: n for table, n in deleted.items() if n}


async def _prune_incidents(tx: Tx, resolved_before: float, limit: int) -> dict[str, int]:
    found = await tx.fetch(
        "SELECT id FROM incidents i WHERE status = 'resolved' AND resolved_at < ? "
        "AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.incident_id = i.id "
        "AND c.finished_at IS NULL) ORDER BY resolved_at LIMIT ?",
        resolved_before,
        limit,
    )
    ids = [r["id"] for r in found]
    if not ids:
        return {}
    deleted = {}
    refs = [f"incident:{i}" for i in ids]
    approvals = await tx.fetch(
        f"SELECT id FROM approvals WHERE incident_id IN ({marks(ids)})", *ids
    )
    refs += [f"approval:{r['id']}" for r in approvals]
    deleted["slack_messages"] = await tx.execute(
        f"DELETE FROM slack_messages WHERE ref IN ({marks(refs)})", *refs
    )
    for table, sql in _CASCADE:
        deleted[table] = await tx.execute(sql.format(ids=marks(ids)), *ids)
    return deleted
