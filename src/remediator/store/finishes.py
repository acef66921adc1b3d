"""Finish claims, several in one transaction: each claim's outcome, its last attempt and its
audit line, in a few statements for all of them (claims.finish_claim's work).

Finishing N claims together writes what finishing them one after another would: every last
attempt in one statement, the outcomes in one statement per set of statuses they may leave, the
audit lines of the claims it finished in one statement. A batch in which two finishes touch one
claim is finished one after another. SQLite's writer finishes one claim per job; PostgreSQL's
batchers (batcher.py) give it every finish that waits, so that 200 finishes a second cost a few
transactions, not 200 of five round trips each on as many pooled connections."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from remediator.store.audit import insert_audit, insert_audits
from remediator.store.records import CLAIMED, RUNNING, Attempt, AuditEntry
from remediator.store.sql import (
    Runner,
    Tx,
    chunks,
    chunks_to_pad,
    literal,
    pad,
    typed_rows,
    value_rows,
)

Finished = AuditEntry | None


@dataclass(frozen=True, slots=True)
class FinishIf:
    """One claim to finish if it is in one of `from_statuses` (finish_claim's arguments)."""

    claim_id: int
    status: str
    detail: str
    at: float
    audit: AuditEntry
    from_statuses: tuple[str, ...]
    last_attempt: Attempt | None = None

    @property
    def own(self) -> bool:
        """Its last attempt is its own: its number is the claim's count, set with the outcome."""
        return self.last_attempt is not None and self.last_attempt.claim_id == self.claim_id


async def finish_claims(tx: Tx, batch: Sequence[FinishIf]) -> list[Finished]:
    """Each claim's audit line with its id if it was finished, None if it was not in one of its
    `from_statuses` (its last attempt is recorded in any case), in the order of `batch`."""
    if len(batch) == 1:
        return [await _finish_one(tx, batch[0])]
    if not _independent(batch):
        return [await _finish_one(tx, f) for f in batch]
    await insert_attempts(tx, [f.last_attempt for f in batch if f.last_attempt is not None])
    for f in batch:
        if f.last_attempt is not None and not f.own:
            await count_attempts(tx, f.last_attempt)
    finished: set[int] = set()
    for statuses in dict.fromkeys(f.from_statuses for f in batch):
        finished |= await _finish(tx, statuses, [f for f in batch if f.from_statuses == statuses])
    for f in batch:
        if f.own and f.claim_id not in finished and f.last_attempt is not None:
            await count_attempts(tx, f.last_attempt)  # recorded in any case
    stored = iter(await insert_audits(tx, [f.audit for f in batch if f.claim_id in finished]))
    return [next(stored) if f.claim_id in finished else None for f in batch]


async def _finish_one(tx: Tx, f: FinishIf) -> Finished:
    """One claim's finish, in the statements of one claim (cheaper on SQLite than a batch's)."""
    if f.last_attempt is not None:
        await insert_attempts(tx, [f.last_attempt])
        if not f.own:
            await count_attempts(tx, f.last_attempt)
    # the claim's count of attempts with its outcome, in one statement
    attempts = "attempts = ?, " if f.own else ""
    sql = (
        f"UPDATE claims SET {attempts}status = ?, detail = ?, finished_at = ?, lease_until = NULL "
        f"WHERE id = ? AND status IN ({', '.join(literal(s) for s in f.from_statuses)})"
    )
    counted = (f.last_attempt.attempt,) if f.own and f.last_attempt is not None else ()
    if await tx.execute(sql, *counted, f.status, f.detail, f.at, f.claim_id) != 1:
        if f.own and f.last_attempt is not None:
            await count_attempts(tx, f.last_attempt)  # recorded in any case
        return None
    return await insert_audit(tx, f.audit)


def _independent(batch: Sequence[FinishIf]) -> bool:
    """No claim is touched by two finishes of the batch (as the one finished, or as the claim of
    another's last attempt)."""
    touched = [
        claim_id
        for f in batch
        for claim_id in {f.claim_id, *([] if f.last_attempt is None else [f.last_attempt.claim_id])}
    ]
    return len(touched) == len(set(touched))


_FINISH_TYPES = ("BIGINT", "INTEGER", "TEXT", "TEXT", "DOUBLE PRECISION")
# the outcome of each claim still in one of the statuses (written into the text: sql.literal),
# with its count of attempts if its own last attempt came with it
_FINISH = (
    "WITH batch (claim_id, attempts, status, detail, at) AS (VALUES {values}) "
    "UPDATE claims SET attempts = COALESCE(batch.attempts, claims.attempts), "
    "status = batch.status, detail = batch.detail, finished_at = batch.at, lease_until = NULL "
    "FROM batch WHERE claims.id = batch.claim_id AND claims.status IN ({statuses}) RETURNING id"
)


async def _finish(tx: Tx, statuses: tuple[str, ...], batch: Sequence[FinishIf]) -> set[int]:
    """Finish these claims, those in one of `statuses`; the ids of those finished."""
    finished: set[int] = set()
    for chunk in chunks_to_pad(batch):
        args: list[object] = []
        for f in chunk:
            counted = f.last_attempt.attempt if f.own and f.last_attempt is not None else None
            args += [f.claim_id, counted, f.status, f.detail, f.at]
        args += [None] * len(_FINISH_TYPES) * pad(len(chunk))
        sql = _FINISH.format(
            values=typed_rows(_FINISH_TYPES, len(chunk) + pad(len(chunk))),
            statuses=", ".join(literal(s) for s in statuses),
        )
        finished |= {int(r["id"]) for r in await tx.fetch(sql, *args)}
    return finished


_INSERT_ATTEMPTS = (
    "INSERT INTO attempts (claim_id, attempt, started_at, finished_at, ok, status_code, "
    "exit_code, detail, output, target_fault) VALUES {rows}"
)


async def insert_attempts(tx: Tx, attempts: Sequence[Attempt]) -> None:
    """Record these attempts, many in one statement."""
    for chunk in chunks(attempts):
        args = [
            v
            for a in chunk
            for v in (a.claim_id, a.attempt, a.started_at, a.finished_at, int(a.ok),
                      a.status_code, a.exit_code, a.detail, a.output, int(a.target_fault))
        ]  # fmt: skip
        await tx.execute(_INSERT_ATTEMPTS.format(rows=value_rows(10, len(chunk))), *args)


async def count_attempts(tx: Tx, attempt: Attempt) -> None:
    """The attempt's number as its claim's count of attempts."""
    await tx.execute(
        "UPDATE claims SET attempts = ? WHERE id = ?", attempt.attempt, attempt.claim_id
    )


class FinishesSQL(Runner):
    async def finish_claim(
        self,
        claim_id: int,
        status: str,
        detail: str,
        at: float,
        audit: AuditEntry,
        from_statuses: tuple[str, ...] = (CLAIMED, RUNNING),
        last_attempt: Attempt | None = None,
        ordered: bool = True,
    ) -> Finished:
        """`ordered`: committed in the starts' order (the executor handed the claim's turn on to
        a waiter before this commit, which must then be judged after it and find the target or
        lane free); otherwise on its own, beside the starts."""
        finish = FinishIf(claim_id, status, detail, at, audit, from_statuses, last_attempt)
        return await self._finish_if(finish, ordered)

    async def _finish_if(self, finish: FinishIf, ordered: bool) -> Finished:
        """`ordered`: in the order of the serial writes (the starts'). Lazy: nobody answers or
        acts on this commit at once, so SQLite's writer commits it with the next write that comes
        rather than in a commit of its own. Relaxed: an outcome a power cut loses leaves its
        claim running, which recovery makes `interrupted`. PostgreSQL's batchers finish every
        claim that waits in one (postgres.py)."""

        async def op(tx: Tx) -> list[Finished]:
            return await finish_claims(tx, [finish])

        done = await self._write(op, serial=ordered, lazy=True, relaxed=True)
        return done[0]
