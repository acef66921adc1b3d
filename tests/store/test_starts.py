"""Claims judged together (starts.py), on both backends: what PostgreSQL's starts batcher judges
in one transaction decides what judging the claims one at a time would. Concurrent calls of
start_claim_if from one process queue together for the batcher; SQLite's writer runs them one
after another."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from remediator.guardrails import Verdict
from remediator.store.records import RUNNING, SUCCEEDED, Claim, MuteRow, TargetHistory
from remediator.store.starts import Judge, StartIf, after
from tests.store.conftest import AnyStore
from tests.store.test_contract import audit
from tests.store.test_controls import claims

BUDGET = 2


def budgeted(seen: dict[int, TargetHistory], claim_id: int) -> Judge:
    """A judge: a global budget of BUDGET starts, one at a time per target or lane."""

    def judge(history: TargetHistory, mutes: list[MuteRow]) -> Verdict:
        seen[claim_id] = history
        if len(history.started_global) >= BUDGET:
            return Verdict("refuse", "budget")
        return Verdict("wait") if history.target_busy else Verdict("allow")

    return judge


async def load(store: AnyStore, n: int) -> list[Claim]:
    found = [await store.claim(i) for i in await claims(store, n)]
    assert all(c is not None for c in found)
    return [c for c in found if c is not None]


async def test_claims_judged_together_see_the_starts_before_them(store: AnyStore) -> None:
    seen: dict[int, TargetHistory] = {}
    a1, a2, b, c, d = await load(store, 5)
    lanes = {a1.id: "a", a2.id: "a", b.id: "b", c.id: "c", d.id: "d"}
    results = await asyncio.gather(
        *(
            store.start_claim_if(
                x,
                {"n": n},
                5.0 + n,
                0.0,
                budgeted(seen, x.id),
                lanes[x.id],
            )
            for n, x in enumerate((a1, a2, b, c, d))
        )
    )
    outcomes = [(v.outcome if v else None, started) for v, started in results]
    # a1 starts; a2 waits for lane a; b takes the budget's last unit; c and d are refused
    assert outcomes == [
        ("allow", True),
        ("wait", False),
        ("allow", True),
        ("refuse", False),
        ("refuse", False),
    ]
    assert seen[a2.id].target_busy
    assert not seen[b.id].target_busy
    assert seen[b.id].started_global == [5.0]
    assert seen[c.id].started_global == [5.0, 7.0]
    running = [x for x in [await store.claim(i.id) for i in (a1, b)] if x is not None]
    assert [(x.status, x.started_at, x.request) for x in running] == [
        (RUNNING, 5.0, {"n": 0}),
        (RUNNING, 7.0, {"n": 2}),
    ]


async def test_a_claim_that_changed_before_its_start_does_not_hold_the_others(
    store: AnyStore,
) -> None:
    def judge(history: TargetHistory, mutes: list[MuteRow]) -> Verdict:
        return Verdict("wait") if history.target_busy else Verdict("allow")

    stale, waiting = await load(store, 2)
    await store.start_claim(stale.id, 3.0, {})
    await store.finish_claim(stale.id, SUCCEEDED, "ok", 4.0, audit("done"))
    # `stale` is allowed but no longer claimed: `waiting`, on the same target, must not be
    # judged as if it ran
    results = await asyncio.gather(
        store.start_claim_if(stale, {}, 5.0, 0.0, judge),
        store.start_claim_if(waiting, {}, 5.0, 0.0, judge),
    )
    assert [started for _, started in results] == [False, True]


def _start(claim: Claim, now: float, lane: str | None = None, since: float = 0.0) -> StartIf:
    return StartIf(claim, {}, now, since, lambda h, m: None, lane)


def test_after_counts_the_starts_before_a_claim_in_its_batch() -> None:
    base = Claim(
        1,
        10,
        "t0",
        "restart",
        "http",
        "connect",
        "r",
        "k",
        {},
        None,
        "claimed",
        "",
        0,
        1.0,
        None,
        None,
    )
    history = TargetHistory(None, [1.0], [], False, [], None, "open")
    same_key = replace(base, id=2, incident_id=11)
    other_action = replace(base, id=3, incident_id=12, action="scale", target="elsewhere")
    one = _start(replace(base, id=4, incident_id=13), 9.0, lane="x", since=5.0)
    begun = [(_start(same_key, 6.0, "y"), "key"), (_start(other_action, 4.0), "other")]
    seen = after(history, one, "key", begun)
    assert seen.started_global == [1.0, 6.0]  # 4.0 is before the claim's `since`
    assert seen.started_action == [6.0]
    assert seen.last_other_start == 6.0  # same key, rule and target, another incident
    assert seen.target_busy is False  # lane y of connect, and another target
    assert after(history, replace(one, lane=None), "key", begun).target_busy is True
    assert after(history, one, "key", []) is history


async def test_a_claim_is_judged_with_its_approval(store: AnyStore) -> None:
    asked, plain = await load(store, 2)
    approval = await store.request_approval(asked, {"url": "u"}, 2.0, 100.0, audit("asked"))
    assert approval is not None
    await store.decide_approval(approval.id, True, "alice", "", 3.0, audit("ok"))
    seen: dict[int, TargetHistory] = {}
    await asyncio.gather(
        *(
            store.start_claim_if(c, {}, 5.0, 0.0, budgeted(seen, c.id), str(c.id))
            for c in (asked, plain)
        )
    )
    judged = seen[asked.id].approval
    assert judged is not None
    assert (judged.id, judged.status, judged.decided_by) == (approval.id, "approved", "alice")
    assert seen[plain.id].approval is None


async def test_a_claim_is_judged_with_the_mutes_active_at_its_time(store: AnyStore) -> None:
    first, second = await load(store, 2)
    for until in (6.0, 100.0, 200.0):
        await store.add_mute(
            MuteRow(0, "r", None, None, "deploy", "alice", 1.0, until), lambda m: audit("muted")
        )
    seen: dict[int, list[float]] = {}

    def judge(claim_id: int) -> Judge:
        def decide(history: TargetHistory, mutes: list[MuteRow]) -> Verdict:
            seen[claim_id] = [m.until for m in mutes]
            return Verdict("wait")

        return decide

    await asyncio.gather(
        store.start_claim_if(first, {}, 5.0, 0.0, judge(first.id), "a"),
        store.start_claim_if(second, {}, 7.0, 0.0, judge(second.id), "b"),
    )
    assert seen == {first.id: [200.0, 100.0, 6.0], second.id: [200.0, 100.0]}  # newest first


async def test_a_targets_failures_are_read_only_for_a_claim_with_a_breaker(
    store: AnyStore,
) -> None:
    failed, with_breaker, without = await load(store, 3)
    await store.start_claim(failed.id, 2.0, {})
    await store.finish_claim(failed.id, "failed", "HTTP 503", 3.0, audit("failed"))
    seen: dict[int, TargetHistory] = {}
    await asyncio.gather(
        store.start_claim_if(with_breaker, {}, 5.0, 0.0, budgeted(seen, with_breaker.id), "a"),
        store.start_claim_if(without, {}, 5.0, 0.0, budgeted(seen, without.id), "b", breaker=False),
    )
    assert seen[with_breaker.id].failures == [3.0]
    assert seen[without.id].failures == []
