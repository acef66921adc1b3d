"""Claims judged together (starts.py), on both backends: what PostgreSQL's starts batcher judges
in one transaction decides what judging the claims one at a time would. Concurrent calls of
start_claim_if from one process queue together for the batcher; SQLite's writer runs them one
after another."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from remediator.guardrails import Verdict
from remediator.store.records import (
    EVERY_FACT,
    FAILED,
    RUNNING,
    SUCCEEDED,
    VERIFY_FAILED,
    Attempt,
    Changes,
    Claim,
    IncidentWrite,
    MuteRow,
    Needed,
    TargetHistory,
)
from remediator.store.starts import Judge, StartIf, after
from tests.store.conftest import AnyStore
from tests.store.test_contract import audit, claim, new_incident
from tests.store.test_controls import claims, line

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
        store.start_claim_if(
            without, {}, 5.0, 0.0, budgeted(seen, without.id), "b", needed=Needed(breaker=False)
        ),
    )
    assert seen[with_breaker.id].failures == [3.0]
    assert seen[without.id].failures == []


def waiting(seen: list[TargetHistory]) -> Judge:
    def judge(history: TargetHistory, mutes: list[MuteRow]) -> Verdict:
        seen.append(history)
        return Verdict("wait")

    return judge


async def test_a_claim_is_judged_on_the_facts_it_needs_and_reads_no_other(
    store: AnyStore,
) -> None:
    """The last start for another incident of its key (cooldown), the starts (budgets), its
    target's failures (breaker) and its approval, each read only if needed."""
    [before] = await load(store, 1)
    await store.start_claim(before.id, 2.0, {})
    await store.finish_claim(before.id, FAILED, "HTTP 503", 3.0, audit("failed"))
    [opened] = await store.load_open_incidents()
    resolved = IncidentWrite(replace(opened, status="resolved", resolved_at=4.0), {})
    again = new_incident(-1, "c0")  # the same key: a cooldown counts the start before
    applied = await store.apply(
        Changes(at=5.0, incidents=[resolved, again], claims=[replace(claim(-1), at=5.0)])
    )
    judged = await store.claim(applied.claims[0].id)
    assert judged is not None
    approval = await store.request_approval(judged, {}, 5.0, 100.0, audit("asked"))
    assert approval is not None
    await store.decide_approval(approval.id, True, "alice", "", 6.0, audit("ok"))
    seen: list[TargetHistory] = []
    for needed in (EVERY_FACT, Needed(False, False, False, False)):
        await store.start_claim_if(judged, {}, 7.0, 0.0, waiting(seen), needed=needed)
    every, none = seen
    assert (every.last_other_start, every.started_global, every.started_action) == (
        2.0,
        [2.0],
        [2.0],
    )
    assert every.failures == [3.0]
    assert every.approval is not None and every.approval.status == "approved"  # noqa: PT018
    assert none == TargetHistory(None, [], [], False, [], None, "open")
    assert every.incident_status == "open"


async def test_the_active_mutes_are_read_for_a_claim_that_needs_no_other_fact(
    store: AnyStore,
) -> None:
    first, second = await load(store, 2)
    await store.start_claim(first.id, 2.0, {})
    mute = MuteRow(0, "r", None, None, "deploy", "alice", 1.0, 100.0)
    await store.add_mute(mute, lambda m: audit("muted"))
    seen: list[list[MuteRow]] = []

    def judge(history: TargetHistory, mutes: list[MuteRow]) -> Verdict:
        assert (history.started_global, history.target_busy) == ([], True)
        seen.append(mutes)
        return Verdict("wait")

    nothing = Needed(False, False, False, False)
    await store.start_claim_if(second, {}, 5.0, 0.0, judge, needed=nothing)
    await store.start_claim_if(second, {}, 150.0, 0.0, judge, needed=nothing)
    assert [[m.reason for m in mutes] for mutes in seen] == [["deploy"], []]


async def test_a_targets_failures_are_those_since_its_last_success_or_reset(
    store: AnyStore,
) -> None:
    """What a start reads of its target's failures (without reading them while there is none
    since its last success) is what target_failures reads, step by step; at equal times the
    claim with the larger id finished last."""
    *done, probe = await load(store, 15)
    seen: list[TargetHistory] = []
    steps: list[tuple[str, float, list[float]]] = [
        ("ok", 10.0, []),
        ("failed", 11.0, [11.0]),
        ("refused", 12.0, [11.0]),  # the request's own fault: not the target's
        ("verify_failed", 13.0, [11.0, 13.0]),
        ("ok-refused", 14.0, [11.0, 13.0]),  # a success that says nothing either
        ("ok", 15.0, []),
        ("failed", 16.0, [16.0]),
        ("reset", 17.0, []),
        ("failed", 18.0, [18.0]),
        ("failed", 18.0, [18.0, 18.0]),
        ("ok", 18.0, []),  # finished at the same time, after them (a larger id)
        ("failed", 19.0, [19.0]),
        ("ok", 19.0, []),
        ("ok", 20.0, []),
        ("failed", 20.0, [20.0]),  # the same time, after it
    ]
    claims_left = iter(done)
    for what, at, failures in steps:
        if what == "reset":
            await store.reset_circuit("connect", "alice", at, line("reset"))
        else:
            await _finish(store, next(claims_left), what, at)
        await store.start_claim_if(probe, {}, at + 0.5, 0.0, waiting(seen))
        assert (seen[-1].failures, what, at) == (failures, what, at)
        assert await store.target_failures("connect") == failures


async def _finish(store: AnyStore, c: Claim, what: str, at: float) -> None:
    """Run the claim to an outcome at `at`: ok, failed, refused (failed, the request's own
    fault), ok-refused (succeeded after such an attempt), verify_failed."""
    await store.start_claim(c.id, at - 0.5, {})
    fault = what not in ("refused", "ok-refused")
    status = FAILED if what in ("failed", "refused") else SUCCEEDED
    attempt = Attempt(c.id, 1, at - 0.5, at, status == SUCCEEDED, what, target_fault=fault)
    await store.finish_claim(c.id, status, what, at, audit(what), last_attempt=attempt)
    if what == "verify_failed":
        await store.set_verification(c.id, VERIFY_FAILED, "still down", None, None)
