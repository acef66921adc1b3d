"""The incident state machine: pure decisions from (incident, rule, event)."""

from __future__ import annotations

import math

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
    NoValue,
    Opened,
    RunTier,
    Transition,
    on_firing,
    on_resolved,
    open_incident,
)
from remediator.matchers import parse_matchers
from remediator.rules import Condition, ResolvedStep, Rule, Tier, ValueSource

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
