"""The store's contract, on both backends: group commit, batches that survive one failing write,
claims won once, approvals and their rules, pages, the guardrails' facts, retention."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from remediator.errors import StoreConflict, StoreError
from remediator.incidents import Incident
from remediator.store import incidents as store_incidents
from remediator.store.records import (
    CLAIMED,
    INTERRUPTED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    Attempt,
    AuditEntry,
    Changes,
    IncidentWrite,
    InstanceWrite,
    NewClaim,
)
from remediator.store.sql import Tx
from tests.store.conftest import AnyStore


def new_incident(placeholder: int = -1, key: str = "c1") -> IncidentWrite:
    incident = Incident(
        id=placeholder,
        rule="r",
        key=("X", key),
        status="open",
        tier=0,
        value=None,
        opened_at=1.0,
        tier_at=1.0,
        updated_at=1.0,
        instances={("fp", 1.0): None},
    )
    return IncidentWrite(incident, {"alertname": "X", "connector": key}, {"a": "b"}, {})


def claim(incident_id: int, action: str = "restart") -> NewClaim:
    return NewClaim(
        incident_id,
        "tier0",
        action,
        "http",
        "connect",
        "r",
        "key-1",
        {"labels": {"connector": "c1"}},
        2.0,
    )


def audit(message: str, incident_id: int | None = None) -> AuditEntry:
    return AuditEntry("decision", "opened", message, 3.0, incident_id=incident_id, rule="r")


async def test_concurrent_journal_writes_share_commits(store: AnyStore) -> None:
    before = store.commits
    ids = await asyncio.gather(*(store.append_journal(f'{{"n": {i}}}', 0.0) for i in range(200)))
    assert sorted(ids) == list(range(1, 201))
    commits = store.commits - before
    assert 1 <= commits < 100, f"{commits} commits for 200 concurrent writes"
    assert len(await store.unprocessed_journal()) == 200


async def test_the_journal_between_two_times_is_read_in_the_order_received(
    store: AnyStore,
) -> None:
    for at, body in ((10.0, "a"), (20.0, "b"), (30.0, "c"), (15.0, "late")):
        await store.append_journal(body, at)
    found = await store.journal_between(10.0, 20.0)
    assert [(at, body) for _, at, body in found] == [(10.0, "a"), (20.0, "b"), (15.0, "late")]
    assert [journal_id for journal_id, _, _ in found] == sorted(j for j, _, _ in found)


async def test_one_failing_write_does_not_fail_its_batch(store: AnyStore) -> None:
    async def broken(tx: Tx) -> None:
        await tx.execute("INSERT INTO journal (received_at, body) VALUES (0, 'x')")
        await tx.execute("INSERT INTO no_such_table VALUES (1)")

    results = await asyncio.gather(
        store.append_journal("a", 0.0),
        store._write(broken),
        store.append_journal("b", 0.0),
        return_exceptions=True,
    )
    assert isinstance(results[1], StoreError)
    assert [body for _, body in await store.unprocessed_journal()] == ["a", "b"]


async def test_apply_assigns_ids_and_a_claim_is_won_once(store: AnyStore) -> None:
    journal_id = await store.append_journal("{}", 0.0)
    changes = Changes(
        at=5.0,
        journal_ids=[journal_id],
        incidents=[new_incident()],
        instances=[InstanceWrite("r", "fp", 1.0, -1, "firing", None, 1.0)],
        claims=[claim(-1)],
        audit=[audit("opened", -1)],
    )
    applied = await store.apply(changes)
    incident_id = applied.incident_ids[-1]
    assert [c.incident_id for c in applied.claims] == [incident_id]
    assert applied.audit[0].incident_id == incident_id
    assert await store.unprocessed_journal() == []
    again = await store.apply(Changes(at=6.0, claims=[claim(incident_id)]))
    assert again.claims == []  # the same (incident, step, action): nobody wins it twice
    [loaded] = await store.load_open_incidents()
    assert (loaded.id, loaded.instances) == (incident_id, {("fp", 1.0): None})


async def test_an_incident_inserted_and_updated_in_one_batch_is_one_row(
    store: AnyStore,
) -> None:
    first = new_incident()
    updated = IncidentWrite(replace(first.incident, tier=2), first.key_labels)
    applied = await store.apply(Changes(at=1.0, incidents=[first, updated]))
    [loaded] = await store.load_open_incidents()
    assert (loaded.id, loaded.tier) == (applied.incident_ids[-1], 2)


async def test_open_incidents_load_page_by_page_with_their_firing_instances(
    store: AnyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_incidents, "LOAD_PAGE", 2)
    writes = [new_incident(-1 - i, f"c{i}") for i in range(5)]
    instances = [
        InstanceWrite("r", f"fp{i}-{n}", 1.0, -1 - i, "firing", float(n), 1.0)
        for i in range(5)
        for n in range(1 + i % 2)  # one instance, or two
    ]
    applied = await store.apply(Changes(at=1.0, incidents=writes, instances=instances))
    ids = [applied.incident_ids[-1 - i] for i in range(5)]
    gone = next(i for i in await store.load_open_incidents() if i.id == ids[2])
    resolved = replace(gone, status="resolved", resolved_at=2.0)
    await store.apply(Changes(at=2.0, incidents=[IncidentWrite(resolved, {})]))

    loaded = await store.load_open_incidents()  # pages of two: [0, 1], [3, 4]
    assert [i.id for i in loaded] == [ids[0], ids[1], ids[3], ids[4]]
    for i, incident in zip((0, 1, 3, 4), loaded, strict=True):
        expected = {(f"fp{i}-{n}", 1.0): float(n) for n in range(1 + i % 2)}
        assert incident.instances == expected


async def test_only_one_open_incident_per_rule_and_key(store: AnyStore) -> None:
    await store.apply(Changes(at=1.0, incidents=[new_incident(-1)]))
    with pytest.raises(StoreConflict):
        await store.apply(Changes(at=1.0, incidents=[new_incident(-2)]))


async def test_a_claim_starts_once_and_finishes_only_from_the_given_states(
    store: AnyStore,
) -> None:
    applied = await store.apply(Changes(at=1.0, incidents=[new_incident()], claims=[claim(-1)]))
    [c] = applied.claims
    assert c.status == CLAIMED
    assert await store.start_claim(c.id, 2.0, {"url": "http://x"}) is True
    assert await store.start_claim(c.id, 2.0, {"url": "http://x"}) is False
    assert (
        await store.finish_claim(c.id, INTERRUPTED, "x", 3.0, audit("x"), from_statuses=(CLAIMED,))
        is None
    )
    done = await store.finish_claim(c.id, SUCCEEDED, "HTTP 202", 3.0, audit("done"))
    assert done is not None
    assert done.id is not None
    assert await store.finish_claim(c.id, INTERRUPTED, "late", 4.0, audit("late")) is None
    [view] = (await store.list_actions(10, None)).items
    assert (view["status"], view["detail"], view["request"]) == (
        SUCCEEDED,
        "HTTP 202",
        {"url": "http://x"},
    )
    assert await store.claims_in((RUNNING, CLAIMED)) == []
    assert await store.ran_actions(c.incident_id) == {"restart"}


async def test_a_running_claim_tells_checking_from_sent_and_reruns_once(store: AnyStore) -> None:
    applied = await store.apply(Changes(at=1.0, incidents=[new_incident()], claims=[claim(-1)]))
    [c] = applied.claims
    assert await store.mark_sent(c.id, 2.0) is False  # not running: nothing to mark
    assert await store.start_claim(c.id, 2.0, {"url": "http://x"})
    [checking] = await store.claims_in((RUNNING,))
    assert (checking.sent_at, checking.interruptions) == (None, 0)
    [view] = (await store.list_actions(10, None)).items
    assert view["phase"] == "checking"

    assert await store.mark_sent(c.id, 2.5) is True
    assert await store.mark_sent(c.id, 2.6) is False  # the first mark stands
    [sent] = await store.claims_in((RUNNING,))
    assert sent.sent_at == 2.5
    assert (await store.list_actions(10, None)).items[0]["phase"] == "sent"

    assert await store.rerun_claim(c.id, "again", audit("rerun", c.incident_id)) is True
    assert await store.rerun_claim(c.id, "again", audit("rerun", c.incident_id)) is False
    [again] = await store.claims_in((CLAIMED,))
    assert (again.sent_at, again.request, again.started_at) == (None, None, None)
    assert (again.interruptions, again.detail) == (1, "again")
    assert await store.start_claim(c.id, 3.0, {"url": "http://x"})
    assert (await store.list_actions(10, None)).items[0]["phase"] == "checking"


async def test_a_resolution_cancels_the_pending_approvals_of_its_firing_steps(
    store: AnyStore,
) -> None:
    """Nobody is asked to approve what can no longer run. An undo's approval and a person's
    request may run after the resolution, and another incident's approval is not touched."""
    steps = {"tier0": "rollback", "manual": "scale", "on_resolved": "resume"}
    claims = [
        replace(claim(-1, action), step=step, idempotency_key=f"k-{step}")
        for step, action in steps.items()
    ]
    other = replace(claim(-2, "rollback"), idempotency_key="k-other")
    applied = await store.apply(
        Changes(
            at=1.0,
            incidents=[new_incident(-1, "c1"), new_incident(-2, "c2")],
            claims=[*claims, other],
        )
    )
    for c in applied.claims:
        entry = audit("approval_requested", c.incident_id)
        assert await store.request_approval(c, {}, 2.0, 1800.0, entry) is not None
    [first, _] = await store.load_open_incidents()
    resolved = replace(first, status="resolved", resolved_at=10.0)
    done = await store.apply(Changes(at=10.0, incidents=[IncidentWrite(resolved, {})]))

    [cancelled] = [e for e in done.audit if e.event == "approval_cancelled"]
    assert (cancelled.incident_id, cancelled.action, cancelled.tier) == (
        first.id,
        "rollback",
        "tier0",
    )
    assert cancelled.id is not None
    approvals = {(a.incident_id, a.action): a for a in await store.approvals()}
    assert {k: a.status for k, a in approvals.items()} == {
        (first.id, "rollback"): "cancelled",
        (first.id, "scale"): "pending",
        (first.id, "resume"): "pending",
        (first.id + 1, "rollback"): "pending",
    }
    assert approvals[(first.id, "rollback")].decided_by == "remediator"
    rollback = await store.claim(approvals[(first.id, "rollback")].claim_id)
    assert rollback is not None
    assert (rollback.status, rollback.finished_at) == (SKIPPED, 10.0)
    assert "the incident resolved before anyone approved" in rollback.detail


async def test_pending_approvals_are_counted_all_and_the_first_expiry_is_the_earliest(
    store: AnyStore,
) -> None:
    """The gauge and the expiry timer read every pending approval, not the page of the newest
    500 that listing returns."""
    assert await store.pending_approvals() == (0, None)
    many = [replace(claim(-1), idempotency_key=f"k-{n}", action=f"a{n}") for n in range(501)]
    applied = await store.apply(Changes(at=1.0, incidents=[new_incident()], claims=many))
    for n, c in enumerate(applied.claims):  # the oldest expires first
        expiry = 1000.0 + n
        assert await store.request_approval(c, {}, 2.0, expiry, audit("asked")) is not None
    assert len(await store.approvals("pending")) == 500  # a page
    assert await store.pending_approvals() == (501, 1000.0)
    assert await store.count_incidents("open") == 1


async def test_pages_are_newest_first(store: AnyStore) -> None:
    await store.apply(Changes(at=1.0, audit=[audit(f"m{i}") for i in range(5)]))
    page = await store.history(2, None)
    assert [e["message"] for e in page.items] == ["m4", "m3"]
    rest = await store.history(10, page.next_before)
    assert [e["message"] for e in rest.items] == ["m2", "m1", "m0"]
    assert rest.next_before is None


async def test_retention_deletes_only_what_is_old_decided_and_finished(store: AnyStore) -> None:
    """Old resolved incidents go with everything that hangs from them; an open incident, one
    with an unfinished claim, a recent one and an undecided journal entry stay."""
    old_entry = await store.append_journal("{}", 1.0)
    undecided = await store.append_journal("{}", 1.0)
    incidents = [new_incident(-1 - i, f"c{i}") for i in range(4)]  # old, unfinished, recent, open
    claims = [replace(claim(-1 - i), idempotency_key=f"k{i}") for i in range(4)]
    applied = await store.apply(
        Changes(
            at=1.0,
            journal_ids=[old_entry],
            incidents=incidents,
            claims=claims,
            audit=[audit("opened", -1 - i) for i in range(4)],
        )
    )
    old, unfinished, recent, _ = applied.claims
    for c in (old, recent):
        await store.start_claim(c.id, 2.0, {})
        await store.finish_claim(c.id, SUCCEEDED, "ok", 3.0, audit("done", c.incident_id))
    by_id = {i.id: i for i in await store.load_open_incidents()}
    resolutions = [(old, 10.0), (unfinished, 10.0), (recent, 500.0)]
    writes = [
        IncidentWrite(replace(by_id[c.incident_id], status="resolved", resolved_at=at), {})
        for c, at in resolutions
    ]
    await store.apply(Changes(at=500.0, incidents=writes))

    assert await store.prune_journal(100.0, 10) == 1  # decided at 1.0; the other is undecided
    assert [i for i, _ in await store.unprocessed_journal()] == [undecided]
    deleted = await store.prune_incidents(100.0, 10)
    assert (deleted["incidents"], deleted["claims"], deleted["audit"]) == (1, 1, 2)
    assert await store.prune_incidents(100.0, 10) == {}
    assert await store.claim(old.id) is None
    assert await store.incident(old.incident_id) is None
    for kept in (unfinished, recent):
        assert await store.claim(kept.id) is not None
    assert await store.count_incidents("open") == 1


async def test_a_renamed_rule_takes_its_incidents_and_claims_along(store: AnyStore) -> None:
    applied = await store.apply(Changes(at=1.0, incidents=[new_incident()], claims=[claim(-1)]))
    [c] = applied.claims

    def line(moved: int) -> AuditEntry:
        return AuditEntry("decision", "rule_renamed", f"{moved} moved", 2.0, rule="r2")

    entry = await store.rename_rule("r", "r2", line)
    assert entry is not None
    assert entry.message == "1 moved"
    assert [i.rule for i in await store.load_open_incidents()] == ["r2"]
    moved = await store.claim(c.id)
    assert moved is not None
    assert moved.rule == "r2"
    assert await store.rename_rule("r", "r2", line) is None  # nothing left to move


async def test_an_incident_record_has_its_claims_attempts_and_audit(store: AnyStore) -> None:
    applied = await store.apply(
        Changes(at=1.0, incidents=[new_incident()], claims=[claim(-1)], audit=[audit("opened", -1)])
    )
    [c] = applied.claims
    await store.start_claim(c.id, 2.0, {"url": "http://x"})
    attempt = Attempt(c.id, 1, 2.0, 2.5, True, "HTTP 202", status_code=202, output="{}")
    done = audit("done", c.incident_id)
    await store.finish_claim(c.id, SUCCEEDED, "HTTP 202", 3.0, done, last_attempt=attempt)
    record = await store.incident_record(c.incident_id)
    assert record is not None
    assert record["key"] == {"alertname": "X", "connector": "c1"}
    [view] = record["claims"]
    assert (view["status"], view["attempts"][0]["ok"], view["attempts"][0]["status_code"]) == (
        SUCCEEDED,
        True,
        202,
    )
    assert [e["message"] for e in record["audit"]] == ["opened", "done"]
    assert await store.incident_record(c.incident_id + 100) is None


async def test_a_quarantined_journal_entry_is_processed_kept_and_audited(store: AnyStore) -> None:
    bad = await store.append_journal('{"poison": true}', 1.0)
    good = await store.append_journal("{}", 1.0)
    entry = AuditEntry("audit", "journal_quarantined", f"journal entry {bad}", 2.0)
    await store.quarantine_journal(bad, "UnicodeEncodeError: x", entry)
    assert await store.unprocessed_journal() == [(good, "{}")]  # a restart does not retry it
    assert await store.quarantined_journal() == [(bad, "UnicodeEncodeError: x")]
    [line] = (await store.history(10, None)).items
    assert (line["event"], line["message"]) == ("journal_quarantined", f"journal entry {bad}")


async def test_a_failure_of_the_requests_own_data_does_not_count_for_the_breaker(
    store: AnyStore,
) -> None:
    """Failures on the target count; one whose attempt says the target refused the request's
    data (target_fault false, e.g. a 404 for a connector that does not exist) is skipped, and
    does not end the count either."""
    for n, (fault, finished) in enumerate([(True, 10.0), (False, 11.0), (True, 12.0)]):
        applied = await store.apply(
            Changes(at=1.0, incidents=[new_incident(key=f"c{n}")], claims=[claim(-1)])
        )
        [c] = applied.claims
        assert await store.start_claim(c.id, 2.0, {})
        attempt = Attempt(c.id, 1, 2.0, finished, False, "HTTP 5xx or 404", target_fault=fault)
        await store.finish_claim(c.id, "failed", "x", finished, audit("x"), last_attempt=attempt)
    assert await store.target_failures("connect") == [10.0, 12.0]


async def test_the_guardrail_state_is_the_starts_since_a_time_and_the_busy_targets(
    store: AnyStore,
) -> None:
    """What GET /api/v1/guardrails reads: started actions since `since` (finished or running,
    oldest first, with their incident's key), never a claim that did not start; and the
    targets with a running action."""
    names = ("early", "restart", "flag", "waiting")
    claims = [replace(claim(-1, name), idempotency_key=name) for name in names]
    applied = await store.apply(Changes(at=0.1, incidents=[new_incident()], claims=claims))
    early, restart, flag, _ = applied.claims
    for c, at in ((early, 0.5), (restart, 2.0), (flag, 5.0)):
        assert await store.start_claim(c.id, at, {})
    for c in (early, restart):
        await store.finish_claim(c.id, SUCCEEDED, "ok", 6.0, audit("done", c.incident_id))

    state = await store.guardrail_state(1.0)

    assert [(s.action, s.at, s.rule, s.target) for s in state.starts] == [
        ("restart", 2.0, "r", "connect"),
        ("flag", 5.0, "r", "connect"),
    ]
    assert state.starts[0].key == ("X", "c1")
    assert state.starts[0].key_labels == {"alertname": "X", "connector": "c1"}
    assert state.busy == ["connect"]
    await store.finish_claim(flag.id, SUCCEEDED, "ok", 7.0, audit("done", flag.incident_id))
    assert (await store.guardrail_state(1.0)).busy == []
