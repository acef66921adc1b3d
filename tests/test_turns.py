"""Claims on one target take turns: queued rows, one in flight per target."""

from __future__ import annotations

from remediator.store.records import Claim
from remediator.turns import Turns


def on(target: str, claim_id: int) -> Claim:
    """A claim on `target`, as far as Turns looks at it."""
    return Claim(claim_id, 1, "act", "a", "http", target, "r", "k", {}, None, "running", "", 0, 0.0,
                 0.0, None)  # fmt: skip


def test_claims_on_a_target_start_one_at_a_time_in_order_and_other_targets_at_once() -> None:
    started: list[int] = []
    turns = Turns(poll=60.0, start=lambda claim: started.append(claim.id))
    for claim in (on("t", 1), on("t", 2), on("u", 3), on("t", 4)):
        turns.add(claim)
    assert (started, turns.queued()) == ([1, 3], 2)
    turns.pass_on(on("t", 2))  # not its turn: starts nothing
    turns.pass_on(on("t", 1))
    turns.pass_on(on("t", 1))  # handed off, then ended: passes its turn once
    assert (started, turns.queued()) == ([1, 3, 2], 1)
    turns.pass_on(on("t", 2))
    turns.pass_on(on("t", 4))
    turns.add(on("t", 5))  # a free target: at once
    assert (started, turns.queued()) == ([1, 3, 2, 4, 5], 0)


def test_after_close_no_claim_starts() -> None:
    started: list[int] = []
    turns = Turns(poll=60.0, start=lambda claim: started.append(claim.id))
    turns.add(on("t", 1))
    turns.add(on("t", 2))
    turns.close()
    turns.pass_on(on("t", 1))
    turns.add(on("u", 3))
    assert started == [1]


def test_a_key_gives_each_lane_of_a_target_its_own_queue() -> None:
    started: list[int] = []
    lanes = {1: "a", 2: "a", 3: "b"}
    turns = Turns(60.0, lambda claim: started.append(claim.id), lambda c: f"t/{lanes[c.id]}")
    for claim_id in (1, 2, 3):
        turns.add(on("t", claim_id))
    assert (started, turns.queued()) == ([1, 3], 1)  # lanes a and b side by side
    turns.pass_on(on("t", 1))
    assert started == [1, 3, 2]
