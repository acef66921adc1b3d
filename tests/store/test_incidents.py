"""A batch's rows written together (incidents.py: one multi-row statement per kind where their
order allows), on both backends: each placeholder, claim and audit line gets its own row's id,
and an incident resolved and one opened on its key in one batch still commit."""

from __future__ import annotations

from dataclasses import replace

from remediator.store.records import AuditEntry, Changes, InstanceWrite
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
