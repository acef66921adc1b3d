"""The incident state machine: pure decisions from (incident, rule, event)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remediator.incidents import (
    Closed,
    Decision,
    Escalated,
    Firing,
    Incident,
    InstanceId,
    NeedsHuman,
    NoValue,
    Opened,
    RunTier,
    Transition,
    escalation_due,
    on_firing,
    on_resolved,
    on_tick,
    on_verify_failed,
    open_incident,
)
from remediator.matchers import parse_matchers
from remediator.rules import Condition, Repeats, ResolvedStep, Rule, Tier, ValueSource

A: InstanceId = ("fp-a", 1000.0)
B: InstanceId = ("fp-b", 1000.0)
MISSING = "annotation 'error_rate' is missing"
THRESHOLDS = (0.05, 0.1, 0.2)

# The ingestion runbook: > 5 % notify, > 10 % pause, > 20 % roll back; resume on resolve.
INGESTION = Rule(
    name="ingestion-error-rate",
    matchers=parse_matchers('{alertname="IngestionHighErrorRate"}'),
    incident_key=("alertname",),
    tiers=(
        Tier(0, "notify", Condition(">", 0.05), ()),
        Tier(1, "pause", Condition(">", 0.1), ("pause_ingestion",)),
        Tier(2, "rollback", Condition(">", 0.2), ("pause_ingestion", "rollback_feature_flag")),
    ),
    value=ValueSource("annotation", "error_rate"),
    on_resolved=(ResolvedStep("resume_ingestion", ("pause_ingestion",)),),
)


def fire(value: float | None, instance: InstanceId = A, at: float = 0.0) -> Firing:
    return Firing(instance, value, MISSING if value is None else None, at)


def opened(value: float | None, instance: InstanceId = A, rule: Rule = INGESTION) -> Incident:
    return open_incident(rule, ("IngestionHighErrorRate",), 7, fire(value, instance)).incident


def replay(values: list[float | None]) -> tuple[list[tuple[Decision, ...]], Incident]:
    """Open with the first value, then feed the rest as the same instance firing again."""
    step = open_incident(INGESTION, ("IngestionHighErrorRate",), 7, fire(values[0]))
    decided = [step.decisions]
    for value in values[1:]:
        step = on_firing(step.incident, INGESTION, fire(value))
        decided.append(step.decisions)
    return decided, step.incident


def climb(start: int, to: int, value: float) -> tuple[Decision, ...]:
    reason = f"value {value:g} > {THRESHOLDS[to]:g}"
    return (Escalated(start, to, reason), RunTier(to))


@pytest.mark.parametrize(
    ("values", "decisions", "tier"),
    [
        ([0.03], [(Opened(-1),)], -1),
        ([0.05], [(Opened(-1),)], -1),  # > is strict
        ([0.06], [(Opened(0), RunTier(0))], 0),
        ([0.12], [(Opened(1), RunTier(1))], 1),
        ([0.23], [(Opened(2), RunTier(2))], 2),
        ([None], [(Opened(-1), NoValue(MISSING))], -1),
        ([math.nan], [(Opened(-1),)], -1),
        # climbing by value: each step runs the tier it reaches
        ([0.05, 0.12, 0.23], [(Opened(-1),), climb(-1, 1, 0.12), climb(1, 2, 0.23)], 2),
        # a jump from notify to rollback does not replay pause
        ([0.06, 0.23], [(Opened(0), RunTier(0)), climb(0, 2, 0.23)], 2),
        # never down while firing
        ([0.23, 0.08], [(Opened(2), RunTier(2)), ()], 2),
        ([0.12, 0.01, 0.12], [(Opened(1), RunTier(1)), (), ()], 1),
        # a higher value in the same tier decides nothing
        ([0.12, 0.15], [(Opened(1), RunTier(1)), ()], 1),
        # repeats decide nothing
        ([0.12, 0.12, 0.12], [(Opened(1), RunTier(1)), (), ()], 1),
        ([math.nan, math.nan], [(Opened(-1),), ()], -1),
        # a missing value is said once
        ([None, None], [(Opened(-1), NoValue(MISSING)), ()], -1),
        ([0.12, None], [(Opened(1), RunTier(1)), ()], 1),
        ([0.12, None, None, 0.12], [(Opened(1), RunTier(1)), (), (), ()], 1),
        ([None, 0.12], [(Opened(-1), NoValue(MISSING)), climb(-1, 1, 0.12)], 1),
    ],
)
def test_ladder(
    values: list[float | None], decisions: list[tuple[Decision, ...]], tier: int
) -> None:
    decided, incident = replay(values)
    assert decided == decisions
    assert incident.tier == tier
    assert incident.open


def test_a_repeat_returns_the_same_incident_object() -> None:
    incident = opened(0.12)
    step = on_firing(incident, INGESTION, fire(0.12, at=60.0))
    assert step == Transition(incident, ())
    assert step.incident is incident


def test_the_incident_keeps_the_latest_known_value() -> None:
    _, incident = replay([0.23, 0.08, None])
    assert (incident.tier, incident.value) == (2, 0.08)
    assert incident.instances == {A: None}


def test_open_records_everything() -> None:
    step = open_incident(INGESTION, ("IngestionHighErrorRate",), 7, fire(0.12, at=100.0))
    assert step.incident == Incident(
        id=7,
        rule="ingestion-error-rate",
        key=("IngestionHighErrorRate",),
        status="open",
        tier=1,
        value=0.12,
        opened_at=100.0,
        tier_at=100.0,
        updated_at=100.0,
        instances={A: 0.12},
    )


def test_times_move_with_changes_and_climbs() -> None:
    incident = opened(0.06)
    climbed = on_firing(incident, INGESTION, fire(0.23, at=160.0)).incident
    changed = on_firing(climbed, INGESTION, fire(0.3, at=200.0)).incident
    assert (climbed.tier_at, climbed.updated_at) == (160.0, 160.0)
    assert (changed.opened_at, changed.tier_at, changed.updated_at) == (0.0, 160.0, 200.0)


def test_an_unconditioned_first_tier_runs_on_opening() -> None:
    cdc = Rule("cdc", (), ("alertname", "connector"), (Tier(0, "restart", None, ("restart",)),))
    step = open_incident(cdc, ("ConnectorDown", "sink"), 1, Firing(A, None, None, 0.0))
    assert step.decisions == (Opened(0), RunTier(0))


# --- several instances --------------------------------------------------------------------


def test_a_new_instance_says_its_missing_value_once() -> None:
    incident = opened(0.12)
    first = on_firing(incident, INGESTION, fire(None, B))
    again = on_firing(first.incident, INGESTION, fire(None, B))
    assert first.decisions == (NoValue(MISSING),)
    assert again.decisions == ()
    assert again.incident is first.incident


def test_a_second_instance_climbs_the_same_incident() -> None:
    incident = opened(0.12)
    lower = on_firing(incident, INGESTION, fire(0.06, B))
    higher = on_firing(lower.incident, INGESTION, fire(0.23, B))
    assert lower.decisions == ()
    assert lower.incident.instances == {A: 0.12, B: 0.06}
    assert higher.decisions == climb(1, 2, 0.23)
    assert higher.incident.tier == 2


def test_resolve_closes_only_when_the_last_instance_resolves() -> None:
    incident = on_firing(opened(0.12), INGESTION, fire(0.08, B)).incident
    first = on_resolved(incident, INGESTION, A, 300.0, ran={"pause_ingestion"})
    last = on_resolved(first.incident, INGESTION, B, 360.0, ran={"pause_ingestion"})
    assert first.decisions == ()
    assert (first.incident.status, first.incident.instances) == ("open", {B: 0.08})
    assert first.incident.updated_at == 300.0
    assert last.decisions == (Closed(("resume_ingestion",), ()),)
    closed = last.incident
    assert (closed.status, closed.open, closed.resolved_at, closed.instances) == (
        "resolved",
        False,
        360.0,
        {},
    )
    assert closed.tier == 1


@pytest.mark.parametrize("instance", [B, ("fp-a", 999.0)])
def test_resolving_an_unknown_instance_is_a_no_op(instance: InstanceId) -> None:
    incident = opened(0.12)
    step = on_resolved(incident, INGESTION, instance, 300.0, ran=set())
    assert step == Transition(incident, ())
    assert step.incident is incident


def test_resolving_again_after_close_is_a_no_op() -> None:
    closed = on_resolved(opened(0.12), INGESTION, A, 300.0, ran=set()).incident
    assert on_resolved(closed, INGESTION, A, 360.0, ran=set()) == Transition(closed, ())


UNDO = Rule(
    name="undo",
    matchers=(),
    incident_key=("alertname",),
    tiers=INGESTION.tiers,
    value=INGESTION.value,
    on_resolved=(
        ResolvedStep("announce"),
        ResolvedStep("resume_ingestion", ("pause_ingestion",)),
        ResolvedStep("restore_flag", ("rollback_feature_flag", "other_rollback")),
    ),
)


@pytest.mark.parametrize(
    ("ran", "run", "skipped"),
    [
        (set(), ("announce",), ("resume_ingestion", "restore_flag")),
        ({"unrelated"}, ("announce",), ("resume_ingestion", "restore_flag")),
        ({"pause_ingestion"}, ("announce", "resume_ingestion"), ("restore_flag",)),
        ({"other_rollback"}, ("announce", "restore_flag"), ("resume_ingestion",)),
        (
            {"pause_ingestion", "rollback_feature_flag"},
            ("announce", "resume_ingestion", "restore_flag"),
            (),
        ),
    ],
)
def test_on_resolved_runs_only_what_undoes_something_done(
    ran: set[str], run: tuple[str, ...], skipped: tuple[str, ...]
) -> None:
    step = on_resolved(opened(0.23, rule=UNDO), UNDO, A, 300.0, ran=ran)
    assert step.decisions == (Closed(run, skipped),)


def test_a_rule_without_on_resolved_closes_with_nothing_to_run() -> None:
    cdc = Rule("cdc", (), ("alertname",), (Tier(0, "restart", None, ("restart",)),))
    step = on_resolved(opened(None, rule=cdc), cdc, A, 300.0, ran={"restart"})
    assert step.decisions == (Closed((), ()),)


# --- property -----------------------------------------------------------------------------

values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([*THRESHOLDS, 0.0, 0.12, 0.23]),
)


def reached(value: float | None) -> int:
    """The ladder's tier for one value, computed independently of Rule.tier_for."""
    return -1 if value is None else sum(value > t for t in THRESHOLDS) - 1


@given(st.lists(values, min_size=1, max_size=25))
def test_the_tier_is_the_highest_ever_reached(sequence: list[float | None]) -> None:
    step = open_incident(INGESTION, ("IngestionHighErrorRate",), 1, fire(sequence[0]))
    highest = reached(sequence[0])
    assert step.incident.tier == highest
    for value in sequence[1:]:
        before = step.incident.tier
        step = on_firing(step.incident, INGESTION, fire(value))
        highest = max(highest, reached(value))
        assert step.incident.tier == highest
        if highest > before:
            assert value is not None
            assert step.decisions == climb(before, highest, value)
        else:
            assert step.decisions == ()


# --- the ladder by time: escalate_after -----------------------------------------------------

# The CDC runbook by time: restart; still down 30 minutes later, page; an hour after that, stop.
TIMED = Rule(
    name="cdc-connector-down",
    matchers=parse_matchers('{alertname="ConnectorDown"}'),
    incident_key=("alertname", "connector"),
    tiers=(
        Tier(0, "restart", None, ("restart_connector",), escalate_after=1800.0),
        Tier(1, "page", None, ("page_oncall",), escalate_after=3600.0),
        Tier(2, "stop", None, ("stop_connector",)),
    ),
)
CDC_KEY = ("ConnectorDown", "postgres-sink-connector")
# The ingestion ladder with waits: 10 minutes at notify, 30 at pause.
SLOW = replace(
    INGESTION,
    tiers=(
        replace(INGESTION.tiers[0], escalate_after=600.0),
        replace(INGESTION.tiers[1], escalate_after=1800.0),
        INGESTION.tiers[2],
    ),
)


def timed(at: float = 0.0) -> Incident:
    return open_incident(TIMED, CDC_KEY, 3, Firing(A, None, None, at)).incident


def by_time(start: int, to: int) -> tuple[Decision, ...]:
    waited = {0: "30m at tier 'restart'", 1: "1h at tier 'page'"}[start]
    return (Escalated(start, to, f"still firing after {waited}", "time"), RunTier(to))


def test_escalation_is_due_escalate_after_the_tier_was_entered() -> None:
    assert escalation_due(timed(at=100.0), TIMED) == 1900.0


@pytest.mark.parametrize(
    ("now", "climbs"),
    [(0.0, False), (1799.0, False), (1799.999, False), (1800.0, True), (1801.0, True)],
)
def test_escalate_after_climbs_exactly_when_due(now: float, climbs: bool) -> None:
    incident = timed()
    step = on_tick(incident, TIMED, now)
    if not climbs:
        assert step.decisions == ()
        assert step.incident is incident
        return
    assert step.decisions == by_time(0, 1)
    assert (step.incident.tier, step.incident.tier_at, step.incident.updated_at) == (1, now, now)
    assert step.incident.opened_at == 0.0


def test_escalate_after_chains_up_the_ladder_to_the_top() -> None:
    first = on_tick(timed(), TIMED, 1800.0).incident
    assert escalation_due(first, TIMED) == 1800.0 + 3600.0
    assert on_tick(first, TIMED, 5399.0).decisions == ()
    second = on_tick(first, TIMED, 5400.0)
    assert second.decisions == by_time(1, 2)
    top = second.incident
    assert top.tier == 2
    assert escalation_due(top, TIMED) is None  # a top tier has nothing to climb to
    assert on_tick(top, TIMED, 1e9) == Transition(top, ())


def test_a_late_tick_climbs_one_tier_and_the_next_wait_counts_from_the_climb() -> None:
    late = on_tick(timed(), TIMED, 10_000.0)  # both waits have passed: the daemon was down
    assert late.decisions == by_time(0, 1)
    assert (late.incident.tier, late.incident.tier_at) == (1, 10_000.0)
    assert escalation_due(late.incident, TIMED) == 13_600.0
    assert on_tick(late.incident, TIMED, 13_599.0).decisions == ()
    assert on_tick(late.incident, TIMED, 13_600.0).decisions == by_time(1, 2)


def test_a_resolved_incident_does_not_climb() -> None:
    closed = on_resolved(timed(), TIMED, A, 60.0, ran=set()).incident
    assert escalation_due(closed, TIMED) is None
    assert on_tick(closed, TIMED, 1e9) == Transition(closed, ())


def test_below_every_tier_or_without_escalate_after_nothing_is_due() -> None:
    below = open_incident(SLOW, ("IngestionHighErrorRate",), 7, fire(0.03)).incident
    assert below.tier == -1
    assert escalation_due(below, SLOW) is None
    assert on_tick(below, SLOW, 1e9).decisions == ()
    assert escalation_due(opened(0.12), INGESTION) is None


def test_a_climb_by_value_restarts_the_wait() -> None:
    incident = open_incident(SLOW, ("IngestionHighErrorRate",), 7, fire(0.06)).incident
    assert escalation_due(incident, SLOW) == 600.0
    climbed = on_firing(incident, SLOW, fire(0.12, at=300.0)).incident
    assert (climbed.tier, climbed.tier_at) == (1, 300.0)
    assert escalation_due(climbed, SLOW) == 300.0 + 1800.0
    assert on_tick(climbed, SLOW, 600.0).decisions == ()


def test_a_tier_reached_by_time_is_not_reached_again_by_value() -> None:
    incident = open_incident(SLOW, ("IngestionHighErrorRate",), 7, fire(0.06)).incident
    step = on_tick(incident, SLOW, 600.0)
    assert step.decisions == (
        Escalated(0, 1, "still firing after 10m at tier 'notify'", "time"),
        RunTier(1),
    )
    again = on_firing(step.incident, SLOW, fire(0.12, at=700.0))
    assert again.decisions == ()
    assert (again.incident.tier, again.incident.tier_at) == (1, 600.0)


# --- the ladder by repetition -----------------------------------------------------------------

# The CDC runbook's "repeated circuit breaker events": restart, and roll back if it keeps failing.
FLAPPING = Rule(
    name="cdc-flapping",
    matchers=(),
    incident_key=("alertname", "connector"),
    tiers=(
        Tier(0, "restart", None, ("restart_connector",)),
        Tier(1, "rollback", None, ("rollback_connector",), repeats=Repeats(3, 3600.0)),
    ),
)


def firing(n: int, starts: tuple[float, ...]) -> Firing:
    """The n-th firing of the key, at its own startsAt (the last of `starts`)."""
    return Firing((f"fp-{n}", starts[-1]), None, None, starts[-1], starts)


@pytest.mark.parametrize(
    ("starts", "now", "met"),
    [
        ((), 0.0, False),
        ((0.0,), 0.0, False),
        ((0.0, 600.0), 600.0, False),
        ((0.0, 600.0, 1200.0), 1200.0, True),
        ((0.0, 1800.0, 3600.0), 3600.0, True),  # `within` is inclusive
        ((0.0, 1800.0, 3601.0), 3601.0, False),
        ((0.0, 2000.0, 4000.0), 4000.0, False),  # spread wider than the window
        ((0.0, 2000.0, 3000.0, 4000.0), 4000.0, True),
        ((1200.0, 0.0, 600.0), 1200.0, True),  # in any order
    ],
)
def test_repeats_met(starts: tuple[float, ...], now: float, met: bool) -> None:
    assert Repeats(count=3, within=3600.0).met(starts, now) is met


def test_the_third_firing_within_the_hour_climbs() -> None:
    step = open_incident(FLAPPING, CDC_KEY, 5, firing(0, (0.0,)))
    assert step.decisions == (Opened(0), RunTier(0))
    step = on_firing(step.incident, FLAPPING, firing(1, (0.0, 600.0)))
    assert step.decisions == ()
    step = on_firing(step.incident, FLAPPING, firing(2, (0.0, 600.0, 1200.0)))
    assert step.decisions == (
        Escalated(0, 1, "fired 3 times within 1h", "repeats"),
        RunTier(1),
    )
    assert (step.incident.tier, step.incident.tier_at) == (1, 1200.0)


def test_firings_spread_wider_than_the_window_do_not_climb() -> None:
    step = open_incident(FLAPPING, CDC_KEY, 5, firing(0, (0.0,)))
    step = on_firing(step.incident, FLAPPING, firing(1, (0.0, 2000.0)))
    step = on_firing(step.incident, FLAPPING, firing(2, (0.0, 2000.0, 4000.0)))
    assert step.decisions == ()
    assert step.incident.tier == 0


@pytest.mark.parametrize(
    ("starts", "tier"),
    [
        ((0.0,), 0),
        ((0.0, 600.0), 0),
        ((0.0, 600.0, 1200.0), 1),
        ((0.0, 2000.0, 4000.0), 0),
    ],
)
def test_a_flapping_alert_opens_at_the_tier_its_firings_reach(
    starts: tuple[float, ...], tier: int
) -> None:
    """Each firing resolved before the next: every one opens a new incident of the same key."""
    step = open_incident(FLAPPING, CDC_KEY, 5, firing(len(starts), starts))
    assert step.decisions == (Opened(tier), RunTier(tier))


def test_the_reason_counts_every_firing_in_the_window() -> None:
    step = open_incident(FLAPPING, CDC_KEY, 5, firing(0, (0.0,)))
    step = on_firing(step.incident, FLAPPING, firing(1, (-7200.0, 0.0, 600.0, 1200.0, 1800.0)))
    assert step.decisions[0] == Escalated(0, 1, "fired 4 times within 1h", "repeats")


# --- the ladder by failed verification --------------------------------------------------------

NOT_RUNNING = "tasks[*].state is 'FAILED', not in ['RUNNING']"


def test_a_failed_verification_climbs_to_the_next_tier() -> None:
    step = on_verify_failed(timed(), TIMED, "restart", NOT_RUNNING, 300.0)
    reason = f"verification failed at tier 'restart': {NOT_RUNNING}"
    assert step.decisions == (Escalated(0, 1, reason, "verification"), RunTier(1))
    assert (step.incident.tier, step.incident.tier_at, step.incident.updated_at) == (
        1,
        300.0,
        300.0,
    )
    assert escalation_due(step.incident, TIMED) == 300.0 + 3600.0


def test_at_the_top_a_failed_verification_needs_a_human() -> None:
    top = on_tick(on_tick(timed(), TIMED, 1800.0).incident, TIMED, 5400.0).incident
    step = on_verify_failed(top, TIMED, "stop", "connector is RUNNING", 6000.0)
    reason = "verification failed at tier 'stop': connector is RUNNING; no tier left"
    assert step == Transition(top, (NeedsHuman(reason),))
    assert step.incident is top


@pytest.mark.parametrize(
    ("incident", "rule", "tier_name"),
    [
        (on_tick(timed(), TIMED, 1800.0).incident, TIMED, "restart"),  # climbed past it
        (on_resolved(timed(), TIMED, A, 60.0, ran=set()).incident, TIMED, "restart"),
        (open_incident(SLOW, ("x",), 1, fire(0.01)).incident, SLOW, "notify"),  # below every tier
    ],
    ids=["climbed", "resolved", "no-tier"],
)
def test_a_stale_verification_failure_is_ignored(
    incident: Incident, rule: Rule, tier_name: str
) -> None:
    step = on_verify_failed(incident, rule, tier_name, "too late", 9000.0)
    assert step == Transition(incident, ())
    assert step.incident is incident


# --- why an incident climbed ------------------------------------------------------------------

# A tier reached by value or by repetition, whichever comes first.
EITHER = Rule(
    name="either",
    matchers=(),
    incident_key=("alertname",),
    tiers=(
        Tier(0, "notify", Condition(">", 0.05), ()),
        Tier(1, "rollback", Condition(">", 0.2), ("rollback",), repeats=Repeats(3, 3600.0)),
    ),
    value=ValueSource("annotation", "error_rate"),
)


def either(value: float, starts: tuple[float, ...]) -> Transition:
    first = open_incident(EITHER, ("x",), 1, Firing(("fp-0", 0.0), 0.06, None, 0.0, (0.0,)))
    event = Firing((f"fp-{len(starts)}", starts[-1]), value, None, starts[-1], starts)
    return on_firing(first.incident, EITHER, event)


@pytest.mark.parametrize(
    ("transition", "cause", "reason"),
    [
        (on_firing(opened(0.06), INGESTION, fire(0.12, at=60.0)), "value", "value 0.12 > 0.1"),
        (either(0.25, (0.0, 60.0)), "value", "value 0.25 > 0.2"),
        (either(0.07, (0.0, 30.0, 60.0)), "repeats", "fired 3 times within 1h"),
        (either(0.25, (0.0, 30.0, 60.0)), "value", "value 0.25 > 0.2"),
        (on_tick(timed(), TIMED, 1800.0), "time", "still firing after 30m at tier 'restart'"),
        (
            on_verify_failed(timed(), TIMED, "restart", "down", 60.0),
            "verification",
            "verification failed at tier 'restart': down",
        ),
    ],
    ids=["value", "value-over-repeats-tier", "repeats", "value-first", "time", "verification"],
)
def test_an_escalation_says_its_cause(transition: Transition, cause: str, reason: str) -> None:
    escalated, run = transition.decisions
    assert isinstance(escalated, Escalated)
    assert (escalated.cause, escalated.reason) == (cause, reason)
    assert run == RunTier(escalated.to_tier)
    assert transition.incident.tier == escalated.to_tier > escalated.from_tier
