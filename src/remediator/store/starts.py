"""Judge claims on the store's facts and start those the guardrails allow, several in one
transaction (start_claim_if's work).

The starts lock is taken once, and each fact is read once for all the claims judged together
(one statement each, not one per claim); the claims are then judged one after another, in the
order submitted, each on the facts as the starts before it in the batch left them (a start is
one more start for budgets, the last start of its incident key for cooldowns, and a running
claim on its target or lane), and the allowed ones are started in one statement. So judging N
claims together decides what judging them one at a time would, for a constant number of round
trips. One transaction judges one claim on SQLite (its writer runs them one after another);
PostgreSQL's starts batcher (batcher.py) gives it every claim that waits."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from remediator.guardrails import Verdict
from remediator.store import rows
from remediator.store.claims import breaker_failures, breaker_newest, breaker_quiet
from remediator.store.dialect import LOCK_STARTS
from remediator.store.leadership import fence
from remediator.store.records import (
    CLAIM_LEASE,
    CLAIMED,
    EVERY_FACT,
    RUNNING,
    STARTED,
    Claim,
    MuteRow,
    Needed,
    TargetHistory,
)
from remediator.store.sql import Row, Runner, Tx, chunks_to_pad, literal, marks, pad, typed_rows

Judge = Callable[[TargetHistory, list[MuteRow]], Verdict | None]
Started = tuple[Verdict | None, bool]


@dataclass(frozen=True, slots=True)
class StartIf:
    """One claim to judge at `now` and start if allowed (ClaimsSQL.start_claim_if's arguments)."""

    claim: Claim
    request: Mapping[str, Any]
    now: float
    since: float  # budgets count the starts since then
    judge: Judge
    lane: str | None = None  # what of its target the claim holds (None: all of it)
    sent: bool = False  # its request leaves at once: sent_at is its start
    needed: Needed = EVERY_FACT  # the facts its policy judges it on (the others are not read)
    epoch: int | None = None  # the leadership epoch it is decided in (fenced)


# what starting a claim an engine batch makes needs, given the claim as inserted (its id is
# only known then), or None to leave it claimed: called by apply in its transaction, so pure
Offer = Callable[[Claim], StartIf | None]


class StartsChanged(Exception):
    """A claim judged in a batch was no longer claimed when started: the claims after it were
    judged as if it had started. The batch runs again, each claim on its own."""


async def start_claims_if(tx: Tx, batch: Sequence[StartIf]) -> list[Started]:
    """Each claim's verdict and whether it started, in the order of `batch`, in one transaction
    that holds the starts lock to its commit."""
    first, *others = dict.fromkeys(s.epoch for s in batch)
    await fence(tx, first, lock=LOCK_STARTS)
    for epoch in others:
        await fence(tx, epoch)
    return await judge_and_start(tx, batch)


async def judge_and_start(tx: Tx, batch: Sequence[StartIf]) -> list[Started]:
    """start_claims_if's work in a transaction that is already fenced and holds the starts lock
    (an engine batch's apply, which starts the claims it makes: incidents.py)."""
    histories, mutes = await _histories(tx, batch)
    results: list[Started] = []
    begun: list[tuple[StartIf, str | None]] = []  # allowed so far, with their incident key
    for start, (history, key) in zip(batch, histories, strict=True):
        verdict = start.judge(
            after(history, start, key, begun), [m for m in mutes if m.until > start.now]
        )
        allowed = verdict is not None and verdict.outcome == "allow"
        results.append((verdict, allowed))
        if allowed:
            begun.append((start, key))
    started = await _start_all(tx, [s for s, _ in begun])
    if len(batch) == 1:
        return [(results[0][0], results[0][1] and batch[0].claim.id in started)]
    if started != {s.claim.id for s, _ in begun}:
        raise StartsChanged("a claim of the batch changed before it started")
    return results


def after(
    history: TargetHistory,
    start: StartIf,
    key: str | None,
    begun: Sequence[tuple[StartIf, str | None]],
) -> TargetHistory:
    """`start`'s facts once the claims `begun` before it in its batch have started (each with its
    incident key): what target_history would read after their starts."""
    if not begun:
        return history
    claim, needed = start.claim, start.needed
    counted = [b for b, _ in begun if needed.budgets and b.now >= start.since]
    since = [b.now for b in counted]
    same_action = [b.now for b in counted if b.claim.action == claim.action]
    others = [
        b.now
        for b, other_key in begun
        if needed.cooldown
        and other_key is not None
        and other_key == key
        and b.claim.incident_id != claim.incident_id
        and (b.claim.rule, b.claim.target) == (claim.rule, claim.target)
    ]
    last = max([*others, *([] if history.last_other_start is None else [history.last_other_start])],
               default=None)  # fmt: skip
    busy = any(
        b.claim.target == claim.target
        and b.claim.id != claim.id
        and (start.lane is None or b.lane is None or b.lane == start.lane)
        for b, _ in begun
    )
    return replace(
        history,
        last_other_start=last,
        started_global=[*history.started_global, *since],
        started_action=[*history.started_action, *same_action],
        target_busy=history.target_busy or busy,
    )


_APPROVAL = ", ".join(f"a.{column}" for column in rows.APPROVAL_COLUMNS.split(", "))
# a batch's claims, with which of the facts each needs (1: read; else NULL in its row)
_BATCH = "n, claim_id, incident_id, rule, target, lane, cooldown, breaker, approval"
_FACT_TYPES = (
    "INTEGER",
    "BIGINT",
    "BIGINT",
    "TEXT",
    "TEXT",
    "TEXT",
    "INTEGER",
    "INTEGER",
    "INTEGER",
)
_STARTED = marks(STARTED)
# the single facts of every claim of a batch, one row each (what target_history read per claim),
# each read only for a claim that needs it (CASE evaluates its subquery only then), and whether
# any mute is active. The cooldown's read costs what the claim's key's history costs: each
# incident of the key (incidents_key), then its claims (by incident; `|| ''` keeps both planners
# off the claims' other indexes). Written as a join, both planners may walk every claim of the
# target instead, and PostgreSQL does without fresh statistics (a table grown since its last
# ANALYZE): 39 ms for 8 claims after 3,000 actions on one target, against 1.4 ms. The breaker's
# failures are read after it (breaker_failures) only for a target that may have one since its
# last success (breaker_quiet: three steps along claims_target_status say it has none).
_FACTS = (
    f"WITH batch ({_BATCH}) AS (VALUES {{values}}) "
    f"SELECT b.n, k.incident_key, k.status AS incident_status, {_APPROVAL}, "
    "CASE WHEN b.cooldown = 1 THEN "
    "(SELECT MAX((SELECT MAX(c.started_at) FROM claims c WHERE c.incident_id = i.id "
    "AND c.rule || '' = b.rule AND c.target || '' = b.target "
    f"AND c.status || '' IN ({_STARTED}))) "
    "FROM incidents i WHERE i.incident_key = k.incident_key AND i.id != b.incident_id) "
    "END AS last_other, "
    f"EXISTS (SELECT 1 FROM claims c WHERE c.target = b.target AND c.status = {literal(RUNNING)} "
    "AND c.id != b.claim_id AND (b.lane IS NULL OR c.lane IS NULL OR c.lane = b.lane)) AS busy, "
    + "".join(
        f"CASE WHEN b.breaker = 1 THEN {sql} END AS {name}, "
        for name, sql in breaker_newest("b.target").items()
    )
    + "EXISTS (SELECT 1 FROM mutes WHERE ended_at IS NULL AND until > ?) AS muted "
    "FROM batch b LEFT JOIN incidents k ON k.id = b.incident_id "
    "LEFT JOIN approvals a ON a.claim_id = b.claim_id AND b.approval = 1 ORDER BY b.n"
)


@cache
def _facts_sql(rows_in: int) -> str:
    """_FACTS for a VALUES of `rows_in` rows (a power of two: a few texts, built once each)."""
    return _FACTS.format(values=typed_rows(_FACT_TYPES, rows_in))


# the starts since a time (budgets) and the active mutes (claims.active_mutes' condition), in one
# round trip: one row shape, each kind's columns NULL in the other's rows
_STARTS_AND_MUTES = (
    "SELECT 'start' AS kind, action, started_at, "
    + ", ".join(f"NULL AS {column}" for column in rows.MUTE_COLUMNS.split(", "))
    + f" FROM claims WHERE started_at >= ? AND +status IN ({_STARTED}) UNION ALL "
    f"SELECT 'mute', NULL, NULL, {rows.MUTE_COLUMNS} FROM mutes "
    "WHERE ended_at IS NULL AND until > ?"
)


def _needs(s: StartIf) -> list[Any]:
    """The claim's row of the batch's flags: 1 for a fact it needs, NULL for one it does not."""
    n = s.needed
    return [1 if n.cooldown else None, 1 if n.breaker else None, 1 if n.approval else None]


async def _facts(tx: Tx, batch: Sequence[StartIf]) -> list[Row]:
    """Each claim's row of _FACTS, in the order of `batch`."""
    facts: list[Row] = []
    now = min(s.now for s in batch)
    for chunk in chunks_to_pad(batch):
        args: list[Any] = []
        for n, s in enumerate(chunk):
            c = s.claim
            args += [n, c.id, c.incident_id, c.rule, c.target, s.lane, *_needs(s)]
        args += [None] * len(_FACT_TYPES) * pad(len(chunk))
        sql = _facts_sql(len(chunk) + pad(len(chunk)))
        facts += [f for f in await tx.fetch(sql, *args, *STARTED, now) if f["n"] is not None]
    return facts


async def _starts_and_mutes(
    tx: Tx, batch: Sequence[StartIf], muted: bool
) -> tuple[list[Row], list[MuteRow]]:
    """The starts since the earliest `since` of the claims that count them (budgets), and the
    mutes active at the earliest of their times, if any is (`muted`): nothing read if neither."""
    since = min((s.since for s in batch if s.needed.budgets), default=None)
    if since is None and not muted:
        return [], []
    found = await tx.fetch(
        _STARTS_AND_MUTES,
        float("inf") if since is None else since,
        *STARTED,
        min(s.now for s in batch),
    )
    starts = [r for r in found if r["kind"] == "start"]
    mutes = sorted((rows.mute(r) for r in found if r["kind"] == "mute"), key=lambda m: -m.id)
    return starts, mutes


async def _histories(
    tx: Tx, batch: Sequence[StartIf]
) -> tuple[list[tuple[TargetHistory, str | None]], list[MuteRow]]:
    """Each claim's facts as the store has them (those it needs), with its incident's key; the
    mutes active at the earliest of their times (each claim is judged with those active at its
    own)."""
    facts = await _facts(tx, batch)
    starts, mutes = await _starts_and_mutes(tx, batch, any(f["muted"] for f in facts))
    failures: dict[str, list[float]] = {}
    histories = []
    for s, f in zip(batch, facts, strict=True):
        c, needed = s.claim, s.needed
        if needed.breaker and not breaker_quiet(f) and c.target not in failures:
            failures[c.target] = await breaker_failures(tx, c.target)
        since = [r for r in starts if r["started_at"] >= s.since] if needed.budgets else []
        history = TargetHistory(
            last_other_start=f["last_other"],
            started_global=[r["started_at"] for r in since],
            started_action=[r["started_at"] for r in since if r["action"] == c.action],
            target_busy=bool(f["busy"]),
            failures=failures.get(c.target, []) if needed.breaker else [],
            approval=None if f["id"] is None else rows.approval(f),
            incident_status=f["incident_status"],
        )
        histories.append((history, f["incident_key"]))
    return histories, mutes


_START_TYPES = ("BIGINT", "DOUBLE PRECISION", "TEXT", "TEXT", "DOUBLE PRECISION")
# running from its `at`, with a lease of CLAIM_LEASE that its holder renews from then on, in its
# lane of its target, sent at once if it has no precondition; only a claim still claimed
_START = (
    "WITH batch (claim_id, at, request, lane, sent_at) AS (VALUES {values}) "
    "UPDATE claims SET status = ?, started_at = batch.at, request = batch.request, "
    "lease_until = batch.at + ?, lease_renewed_at = batch.at, lane = batch.lane, "
    "sent_at = batch.sent_at FROM batch WHERE claims.id = batch.claim_id "
    f"AND claims.status = {literal(CLAIMED)} "
    "RETURNING id"
)


@cache
def _start_sql(rows_in: int) -> str:
    return _START.format(values=typed_rows(_START_TYPES, rows_in))


async def _start_all(tx: Tx, starts: Sequence[StartIf]) -> set[int]:
    """Start these claims, a few statements for all; the ids of those that were still claimed."""
    started: set[int] = set()
    for chunk in chunks_to_pad(starts):
        args: list[Any] = []
        for s in chunk:
            args += [s.claim.id, s.now, json.dumps(s.request), s.lane, s.now if s.sent else None]
        args += [None] * len(_START_TYPES) * pad(len(chunk))
        sql = _start_sql(len(chunk) + pad(len(chunk)))
        started |= {r["id"] for r in await tx.fetch(sql, *args, RUNNING, CLAIM_LEASE)}
    return started


class StartsSQL(Runner):
    async def start_claim_if(
        self,
        claim: Claim,
        request: Mapping[str, Any],
        now: float,
        since: float,
        judge: Judge,
        lane: str | None = None,
        sent: bool = False,
        needed: Needed = EVERY_FACT,
    ) -> Started:
        """Judge the claim on the store's facts and, if the verdict allows, start it, in one
        transaction that holds the starts lock to its commit: no other claim, in this process
        or another on the same database, is judged or started in between but those judged
        with it, each on the facts the ones before it left. `lane`: what of its target the
        claim holds (None: all of it); `sent`: its request may leave at once (no precondition
        first), so `sent_at` is recorded with the start, in the same commit; `needed`: the facts
        its policy judges it on (the others are not read, and the judge gets them empty).
        Fenced."""
        start = StartIf(claim, request, now, since, judge, lane, sent, needed, self.epoch)
        return await self._start_if(start)

    async def _start_if(self, start: StartIf) -> Started:
        """In a transaction of its own, in the order of the serial writes (SQLite's writer runs
        them one after another); PostgreSQL's starts batcher judges every claim that waits in
        one (postgres.py)."""
        done = await self._write(lambda tx: start_claims_if(tx, [start]), serial=True)
        return done[0]
