"""Leadership on both backends: each takeover bumps the epoch, and a store deciding in an older
epoch (a deposed leader) can no longer open an incident, claim, start an action, mark a request
sent or rerun a claim. On PostgreSQL, two stores on one database stand for two replicas, and a
takeover waits for a fenced transaction in flight (the share lock), never slips under it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from remediator.errors import Fenced
from remediator.guardrails import Verdict
from remediator.store.leadership import Replica
from remediator.store.records import RUNNING, Changes
from tests.store.conftest import AnyStore, make_store
from tests.store.test_contract import audit, claim, new_incident


def allow(history: object, mutes: object) -> Verdict:
    return Verdict("allow")


async def test_each_takeover_bumps_the_epoch_and_names_its_leader(store: AnyStore) -> None:
    before = await store.leadership()
    assert (before.epoch, before.leader) == (0, None)
    assert await store.take_leadership("a", 1.0) == 1
    assert await store.take_leadership("b", 2.0) == 2
    now = await store.leadership()
    assert (now.epoch, now.leader, now.since) == (2, "b", 2.0)


async def test_a_store_of_an_older_epoch_can_neither_decide_nor_start(store: AnyStore) -> None:
    store.epoch = await store.take_leadership("a", 1.0)
    applied = await store.apply(
        Changes(at=1.0, incidents=[new_incident()], claims=[claim(-1), claim(-1, "b")])
    )
    started, unstarted = applied.claims
    assert await store.start_claim(started.id, 2.0, {"url": "http://x"})

    await store.take_leadership("b", 3.0)  # another replica took over: `store` is deposed
    with pytest.raises(Fenced):
        await store.apply(Changes(at=4.0, incidents=[new_incident(-1, "c2")]))
    with pytest.raises(Fenced):
        await store.apply(Changes(at=4.0, claims=[claim(applied.incident_ids[-1], "c")]))
    with pytest.raises(Fenced):
        await store.start_claim(unstarted.id, 4.0, {"url": "http://x"})
    with pytest.raises(Fenced):
        await store.start_claim_if(unstarted, {"url": "http://x"}, 4.0, 0.0, allow)
    with pytest.raises(Fenced):
        await store.mark_sent(started.id, 4.0)
    with pytest.raises(Fenced):
        await store.rerun_claim(started.id, "again", audit("rerun", started.incident_id))
    # nothing of the refused writes is in the store
    assert [i.key for i in await store.load_open_incidents()] == [("X", "c1")]
    [running] = await store.claims_in((RUNNING,))
    assert (running.id, running.sent_at) == (started.id, None)

    store.epoch = (await store.leadership()).epoch  # the new leader's epoch is current
    assert await store.mark_sent(started.id, 5.0)
    assert (await store.start_claim_if(unstarted, {"url": "http://x"}, 5.0, 0.0, allow))[1]


async def test_a_store_without_an_epoch_is_not_fenced(store: AnyStore) -> None:
    await store.take_leadership("a", 1.0)
    assert store.epoch is None
    applied = await store.apply(Changes(at=1.0, incidents=[new_incident()], claims=[claim(-1)]))
    assert await store.start_claim(applied.claims[0].id, 2.0, {})


async def test_heartbeats_list_every_replica_and_forget_the_long_silent(store: AnyStore) -> None:
    await store.beat(Replica("a", "leader", 1.0, 10.0, 3))
    await store.beat(Replica("b", "ingest", 1.0, 10.0))
    await store.beat(Replica("a", "follower", 1.0, 12.0))
    assert await store.replicas() == [
        Replica("a", "follower", 1.0, 12.0, None),
        Replica("b", "ingest", 1.0, 10.0, None),
    ]
    await store.beat(Replica("c", "leader", 5000.0, 5000.0, 4))
    assert [r.name for r in await store.replicas()] == ["c"]


@pytest.mark.parametrize("store_backend", ["postgres"], indirect=True)
async def test_a_takeover_waits_for_the_deposed_leaders_write_in_flight(
    store: AnyStore, tmp_path: Path
) -> None:
    """Replica A's batch holds the epoch's share lock; B's takeover waits for its commit, and
    A's next write, after the takeover, is refused."""
    other = make_store("postgres", tmp_path)
    await other.open()
    try:
        store.epoch = await store.take_leadership("a", 1.0)
        conn = await store._pool.acquire()  # type: ignore[union-attr]
        try:
            tx = conn.transaction()
            await tx.start()
            await conn.fetchval("SELECT epoch FROM leadership WHERE id = 1 FOR SHARE")
            takeover = asyncio.create_task(other.take_leadership("b", 2.0))
            await asyncio.sleep(0.3)
            assert not takeover.done()  # waits for A's transaction
            await tx.commit()
            assert await asyncio.wait_for(takeover, 5) == 2
        finally:
            await store._pool.release(conn)  # type: ignore[union-attr]
        with pytest.raises(Fenced):
            await store.apply(Changes(at=3.0, incidents=[new_incident()]))
        other.epoch = 2
        await other.apply(Changes(at=3.0, incidents=[new_incident()]))
    finally:
        await other.close()
