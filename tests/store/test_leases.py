"""A running claim's lease, on both backends: written at its start, renewed while it runs,
cleared when it settles; a running claim whose lease ran out is found."""

from __future__ import annotations

from remediator.store.records import (
    CLAIM_LEASE,
    CLAIMED,
    RUNNING,
    SUCCEEDED,
    Changes,
)
from tests.store.conftest import AnyStore
from tests.store.test_contract import audit, claim, new_incident


async def two_claims(store: AnyStore) -> tuple[int, int]:
    applied = await store.apply(
        Changes(at=1.0, incidents=[new_incident()], claims=[claim(-1, "a"), claim(-1, "b")])
    )
    a, b = applied.claims
    return a.id, b.id


async def test_a_claim_starts_with_a_lease_and_its_renewal_moves_it(store: AnyStore) -> None:
    a, b = await two_claims(store)
    [unstarted, _] = await store.claims_in((CLAIMED,))
    assert (unstarted.lease_until, unstarted.lease_renewed_at) == (None, None)
    assert await store.start_claim(a, 10.0, {"url": "http://x"})
    started = await store.claim(a)
    assert started is not None
    assert (started.lease_until, started.lease_renewed_at) == (10.0 + CLAIM_LEASE, 10.0)

    # only running claims are renewed: b is still claimed
    assert await store.renew_leases([a, b], 15.0, 15.0 + CLAIM_LEASE) == 1
    renewed = await store.claim(a)
    assert renewed is not None
    assert (renewed.lease_until, renewed.lease_renewed_at) == (15.0 + CLAIM_LEASE, 15.0)
    unrenewed = await store.claim(b)
    assert unrenewed is not None
    assert unrenewed.lease_until is None
    assert await store.renew_leases([], 16.0, 17.0) == 0


async def test_a_running_claim_whose_lease_ran_out_is_found(store: AnyStore) -> None:
    a, b = await two_claims(store)
    assert await store.start_claim(a, 10.0, {})
    assert await store.start_claim(b, 10.0, {})
    expiry = 10.0 + CLAIM_LEASE
    assert await store.claims_lease_expired(expiry) == []  # not before it runs out
    await store.renew_leases([b], 20.0, 20.0 + CLAIM_LEASE)
    assert [c.id for c in await store.claims_lease_expired(expiry + 1)] == [a]
    assert {c.id for c in await store.claims_lease_expired(20.0 + CLAIM_LEASE + 1)} == {a, b}


async def test_a_settled_or_rerun_claim_holds_no_lease(store: AnyStore) -> None:
    a, b = await two_claims(store)
    assert await store.start_claim(a, 10.0, {})
    assert await store.start_claim(b, 10.0, {})
    assert await store.finish_claim(a, SUCCEEDED, "done", 11.0, audit("done")) is not None
    assert await store.rerun_claim(b, "again", audit("rerun")) is True
    late = 100.0 + CLAIM_LEASE
    assert await store.claims_lease_expired(late) == []  # neither is running
    for claim_id in (a, b):
        c = await store.claim(claim_id)
        assert c is not None
        assert c.lease_until is None
    assert await store.renew_leases([a, b], 12.0, 30.0) == 0
    [rerun] = await store.claims_in((CLAIMED,))
    assert rerun.id == b
    assert await store.start_claim(b, 40.0, {})
    [again] = await store.claims_in((RUNNING,))
    assert again.lease_until == 40.0 + CLAIM_LEASE
