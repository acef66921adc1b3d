"""An action's outcome (claims.finish_claim), on both backends: its last attempt is recorded and
counted whether or not the claim moved."""

from __future__ import annotations

from remediator.store.claims import breaker_newest
from remediator.store.records import FAILED, SUCCEEDED, VERIFY_PASSED, VERIFY_PENDING, Attempt
from remediator.store.sql import Tx
from tests.store.conftest import AnyStore
from tests.store.test_contract import audit
from tests.store.test_controls import claims


async def test_an_outcome_counts_its_last_attempt_whether_or_not_the_claim_moved(
    store: AnyStore,
) -> None:
    moved, settled = await claims(store, 2)
    for claim_id in (moved, settled):
        await store.start_claim(claim_id, 2.0, {})
    await store.finish_claim(settled, SUCCEEDED, "ok", 3.0, audit("done"))
    for claim_id in (moved, settled):
        attempt = Attempt(claim_id, 2, 2.0, 4.0, False, "HTTP 503", status_code=503)
        await store.finish_claim(
            claim_id, FAILED, "HTTP 503", 4.0, audit("x"), last_attempt=attempt
        )
    after = {i: await store.claim(i) for i in (moved, settled)}
    assert [(c.status, c.attempts) for c in after.values() if c] == [(FAILED, 2), (SUCCEEDED, 2)]
    record = await store.incident_record(after[settled].incident_id)  # type: ignore[union-attr]
    assert record is not None
    [attempt] = [a for c in record["claims"] if c["id"] == settled for a in c["attempts"]]
    assert attempt["status_code"] == 503


async def _index(store: AnyStore, name: str) -> str:
    """The index's definition, as the backend's catalog holds it."""

    async def op(tx: Tx) -> str:
        if tx.dialect.name == "postgres":
            sql = "SELECT indexdef FROM pg_indexes WHERE indexname = ?"
        else:
            sql = "SELECT sql FROM sqlite_master WHERE name = ?"
        return str(await tx.fetchval(sql, name))

    return await store._read(op)


async def test_claims_are_indexed_by_start_and_verification_once_they_have_one(
    store: AnyStore,
) -> None:
    """A new claim writes no entry into the indexes of columns it has no value for yet (0085: a
    WAL page fewer each on SQLite); the reads those indexes serve still find what they must."""
    assert "started_at IS NOT NULL" in await _index(store, "claims_started")
    assert "verify_status IS NOT NULL" in await _index(store, "claims_verify")
    waiting, verifying, verified = await claims(store, 3)
    for claim_id in (verifying, verified):
        await store.start_claim(claim_id, 2.0, {})
        await store.finish_claim(claim_id, SUCCEEDED, "ok", 3.0, audit("done"))
    await store.set_verification(verifying, VERIFY_PENDING, "checking", 4.0, 9.0)
    await store.set_verification(verified, VERIFY_PASSED, "fixed", None, None)
    assert [c.id for c in await store.claims_verifying()] == [verifying]
    state = await store.guardrail_state(1.0)
    assert [s.at for s in state.starts] == [2.0, 2.0]
    assert waiting not in {c.id for c in await store.claims_in((SUCCEEDED,))}


async def test_a_targets_newest_outcome_is_one_step_back_along_its_index(store: AnyStore) -> None:
    """The breaker's reads before every start (claims.breaker_newest) take a target's newest
    claim in a status without sorting its history: the order (finished_at, id) is the index's
    on both backends, so the read costs the same at 10 outcomes as at 10 million."""
    newest = breaker_newest("?")["success_at"][1:-1]  # the subquery, without its parentheses

    async def plan(tx: Tx) -> str:
        if tx.dialect.name == "postgres":
            rows = await tx.fetch(f"EXPLAIN {newest}", "sink")
            return "\n".join(r[0] for r in rows)
        rows = await tx.fetch(f"EXPLAIN QUERY PLAN {newest}", "sink")
        return "\n".join(r["detail"] for r in rows)

    found = await store._read(plan)
    assert "claims_target_status" in found
    assert "Sort" not in found, found  # PostgreSQL's
    assert "TEMP B-TREE" not in found, found  # SQLite's
