"""The store's contract for what people steer and what Slack delivers, on both backends:
settings, mutes, approvals decided and expired (remediator.approvals' rules), circuit breaker
failures (guardrails.BREAKER_OUTCOMES), the facts start_claim_if judges on (lanes of a target
included), the Slack outbox."""

from __future__ import annotations

from dataclasses import replace

from remediator.guardrails import Verdict
from remediator.store.records import (
    AWAITING_APPROVAL,
    CLAIMED,
    FAILED,
    REFUSED,
    RUNNING,
    SUCCEEDED,
    VERIFY_FAILED,
    AuditEntry,
    Changes,
    Delivered,
    MuteRow,
    OutboxItem,
    TargetHistory,
)
from tests.store.conftest import AnyStore
from tests.store.test_contract import audit, claim, new_incident


def line(event: str) -> AuditEntry:
    return AuditEntry("control", event, event, 5.0, actor="alice")


async def claims(store: AnyStore, n: int) -> list[int]:
    incidents = [new_incident(-1 - i, f"c{i}") for i in range(n)]
    news = [replace(claim(-1 - i), idempotency_key=f"k{i}") for i in range(n)]
    applied = await store.apply(Changes(at=1.0, incidents=incidents, claims=news))
    return [c.id for c in applied.claims]


async def test_settings_and_mutes(store: AnyStore) -> None:
    assert await store.get_setting("killswitch") is None
    await store.put_setting("killswitch", {"on": True}, 1.0, line("killswitch"))
    assert await store.get_setting("killswitch") == {"on": True}
    mute = MuteRow(0, "r", None, None, "deploy", "alice", 1.0, 100.0)
    added, entry = await store.add_mute(mute, lambda m: line(f"muted {m.id}"))
    assert entry.message == f"muted {added.id}"
    assert [m.id for m in await store.mutes(50.0)] == [added.id]
    assert await store.mutes(150.0) == []  # expired
    assert await store.end_mute(added.id, "bob", 60.0, line("unmuted")) is True
    assert await store.end_mute(added.id, "bob", 61.0, line("unmuted")) is False
    assert await store.mutes(61.0) == []
    [ended] = await store.mutes(61.0, include_inactive=True)
    assert (ended.ended_by, ended.ended_at) == ("bob", 60.0)


async def test_an_approval_is_decided_once_and_never_after_it_expired(store: AnyStore) -> None:
    first, second, third = [await store.claim(i) for i in await claims(store, 3)]
    assert first is not None and second is not None and third is not None  # noqa: PT018
    approvals = [
        await store.request_approval(c, {"url": "u"}, 2.0, 100.0, audit("asked"))
        for c in (first, second, third)
    ]
    assert all(a is not None for a in approvals)
    ids = [a.id for a in approvals if a is not None]
    assert (await store.claim(first.id)).status == AWAITING_APPROVAL  # type: ignore[union-attr]

    approved, problem = await store.decide_approval(ids[0], True, "alice", "", 50.0, line("ok"))
    assert (problem, approved.status if approved else None) == ("", "approved")
    assert (await store.claim(first.id)).status == CLAIMED  # type: ignore[union-attr]
    _, problem = await store.decide_approval(ids[0], False, "bob", "", 51.0, line("no"))
    assert problem == f"approval {ids[0]} is already approved"

    _, problem = await store.decide_approval(ids[1], False, "bob", "risky", 50.0, line("no"))
    refused = await store.claim(second.id)
    assert refused is not None
    assert (refused.status, refused.detail) == (REFUSED, "approval: denied by bob: risky")

    _, problem = await store.decide_approval(ids[2], True, "alice", "", 100.0, line("ok"))
    assert problem.startswith(f"approval {ids[2]} expired at ")
    [expired] = await store.expire_approvals(100.0)
    assert expired.id == ids[2]
    assert "expired unanswered" in (await store.claim(third.id)).detail  # type: ignore[union-attr]
    assert await store.expire_approvals(200.0) == []
    assert await store.decide_approval(ids[2] + 100, True, "a", "", 1.0, line("x")) == (
        None,
        f"no approval {ids[2] + 100}",
    )


async def test_breaker_failures_count_since_the_last_success_or_reset(store: AnyStore) -> None:
    ids = await claims(store, 5)
    outcomes = [(FAILED, None), (SUCCEEDED, None), (FAILED, None), (SUCCEEDED, VERIFY_FAILED)]
    for n, (claim_id, (status, verify)) in enumerate(zip(ids, outcomes, strict=False)):
        await store.start_claim(claim_id, 10.0 + n, {})
        await store.finish_claim(claim_id, status, "x", 20.0 + n, audit("done"))
        if verify is not None:
            await store.set_verification(claim_id, verify, "still down", None, None)
    assert await store.target_failures("connect") == [22.0, 23.0]  # after the success at 21
    await store.reset_circuit("connect", "alice", 30.0, line("reset"))
    assert await store.target_failures("connect") == []


async def test_start_claim_if_judges_on_the_stores_facts(store: AnyStore) -> None:
    first, second = await claims(store, 2)
    seen: list[TargetHistory] = []

    def judge(history: TargetHistory, mutes: list[MuteRow]) -> Verdict:
        seen.append(history)
        return Verdict("wait") if history.target_busy else Verdict("allow")

    c1, c2 = await store.claim(first), await store.claim(second)
    assert c1 is not None and c2 is not None  # noqa: PT018
    assert (await store.start_claim_if(c1, {}, 5.0, 0.0, judge))[1] is True
    verdict, started = await store.start_claim_if(c2, {}, 6.0, 0.0, judge)
    assert (verdict, started) == (Verdict("wait"), False)  # c1 runs on the same target
    assert seen[-1].started_global == [5.0]
    assert seen[-1].incident_status == "open"
    assert (await store.claim(first)).status == RUNNING  # type: ignore[union-attr]


async def test_a_claim_in_a_lane_waits_only_for_its_lane_or_the_whole_target(
    store: AnyStore,
) -> None:
    def judge(history: TargetHistory, mutes: list[MuteRow]) -> Verdict:
        return Verdict("wait") if history.target_busy else Verdict("allow")

    a1, a2, b, whole = [await store.claim(i) for i in await claims(store, 4)]
    assert a1 and a2 and b and whole  # noqa: PT018
    lane_a, lane_b = '{"connector":"a"}', '{"connector":"b"}'
    assert (await store.start_claim_if(a1, {}, 5.0, 0.0, judge, lane_a, sent=True))[1] is True
    assert (await store.start_claim_if(a2, {}, 5.0, 0.0, judge, lane_a))[1] is False
    assert (await store.start_claim_if(b, {}, 5.0, 0.0, judge, lane_b))[1] is True
    assert (await store.start_claim_if(whole, {}, 5.0, 0.0, judge))[1] is False  # lanes run
    started = await store.claim(a1.id)
    assert started is not None
    assert started.sent_at == 5.0  # no precondition: sent as it started, in the same commit
    assert (await store.claim(b.id)).sent_at is None  # type: ignore[union-attr]
    for done in (a1, b):
        await store.finish_claim(done.id, SUCCEEDED, "ok", 6.0, audit("done"))
    assert (await store.start_claim_if(whole, {}, 7.0, 0.0, judge))[1] is True
    assert (await store.start_claim_if(a2, {}, 7.0, 0.0, judge, lane_a))[1] is False  # whole


async def test_the_outbox_delivers_in_order_per_thread(store: AnyStore) -> None:
    entry = (await store.apply(Changes(at=1.0, audit=[audit("opened")]))).audit[0]
    assert entry.id is not None
    assert [e.id for e in await store.audit_after(0, 10)] == [entry.id]
    items = [
        OutboxItem("incident:1", "#a", "post", {"text": "one"}, ref="incident:1"),
        OutboxItem("incident:1", "#a", "reply", {"text": "two"}, parent="incident:1"),
        OutboxItem("channel:#b", "#b", "post", {"text": "three"}),
    ]
    await store.enqueue_slack(items, entry.id, 1.0)
    assert await store.get_setting("slack_cursor") == entry.id
    due = await store.outbox_due(2.0, 10)
    assert [r.payload["text"] for r in due] == ["one", "three"]  # one at a time per thread
    await store.outbox_done(due[0].id, "sent", 2.0, sent=("incident:1", "C1", "1.1"))
    await store.outbox_retry(due[1].id, 50.0, "429")
    assert [r.payload["text"] for r in await store.outbox_due(3.0, 10)] == ["two"]
    assert await store.outbox_stats() == (2, 1.0)  # "two" is due since it was queued
    assert await store.slack_message("incident:1") == ("C1", "1.1")


async def test_the_outbox_reads_a_passs_incidents_and_their_actions_at_once(
    store: AnyStore,
) -> None:
    incidents = [new_incident(-1 - i, f"c{i}") for i in range(3)]
    applied = await store.apply(Changes(at=1.0, incidents=incidents))
    ids = sorted(applied.incident_ids.values())
    assert len(ids) == 3
    missing = max(ids) + 100
    views = await store.incidents([*ids, missing])
    assert views == {i: await store.incident(i) for i in ids}
    assert await store.incidents([]) == {}
    assert await store.ran_actions_of([*ids, missing]) == {i: set() for i in [*ids, missing]}


async def test_a_delivery_pass_is_recorded_in_one_write(store: AnyStore) -> None:
    items = [
        OutboxItem("incident:1", "#a", "post", {"text": "one"}, ref="incident:1"),
        OutboxItem("incident:2", "#a", "post", {"text": "two"}, ref="incident:2"),
        OutboxItem("channel:#b", "#b", "post", {"text": "three"}),
    ]
    await store.enqueue_slack(items, 0, 1.0)
    one, two, three = await store.outbox_due(2.0, 10)
    await store.outbox_delivered(
        [
            Delivered(one.id, "sent", 2.0, sent=("incident:1", "C1", "1.1")),
            Delivered(two.id, "failed", 2.0, "channel_not_found"),
            Delivered(three.id, "sent", 2.0),
        ]
    )
    await store.outbox_delivered([])  # nothing delivered: nothing written
    assert await store.outbox_stats() == (0, None)
    assert await store.slack_message("incident:1") == ("C1", "1.1")
    assert await store.slack_message("incident:2") is None
