"""What replay and backtest say: incidents named by rule, key and occurrence, outcomes both a
replay and the audit can state, the summary's counts and busiest hour."""

from __future__ import annotations

from remediator.report import compare, lines, summarise
from remediator.store.records import AuditEntry

KEYS = {1: ("r", "alertname=A"), 2: ("r", "alertname=A"), 3: ("r", "alertname=B")}
TARGETS = {"act": "t"}


def entry(at: float, event: str, incident: int | None, **kw: object) -> AuditEntry:
    return AuditEntry(kind="action", event=event, message=str(kw.pop("message", event)), at=at,
                      incident_id=incident, **kw)  # type: ignore[arg-type]  # fmt: skip


def test_incidents_are_numbered_per_key_and_those_opened_before_the_range_left_out() -> None:
    entries = [
        entry(5, "escalated", 9),  # incident 9 opened before the range
        entry(10, "opened", 1),
        entry(10, "claimed", 1, tier="x", action="act"),
        entry(10, "succeeded", 1, tier="x", action="act", detail={"claim_id": 7}),
        entry(20, "opened", 2),
        entry(20, "refused", 2, tier="x", action="act", message="act: refused: cooldown: 10m"),
        entry(30, "opened", 3),
        entry(30, "approval_requested", 3, tier="x", action="act", detail={"claim_id": 8}),
        entry(40, "approval_expired", 3, action="act", detail={"claim_id": 8}),
    ]
    found = lines(entries, {**KEYS, 9: ("r", "alertname=C")}, TARGETS, 0, 100)
    assert [(line.incident, line.event) for line in found] == [
        ("r [alertname=A] #1", "opened"),
        ("r [alertname=A] #1", "succeeded"),
        ("r [alertname=A] #2", "opened"),
        ("r [alertname=A] #2", "refused"),
        ("r [alertname=B] #1", "opened"),
        ("r [alertname=B] #1", "approval_requested"),
        ("r [alertname=B] #1", "approval_expired"),
    ]
    assert found[-1].tier == "x"  # from its claim's earlier line
    summary = summarise(found, notifications=3)
    assert (summary.incidents, summary.refusals, len(summary.approvals)) == (3, {"cooldown": 1}, 1)
    assert summary.actions == {("r", "t"): 1}
    assert summary.busiest_hour == (0.0, 1)


def test_the_comparison_pairs_actions_by_incident_occurrence_tier_and_action() -> None:
    live = lines([entry(10, "opened", 1), entry(10, "failed", 1, tier="x", action="act")],
                 KEYS, TARGETS, 0, 100)  # fmt: skip
    replayed = lines([entry(50, "opened", 2), entry(50, "succeeded", 2, tier="x", action="act")],
                     {2: ("r", "alertname=A")}, TARGETS, 0, 100)  # fmt: skip
    [same] = compare(live, replayed)
    assert (same.occurrence, same.live, same.replay, same.same) == (1, "ran", "ran", True)
    [only_live] = compare(live, [])
    assert (only_live.live, only_live.replay, only_live.same) == ("ran", None, False)
