"""Incidents and their alert instances: what the engine loads at start, reads per batch and
commits with the journal entries a batch came from."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from remediator import approvals
from remediator.incidents import Incident
from remediator.store import rows
from remediator.store.audit import insert_audit, insert_audits
from remediator.store.claims import close_claim
from remediator.store.dialect import LOCK_STARTS
from remediator.store.leadership import fence
from remediator.store.records import (
    AWAITING_APPROVAL,
    CLAIMED,
    HELD,
    INTERRUPTED,
    RUNNING,
    SUCCEEDED,
    VERIFY_FAILED,
    Applied,
    AuditEntry,
    Changes,
    Claim,
    IncidentWrite,
    InstanceWrite,
    NewClaim,
)
from remediator.store.sql import (
    Runner,
    Tx,
    chunks,
    chunks_to_pad,
    marks,
    pad,
    typed_rows,
    value_rows,
)
from remediator.store.starts import Offer, judge_and_start

InstanceKey = tuple[str, str, float]  # (rule, fingerprint, startsAt)
_KEY_TYPES = ("TEXT", "TEXT", "DOUBLE PRECISION")
_RESOLVED = (
    "WITH k (rule, fingerprint, starts_at) AS (VALUES {rows}) SELECT k.rule, k.fingerprint, "
    "k.starts_at FROM k JOIN alert_instances a ON a.rule = k.rule "
    "AND a.fingerprint = k.fingerprint AND a.starts_at = k.starts_at WHERE a.status = 'resolved'"
)
# claims that took, or may still take, effect (once_per_incident); verification apart
LOAD_PAGE = 5_000  # open incidents read per query at start
_MAY_TAKE_EFFECT = (CLAIMED, RUNNING, HELD, AWAITING_APPROVAL, SUCCEEDED, INTERRUPTED)


class IncidentsSQL(Runner):
    # whether the engine offers apply the claims it makes to start (offers.py): both backends
    # do (a backend that declines leaves them to the executor's own start)
    starts_offered = True

    async def load_open_incidents(self) -> list[Incident]:
        return await self._read(_load_open_incidents)

    async def resolved_instances(self, keys: list[InstanceKey]) -> set[InstanceKey]:
        async def op(tx: Tx) -> set[InstanceKey]:
            found: set[InstanceKey] = set()
            for chunk in chunks_to_pad(keys):
                sql = _RESOLVED.format(rows=typed_rows(_KEY_TYPES, len(chunk) + pad(len(chunk))))
                args = [v for key in chunk for v in key] + [None] * 3 * pad(len(chunk))
                found |= {
                    (r["rule"], r["fingerprint"], r["starts_at"])
                    for r in await tx.fetch(sql, *args)
                }
            return found & set(keys)

        return await self._peek(op) if keys else set()

    async def recent_starts(self, rule: str, key: tuple[str, ...], since: float) -> list[float]:
        async def op(tx: Tx) -> list[float]:
            sql = (
                "SELECT a.starts_at FROM alert_instances a JOIN incidents i "
                "ON a.incident_id = i.id WHERE i.rule = ? AND i.incident_key = ? "
                "AND a.rule = ? AND a.starts_at >= ?"
            )
            found = await tx.fetch(sql, rule, json.dumps(list(key)), rule, since)
            return [r["starts_at"] for r in found]

        return await self._read(op)

    async def ran_actions(self, incident_id: int) -> set[str]:
        """Actions that may have taken effect for this incident: succeeded, interrupted (the
        target may have seen it) or still running. What `if_ran` undoes."""
        return (await self.ran_actions_of([incident_id]))[incident_id]

    async def ran_actions_of(self, incident_ids: list[int]) -> dict[int, set[str]]:
        """ran_actions for several incidents in one read; every id is a key."""

        async def op(tx: Tx) -> dict[int, set[str]]:
            sql = (
                f"SELECT DISTINCT incident_id, action FROM claims "
                f"WHERE incident_id IN ({marks(incident_ids)}) "
                "AND +status IN (?, ?, ?)"  # + keeps SQLite on these incidents' claims
            )
            ran: dict[int, set[str]] = {i: set() for i in incident_ids}
            for r in await tx.fetch(sql, *incident_ids, SUCCEEDED, INTERRUPTED, RUNNING):
                ran[r["incident_id"]].add(r["action"])
            return ran

        return await self._read(op) if incident_ids else {}

    async def done_actions(self, incident_id: int) -> set[str]:
        """Actions claimed for this incident that did, or still may, take effect: not failed,
        refused, skipped, not run for a precondition, dry-run, nor failed their verification.
        What `once_per_incident` does not repeat."""

        async def op(tx: Tx) -> set[str]:
            sql = (
                "SELECT DISTINCT action FROM claims WHERE incident_id = ? AND status IN "
                "(?, ?, ?, ?, ?, ?) AND (verify_status IS NULL OR verify_status != ?)"
            )
            found = await tx.fetch(sql, incident_id, *_MAY_TAKE_EFFECT, VERIFY_FAILED)
            return {str(r["action"]) for r in found}

        return await self._read(op)

    async def incident_status(self, incident_id: int) -> str | None:
        async def op(tx: Tx) -> str | None:
            status = await tx.fetchval("SELECT status FROM incidents WHERE id = ?", incident_id)
            return None if status is None else str(status)

        return await self._read(op)

    async def incident_results(self, incident_id: int) -> dict[str, str]:
        """The output of each action that succeeded for this incident (the last one's, if an
        action ran in several tiers)."""

        async def op(tx: Tx) -> dict[str, str]:
            sql = (  # + keeps SQLite on the incident's claims, not every succeeded claim
                "SELECT c.action, a.output FROM claims c JOIN attempts a ON a.claim_id = c.id "
                "WHERE c.incident_id = ? AND +c.status = ? AND a.ok = 1 ORDER BY a.id"
            )
            return {r["action"]: r["output"] for r in await tx.fetch(sql, incident_id, SUCCEEDED)}

        return await self._read(op)

    async def incident_alert(self, incident_id: int) -> tuple[dict[str, str], dict[str, str]]:
        """The labels and annotations of the incident's latest alert."""

        async def op(tx: Tx) -> tuple[dict[str, str], dict[str, str]]:
            sql = "SELECT labels, annotations FROM incidents WHERE id = ?"
            r = await tx.fetchrow(sql, incident_id)
            return (
                ({}, {}) if r is None else (json.loads(r["labels"]), json.loads(r["annotations"]))
            )

        return await self._read(op)

    async def apply(self, changes: Changes, offer: Offer | None = None) -> Applied:
        """Fenced if it decides (incidents, claims, journal entries): a deposed leader's batch
        is refused. Audit lines alone (any replica's control) are not fenced. Relaxed if it
        marks journal entries decided (an engine batch) and starts nothing: lost to a power
        cut, they are decided again at start, and any action or message that came of it
        committed durably first. `offer`: the claims it makes that the offer returns a start
        for are judged and, if allowed, started in its transaction (start_claims_if's work,
        under the starts lock); then it commits durably, as a start does."""
        epoch = self.epoch if changes.incidents or changes.claims or changes.journal_ids else None

        async def op(tx: Tx) -> Applied:
            await fence(tx, epoch)
            applied = await _apply(tx, changes)
            return applied if offer is None else await _start_offered(tx, applied, offer)

        return await self._write(op, relaxed=bool(changes.journal_ids) and offer is None)

    async def rename_rule(
        self, old: str, new: str, audit: Callable[[int], AuditEntry]
    ) -> AuditEntry | None:
        """Move what was recorded under a rule's previous name to its new name: incidents,
        alert instances, claims (the cooldown reads them), approvals and mutes. An open incident
        whose key is already open under the new name stays behind. The audit line, made from
        the number of incidents moved, is written only if anything moved."""

        async def op(tx: Tx) -> AuditEntry | None:
            moved = await _rename_rule(tx, old, new)
            return await insert_audit(tx, audit(moved)) if moved else None

        return await self._write(op)


async def _load_open_incidents(tx: Tx) -> list[Incident]:
    """A page at a time, and only what the engine caches: 100,000 open incidents' rows with
    their labels and annotations, read at once, left the daemon's resident memory about 110 MiB
    higher for good (bench/startup.py's memory section)."""
    sql = (
        f"SELECT {rows.OPEN_INCIDENT_COLUMNS} FROM incidents "
        f"WHERE status = 'open' AND id > ? ORDER BY id LIMIT {LOAD_PAGE}"
    )
    loaded: list[Incident] = []
    after = 0
    while page := await tx.fetch(sql, after):
        first, after = page[0]["id"], page[-1]["id"]
        instances = await _firing_instances(tx, first, after)
        loaded += [rows.open_incident(r, instances.get(r["id"], {})) for r in page]
    return loaded


async def _firing_instances(
    tx: Tx, first: int, last: int
) -> dict[int, dict[tuple[str, float], float | None]]:
    """The firing alert instances of the incidents from id `first` to `last`, by incident."""
    instances: dict[int, dict[tuple[str, float], float | None]] = {}
    sql = (
        "SELECT incident_id, fingerprint, starts_at, value FROM alert_instances "
        "WHERE status = 'firing' AND incident_id BETWEEN ? AND ?"
    )
    for r in await tx.fetch(sql, first, last):
        instances.setdefault(r["incident_id"], {})[(r["fingerprint"], r["starts_at"])] = r["value"]
    return instances


async def _apply(tx: Tx, changes: Changes) -> Applied:
    """Rows of one kind in one statement each where their order allows (multi-row VALUES):
    one round trip per kind, not per row, on PostgreSQL."""
    ids = await _write_incidents(tx, changes.incidents)

    def real(incident_id: int) -> int:
        return ids.get(incident_id, incident_id)

    await tx.executemany(
        _UPSERT_INSTANCE, [_instance(i, real(i.incident_id)) for i in changes.instances]
    )
    claims = await _insert_claims(tx, changes.claims, real)
    audit = await insert_audits(tx, [_with_incident(e, real) for e in changes.audit])
    resolved = [w.incident.id for w in changes.incidents if w.incident.status == "resolved"]
    audit += await _cancel_approvals(tx, [real(i) for i in resolved], changes.at)
    await tx.executemany(
        "UPDATE journal SET processed_at = ? WHERE id = ?",
        [(changes.at, jid) for jid in changes.journal_ids],
    )
    return Applied(ids, claims, audit)


async def _start_offered(tx: Tx, applied: Applied, offer: Offer) -> Applied:
    """The claims the apply made that `offer` offers, judged together on the facts the apply
    left, and those allowed started."""
    starts = [s for claim in applied.claims if (s := offer(claim)) is not None]
    if not starts:
        return applied
    await fence(tx, None, lock=LOCK_STARTS)  # taken last: held from here to the commit
    done = await judge_and_start(tx, starts)
    started = {s.claim.id: s.request for s, (_, ok) in zip(starts, done, strict=True) if ok}
    return replace(applied, started=started)


async def _write_incidents(tx: Tx, writes: Sequence[IncidentWrite]) -> dict[int, int]:
    """Insert the new incidents and update the others, in order: new ones that follow one
    another go in one statement, each update after what came before it (an incident resolved
    and one opened on its key in one batch). The real id of each new incident's placeholder."""
    ids: dict[int, int] = {}
    run: dict[int, IncidentWrite] = {}  # new incidents not inserted yet, by placeholder
    for write in writes:
        placeholder = write.incident.id
        if placeholder < 0 and placeholder not in ids and placeholder not in run:
            run[placeholder] = write
            continue
        ids.update(await _insert_incidents(tx, run))
        run = {}
        await _update_incident(tx, write, ids.get(placeholder, placeholder))
    ids.update(await _insert_incidents(tx, run))
    return ids


_UPSERT_INSTANCE = (
    "INSERT INTO alert_instances (rule, fingerprint, starts_at, incident_id, status, "
    "value, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (rule, fingerprint, starts_at) DO UPDATE SET status = excluded.status, "
    "value = excluded.value, last_seen = excluded.last_seen"
)


def _instance(inst: InstanceWrite, incident_id: int) -> tuple[Any, ...]:
    return (
        inst.rule,
        inst.fingerprint,
        inst.starts_at,
        incident_id,
        inst.status,
        inst.value,
        inst.at,
        inst.at,
    )


_INSERT_CLAIMS = (
    "INSERT INTO claims (incident_id, step, action, kind, target, rule, idempotency_key, "
    "context, status, claimed_at) VALUES {rows} "
    f"ON CONFLICT (incident_id, step, action) DO NOTHING RETURNING {rows.CLAIM_COLUMNS}"
)


async def _insert_claims(
    tx: Tx, news: Sequence[NewClaim], real: Callable[[int], int]
) -> list[Claim]:
    """The claims, in order, but for those whose (incident, step, action) is already claimed."""
    claims: list[Claim] = []
    for chunk in chunks(news):
        args = [
            v
            for c in chunk
            for v in (
                real(c.incident_id),
                c.step,
                c.action,
                c.kind,
                c.target,
                c.rule,
                c.idempotency_key,
                json.dumps(c.context),
                CLAIMED,
                c.at,
            )
        ]
        found = await tx.fetch(_INSERT_CLAIMS.format(rows=value_rows(10, len(chunk))), *args)
        claims += sorted((rows.claim(r) for r in found), key=lambda c: c.id)
    return claims


async def _cancel_approvals(tx: Tx, incident_ids: list[int], at: float) -> list[AuditEntry]:
    """The incidents resolved: the pending approvals that approvals.cancelled_on_resolution
    names are cancelled, their claims closed as it says."""
    if not incident_ids:
        return []
    sql = (
        f"SELECT {', '.join('a.' + c for c in rows.APPROVAL_COLUMNS.split(', '))}, c.step "
        f"FROM approvals a JOIN claims c ON c.id = a.claim_id "
        f"WHERE a.incident_id IN ({marks(incident_ids)}) AND a.status = 'pending' "
        "AND c.status = ?"
    )
    entries = []
    for r in await tx.fetch(sql, *incident_ids, AWAITING_APPROVAL):
        approval = rows.approval(r)
        if not approvals.cancelled_on_resolution(r["step"]):
            continue
        await tx.execute(
            "UPDATE approvals SET status = 'cancelled', decided_by = 'remediator', "
            "decided_at = ?, reason = ? WHERE id = ?",
            at,
            approvals.CANCELLED_BECAUSE,
            approval.id,
        )
        await close_claim(tx, approval.claim_id, approvals.after_cancellation(approval), at)
        entries.append(
            await insert_audit(tx, approvals.cancellation_audit(approval, r["step"], at))
        )
    return entries


_INSERT_INCIDENTS = (
    "INSERT INTO incidents (rule, incident_key, key_labels, status, tier, value, labels, "
    "annotations, opened_at, tier_at, updated_at, resolved_at, generator_url, external_url) "
    "VALUES {rows} RETURNING id"
)


async def _insert_incidents(tx: Tx, writes: Mapping[int, IncidentWrite]) -> dict[int, int]:
    """The real id of each placeholder. A multi-row VALUES inserts its rows in order, each
    taking the next id: the ids it returns, sorted, are its rows'."""
    ids: dict[int, int] = {}
    for chunk in chunks(list(writes.items())):
        args = [v for _, write in chunk for v in _incident(write)]
        found = await tx.fetch(_INSERT_INCIDENTS.format(rows=value_rows(14, len(chunk))), *args)
        new = sorted(int(r["id"]) for r in found)
        ids.update((placeholder, i) for (placeholder, _), i in zip(chunk, new, strict=True))
    return ids


def _incident(write: IncidentWrite) -> tuple[Any, ...]:
    i = write.incident
    return (
        i.rule,
        json.dumps(list(i.key)),
        json.dumps(dict(write.key_labels)),
        i.status,
        i.tier,
        i.value,
        json.dumps(dict(write.labels or {})),
        json.dumps(dict(write.annotations or {})),
        i.opened_at,
        i.tier_at,
        i.updated_at,
        i.resolved_at,
        write.generator_url or "",
        write.external_url or "",
    )


async def _update_incident(tx: Tx, write: IncidentWrite, incident_id: int) -> None:
    i = write.incident
    await tx.execute(
        "UPDATE incidents SET status = ?, tier = ?, value = ?, tier_at = ?, updated_at = ?, "
        "resolved_at = ?, labels = COALESCE(?, labels), annotations = COALESCE(?, annotations), "
        "generator_url = COALESCE(?, generator_url), external_url = COALESCE(?, external_url) "
        "WHERE id = ?",
        i.status,
        i.tier,
        i.value,
        i.tier_at,
        i.updated_at,
        i.resolved_at,
        None if write.labels is None else json.dumps(dict(write.labels)),
        None if write.annotations is None else json.dumps(dict(write.annotations)),
        write.generator_url or None,
        write.external_url or None,
        incident_id,
    )


async def _rename_rule(tx: Tx, old: str, new: str) -> int:
    """The number of incidents moved from `old` to `new`, with their dependants."""
    moved = await tx.execute(
        "UPDATE incidents SET rule = ? WHERE rule = ? AND NOT (status = 'open' AND EXISTS ("
        "SELECT 1 FROM incidents n WHERE n.rule = ? AND n.status = 'open' "
        "AND n.incident_key = incidents.incident_key))",
        new,
        old,
        new,
    )
    await tx.execute(
        "UPDATE alert_instances SET rule = ? WHERE rule = ? AND NOT EXISTS ("
        "SELECT 1 FROM alert_instances n WHERE n.rule = ? "
        "AND n.fingerprint = alert_instances.fingerprint "
        "AND n.starts_at = alert_instances.starts_at)",
        new,
        old,
        new,
    )
    for table in ("claims", "approvals", "mutes"):
        await tx.execute(f"UPDATE {table} SET rule = ? WHERE rule = ?", new, old)
    return moved


def _with_incident(e: AuditEntry, real: Callable[[int], int]) -> AuditEntry:
    return e if e.incident_id is None else replace(e, incident_id=real(e.incident_id))
