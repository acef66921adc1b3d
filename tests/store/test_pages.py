"""The store's paging tables (store/pages.py), on both backends: pages of incidents, the pager
outbox in order per incident and pager, escalations that happen once, what once_per_incident
reads, and retention of pages and pager events."""

from __future__ import annotations

from dataclasses import replace

from remediator.paging.records import PageEvent, PageState
from remediator.store.records import AuditEntry, Changes, IncidentWrite
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


async def resolve(store: AnyStore, incident_id: int, at: float) -> None:
    [incident] = [i for i in await store.load_open_incidents() if i.id == incident_id]
    resolved = replace(incident, status="resolved", resolved_at=at)
    await store.apply(Changes(at=at, incidents=[IncidentWrite(resolved, {})]))


async def test_retention_deletes_old_pages_and_delivered_events_never_an_open_or_pending_one(
    store: AnyStore,
) -> None:
    """An open incident keeps its page; a pruned incident's page goes with it; delivered or
    given-up pager events go once old enough; an event still waiting for its pager stays,
    however old, even when its incident is gone; a page left by an incident pruned earlier
    (before pages were pruned with incidents) goes too."""
    still_open, gone, waiting = [await opened(store, k) for k in ("c1", "c2", "c3")]
    events = [
        PageEvent(still_open, "pd", "trigger", {"n": 1}),
        PageEvent(gone, "pd", "trigger", {"n": 2}),
        PageEvent(gone, "og", "trigger", {"n": 3}),
        PageEvent(waiting, "pd", "resolve", {"n": 4}),
    ]
    states = [PageState(i, "on-call", 1, 2.0, ("pd",)) for i in (still_open, gone, waiting)]
    orphan = PageState(999, "on-call", 1, 2.0, ("pd",))
    await store.record_pages(events, [*states, orphan], [], 1, 2.0)
    rows = {r.payload["n"]: r.id for r in await store.pages_due(2.0, 10)}
    await store.page_done(rows[1], "sent", 3.0)
    await store.page_done(rows[2], "sent", 3.0)
    await store.page_done(rows[3], "failed", 3.0, "HTTP 400")
    for incident in (gone, waiting):
        await resolve(store, incident, 10.0)

    assert await store.prune_pages(1.0, 10) == {"pages": 1}  # the orphan; nothing old enough
    assert await store.page_state(999) is None
    deleted = await store.prune_incidents(100.0, 10)
    assert (deleted["incidents"], deleted["pages"]) == (2, 2)
    assert await store.prune_pages(100.0, 1) == {"page_outbox": 1}  # a batch at a time
    assert await store.prune_pages(100.0, 10) == {"page_outbox": 2}
    assert await store.prune_pages(100.0, 10) == {}

    assert await store.page_state(still_open) == states[0]
    assert (await store.page_state(gone), await store.page_state(waiting)) == (None, None)
    [pending] = await store.pages_due(100.0, 10)
    assert (pending.incident_id, pending.event, pending.payload) == (waiting, "resolve", {"n": 4})
    assert await store.page_stats() == (1, 2.0)


async def test_the_desk_reads_the_lines_of_its_events_and_skips_the_rest(store: AnyStore) -> None:
    """audit_events_after: the lines after a cursor with one of the events, and how far it read
    (the trail's end, or the last line returned when the limit cut the reading short)."""
    assert await store.audit_events_after(0, 10, ("failed",)) == ([], 0)
    said = ("claimed", "failed", "succeeded", "claimed", "resolved", "succeeded")
    lines = [AuditEntry("action", event, event, 1.0) for event in said]
    ids = [e.id for e in await store.record_pages([], [], lines, 0, 1.0) if e.id is not None]
    wanted = ("failed", "resolved")
    found, end = await store.audit_events_after(0, 10, wanted)
    assert ([e.id for e in found], [e.message for e in found], end) == (
        [ids[1], ids[4]],
        ["failed", "resolved"],
        ids[-1],
    )
    found, end = await store.audit_events_after(0, 1, wanted)
    assert ([e.id for e in found], end) == ([ids[1]], ids[1])
    assert await store.audit_events_after(ids[4], 10, wanted) == ([], ids[-1])
    assert await store.audit_events_after(ids[-1], 10, wanted) == ([], ids[-1])
