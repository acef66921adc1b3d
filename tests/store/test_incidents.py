"""A batch's rows written together (incidents.py: one multi-row statement per kind where their
order allows), on both backends: each placeholder, claim and audit line gets its own row's id,
and an incident resolved and one opened on its key in one batch still commit. The claims a batch
makes that its offer offers are judged and started in its own commit, on the facts it left."""

from __future__ import annotations

from dataclasses import replace

import pytest

from remediator.errors import Fenced
from remediator.guardrails import Outcome, Verdict
from remediator.store.records import (
    CLAIMED,
    RUNNING,
    AuditEntry,
    Changes,
    IncidentWrite,
    InstanceWrite,
    MuteRow,
    TargetHistory,
)
from remediator.store.starts import Offer, StartIf
from tests.store.conftest import AnyStore
from tests.store.test_contract import claim, new_incident


def line(incident_id: int, message: str) -> AuditEntry:
    return AuditEntry("decision", "opened", message, 3.0, incident_id=incident_id, rule="r")


async def test_the_rows_of_a_batch_each_get_their_own_id(store: AnyStore) -> None:
    keys = ["a", "b", "c", "d"]
    placeholders = [-1 - n for n in range(len(keys))]
    applied = await store.apply(
        Changes(
            at=5.0,
            incidents=[new_incident(p, k) for p, k in zip(placeholders, keys, strict=True)],
            instances=[
                InstanceWrite("r", k, 1.0, p, "firing", None, 1.0)
                for p, k in zip(placeholders, keys, strict=True)
            ],
            claims=[
                *(
                    replace(claim(p), idempotency_key=k)
                    for p, k in zip(placeholders, keys, strict=True)
                ),
                claim(-1),  # (incident, step, action) already claimed in this batch: not won
            ],
            audit=[
                line(p, f"opened {k}")
                for p, k in zip(reversed(placeholders), reversed(keys), strict=True)
            ],
        )
    )
    ids = applied.incident_ids
    assert sorted(ids) == sorted(placeholders)
    opened = {i.id: i.key for i in await store.load_open_incidents()}
    assert opened == {ids[p]: ("X", k) for p, k in zip(placeholders, keys, strict=True)}
    assert [(c.incident_id, c.idempotency_key) for c in applied.claims] == [
        (ids[p], k) for p, k in zip(placeholders, keys, strict=True)
    ]
    audit = applied.audit
    assert [(e.incident_id, e.message) for e in audit] == [
        (ids[p], f"opened {k}") for p, k in zip(reversed(placeholders), reversed(keys), strict=True)
    ]
    stored = {e.id: e.message for e in await store.audit_after(0, 100)}
    assert {e.id: e.message for e in audit} == stored
    keys_in = [("r", k, 1.0) for k in keys]
    assert await store.resolved_instances(keys_in) == set()
    resolved = [InstanceWrite("r", k, 1.0, ids[p], "resolved", None, 2.0)
                for p, k in zip(placeholders[:2], keys[:2], strict=True)]  # fmt: skip
    await store.apply(Changes(at=6.0, instances=resolved))
    assert await store.resolved_instances([*keys_in, ("r", "z", 1.0)]) == set(keys_in[:2])


async def test_an_incident_resolved_and_one_opened_on_its_key_commit_in_one_batch(
    store: AnyStore,
) -> None:
    first = (await store.apply(Changes(at=1.0, incidents=[new_incident(-1, "k")]))).incident_ids[-1]
    opened = new_incident(-1, "k")
    resolved = replace(opened.incident, id=first, status="resolved", resolved_at=2.0)
    applied = await store.apply(
        Changes(
            at=2.0, incidents=[replace(opened, incident=resolved), opened, new_incident(-2, "j")]
        )
    )
    assert [i.id for i in await store.load_open_incidents()] == sorted(
        applied.incident_ids.values()
    )


# -- claims started in the apply's commit (an offer: offers.py) ---------------------------------


def offer_all(verdicts: list[Outcome], seen: list[TargetHistory]) -> Offer:
    """An offer of every claim, each judged by the next of `verdicts` (its facts kept)."""
    outcomes = iter(verdicts)

    def judge(history: TargetHistory, mutes: list[MuteRow]) -> Verdict | None:
        seen.append(history)
        outcome = next(outcomes)
        return None if history.incident_status != "open" else Verdict(outcome)

    return lambda c: StartIf(c, {"url": f"http://x/{c.id}"}, 4.0, 0.0, judge, sent=True)


async def test_an_offered_claim_starts_in_the_applys_own_commit(store: AnyStore) -> None:
    seen: list[TargetHistory] = []
    before = store.commits
    applied = await store.apply(
        Changes(at=4.0, incidents=[new_incident()], claims=[claim(-1)]),
        offer_all(["allow"], seen),
    )
    assert store.commits - before == 1
    [made] = applied.claims
    assert applied.started == {made.id: {"url": f"http://x/{made.id}"}}
    row = await store.claim(made.id)
    assert row is not None
    assert (row.status, row.started_at, row.sent_at, row.request) == (
        RUNNING,
        4.0,
        4.0,
        {"url": f"http://x/{made.id}"},
    )
    assert seen[0].incident_status == "open"
    assert not seen[0].target_busy
    # what recovery after a crash reads: running, its request possibly sent
    assert [c.id for c in await store.claims_in((RUNNING,))] == [made.id]


async def test_an_offered_claim_not_allowed_stays_claimed(store: AnyStore) -> None:
    seen: list[TargetHistory] = []
    incidents = [new_incident(-1, "a"), new_incident(-2, "b"), new_incident(-3, "c")]
    news = [replace(claim(-1 - n), idempotency_key=f"k{n}") for n in range(3)]
    news[2] = replace(news[2], target="elsewhere")
    applied = await store.apply(
        Changes(at=4.0, incidents=incidents, claims=news),
        offer_all(["refuse", "wait", "ask_approval"], seen),
    )
    assert applied.started == {}
    statuses = [(await store.claim(c.id)) for c in applied.claims]
    assert [c.status for c in statuses if c is not None] == [CLAIMED] * 3


async def test_claims_offered_together_on_one_target_start_one_at_a_time(store: AnyStore) -> None:
    """The first allowed takes the target; the second is judged with it running (busy), as is a
    claim on a target something already runs on."""
    seen: list[TargetHistory] = []
    other = replace(claim(-1), target="other")
    before = Changes(at=1.0, incidents=[new_incident(-1, "z")], claims=[other])
    running = (await store.apply(before)).claims[0]
    assert await store.start_claim(running.id, 2.0, {})
    incidents = [new_incident(-1, "a"), new_incident(-2, "b"), new_incident(-3, "c")]
    news = [replace(claim(-1 - n), idempotency_key=f"k{n}") for n in range(3)]
    news[2] = replace(news[2], target="other")

    def busy_waits(history: TargetHistory, mutes: list[MuteRow]) -> Verdict:
        seen.append(history)
        return Verdict("wait") if history.target_busy else Verdict("allow")

    applied = await store.apply(
        Changes(at=4.0, incidents=incidents, claims=news),
        lambda c: StartIf(c, {}, 4.0, 0.0, busy_waits),
    )
    first = applied.claims[0].id
    assert list(applied.started) == [first]
    assert [h.target_busy for h in seen] == [False, True, True]


async def test_a_firing_claim_of_an_incident_the_batch_resolves_does_not_start(
    store: AnyStore,
) -> None:
    seen: list[TargetHistory] = []
    opened = await store.apply(Changes(at=1.0, incidents=[new_incident()]))
    incident_id = opened.incident_ids[-1]
    resolved = replace(new_incident().incident, id=incident_id, status="resolved", resolved_at=3.0)
    applied = await store.apply(
        Changes(at=4.0, incidents=[IncidentWrite(resolved, {})], claims=[claim(incident_id)]),
        offer_all(["allow"], seen),
    )
    assert applied.started == {}
    assert seen[0].incident_status == "resolved"
    made = await store.claim(applied.claims[0].id)
    assert made is not None
    assert made.status == CLAIMED


async def test_a_deposed_leaders_offer_is_fenced_with_its_batch(store: AnyStore) -> None:
    store.epoch = await store.take_leadership("a", 1.0)
    await store.take_leadership("b", 2.0)
    with pytest.raises(Fenced):
        await store.apply(
            Changes(at=4.0, incidents=[new_incident()], claims=[claim(-1)]),
            offer_all(["allow"], []),
        )
    assert await store.claims_in((CLAIMED, RUNNING)) == []
