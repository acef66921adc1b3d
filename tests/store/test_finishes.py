"""Claims finished together (finishes.py), on both backends: what one transaction finishes for
many claims is what finishing them one after another would. Concurrent finishes from one
process queue together for PostgreSQL's finishes batcher; SQLite's writer runs them one after
another."""

from __future__ import annotations

import asyncio

from remediator.store.finishes import FinishIf, finish_claims
from remediator.store.records import CLAIMED, FAILED, RUNNING, SUCCEEDED, Attempt
from tests.store.conftest import AnyStore
from tests.store.test_contract import audit
from tests.store.test_controls import claims


def attempt(claim_id: int, n: int = 1) -> Attempt:
    return Attempt(claim_id, n, 2.0, 3.0, n == 1, f"try {n}", status_code=200)


async def outcomes(store: AnyStore, ids: list[int]) -> list[tuple[str, int, float | None]]:
    found = [await store.claim(i) for i in ids]
    return [(c.status, c.attempts, c.finished_at) for c in found if c is not None]


async def test_claims_finished_together_end_as_one_after_another(store: AnyStore) -> None:
    running, claimed, settled, twice = await claims(store, 4)
    for claim_id in (running, settled, twice):
        await store.start_claim(claim_id, 2.0, {})
    await store.finish_claim(settled, SUCCEEDED, "ok", 2.5, audit("settled"))
    batch = [
        FinishIf(running, SUCCEEDED, "HTTP 200", 3.0, audit("ran"), (CLAIMED, RUNNING),
                 attempt(running)),
        # not running: left as it is
        FinishIf(claimed, FAILED, "x", 3.0, audit("no"), (RUNNING,)),
        # settled already: its attempt is recorded and counted all the same
        FinishIf(settled, FAILED, "late", 3.0, audit("late"), (CLAIMED, RUNNING),
                 attempt(settled, 2)),
    ]  # fmt: skip
    done = await store._write(lambda tx: finish_claims(tx, batch))
    assert [None if d is None else d.message for d in done] == ["ran", None, None]
    # a claim finished twice in one batch: the first finish only, as one after the other would
    first = FinishIf(twice, SUCCEEDED, "first", 3.0, audit("first"), (RUNNING,))
    second = FinishIf(twice, FAILED, "second", 4.0, audit("second"), (RUNNING,))
    again = await store._write(lambda tx: finish_claims(tx, [first, second]))
    assert [None if d is None else d.message for d in again] == ["first", None]
    assert await outcomes(store, [running, claimed, settled, twice]) == [
        (SUCCEEDED, 1, 3.0),
        (CLAIMED, 0, None),
        (SUCCEEDED, 2, 2.5),
        (SUCCEEDED, 0, 3.0),
    ]
    record = await store.incident_record((await store.claim(settled)).incident_id)  # type: ignore[union-attr]
    assert record is not None
    [late] = [a for c in record["claims"] if c["id"] == settled for a in c["attempts"]]
    assert late["detail"] == "try 2"


async def test_concurrent_finishes_share_commits(store: AnyStore) -> None:
    ids = await claims(store, 40)
    for claim_id in ids:
        await store.start_claim(claim_id, 2.0, {})
    before = store.commits
    done = await asyncio.gather(
        *(
            store.finish_claim(i, SUCCEEDED, "ok", 3.0, audit(f"done {i}"), last_attempt=attempt(i),
                               ordered=False)
            for i in ids
        )
    )  # fmt: skip
    assert [d.message if d else None for d in done] == [f"done {i}" for i in ids]
    assert store.commits - before < len(ids) / 4, f"{store.commits - before} commits for 40"
    assert await outcomes(store, ids) == [(SUCCEEDED, 1, 3.0)] * len(ids)
