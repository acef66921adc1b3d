"""The store's paging tables (store/pages.py), on both backends: pages of incidents, the pager
outbox in order per incident and pager, escalations that happen once, and what once_per_incident
reads."""

from __future__ import annotations

from remediator.paging.records import PageEvent, PageState
from remediator.store.records import AuditEntry, Changes
from tests.store.conftest import AnyStore
from tests.store.test_contract import claim, new_incident


async def opened(store: AnyStore, key: str = "c1") -> int:
    applied = await store.apply(Changes(at=1.0, incidents=[new_incident(-1, key)]))
    return applied.incident_ids[-1]


def paged(incident_id: int, level: int = 1) -> AuditEntry:
    return AuditEntry("page", "paged", f"level {level}", 2.0, incident_id=incident_id, rule="r")


async def test_pages_are_recorded_with_the_cursor_and_delivered_in_order_per_pager(
    store: AnyStore,
) -> None:
    one, two = await opened(store, "c1"), await opened(store, "c2")
    events = [
        PageEvent(one, "pd", "trigger", {"n": 1}),
        PageEvent(one, "pd", "acknowledge", {"n": 2}),
        PageEvent(one, "og", "trigger", {"n": 3}),
        PageEvent(two, "pd", "trigger", {"n": 4}),
    ]
    states = [PageState(one, "on-call", 1, 2.0, ("pd", "og"))]
    written = await store.record_pages(events, states, [paged(one)], 42, 5.0)
    assert [e.id is not None for e in written] == [True]
    assert await store.get_setting("pager_cursor") == 42
    assert await store.page_state(one) == states[0]
    assert await store.page_state(two) is None

    due = await store.pages_due(5.0, 10)
    assert [r.payload["n"] for r in due] == [1, 3, 4]  # the first of each (incident, pager)
    await store.page_retry(due[0].id, 60.0, "HTTP 503")
    assert [r.payload["n"] for r in await store.pages_due(6.0, 10)] == [3, 4]  # 2 waits for 1
    assert await store.page_stats() == (4, 5.0)
    await store.page_done(due[0].id, "sent", 61.0)
    [first] = [
        r for r in await store.pages_due(61.0, 10) if r.pager == "pd" and r.incident_id == one
    ]
    assert (first.payload, first.attempts) == ({"n": 2}, 0)


async def test_an_escalation_happens_once_and_never_for_an_acked_or_resolved_incident(
    store: AnyStore,
) -> None:
    incident = await opened(store)
    state = PageState(incident, "on-call", 1, 2.0, ("pd",))
    await store.record_pages([], [state], [], 1, 2.0)
    [unacked] = await store.unacked_pages()
    assert (unacked.state, unacked.labels) == (state, {"a": "b"})

    entry = AuditEntry("page", "page_escalated", "level 2", 9.0, incident_id=incident)
    done = await store.escalate_page(state, 2, 9.0, entry)
    assert done is not None
    assert done.id is not None
    assert await store.escalate_page(state, 2, 9.0, entry) is None  # already at level 2
    assert await store.page_state(incident) == PageState(incident, "on-call", 2, 9.0, ("pd",))

    ack = AuditEntry("control", "acknowledged", "ack", 10.0, incident_id=incident)
    assert await store.ack_incident(incident, "alice", 10.0, ack)
    assert await store.unacked_pages() == []
    later = PageState(incident, "on-call", 2, 9.0, ("pd",))
    assert await store.escalate_page(later, 3, 11.0, entry) is None


async def test_done_actions_are_those_that_took_or_may_take_effect(
    store: AnyStore,
) -> None:
    incident = await opened(store)
    applied = await store.apply(
        Changes(at=2.0, claims=[claim(incident, "pause"), claim(incident, "flag")])
    )
    pause, flag = applied.claims
    assert await store.done_actions(incident) == {"pause", "flag"}  # claimed: will run
    finished = AuditEntry("action", "failed", "x", 3.0, incident_id=incident)
    await store.finish_claim(flag.id, "failed", "boom", 3.0, finished)
    assert await store.done_actions(incident) == {"pause"}
    await store.start_claim(pause.id, 3.0, {})
    await store.finish_claim(pause.id, "succeeded", "ok", 4.0, finished)
    await store.set_verification(pause.id, "failed", "not paused", None, None)
    assert await store.done_actions(incident) == set()  # its verification failed: may run again
