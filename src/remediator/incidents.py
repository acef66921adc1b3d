"""The incident state machine: decisions only, no I/O.

One incident per (rule, incident key). It opens when a matching alert fires, climbs the rule's
ladder of tiers as the value crosses higher thresholds, never climbs down while firing (a pause is
not undone because the error rate fell from 12 % to 8 %), and resolves when every alert instance
it holds has resolved. The engine feeds it events and turns the decisions it returns into
records and claims.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace

from remediator.rules import Rule
from remediator.schema import format_duration

InstanceId = tuple[str, float]  # (fingerprint, startsAt)


@dataclass(frozen=True, slots=True)
class Incident:
    id: int
    rule: str
    key: tuple[str, ...]
    status: str  # "open" | "resolved"
    tier: int  # -1 until a tier is reached
    value: float | None
    opened_at: float
    tier_at: float
    updated_at: float
    resolved_at: float | None = None
    acked: bool = False  # a human owns it: time no longer escalates it
    # the highest severity of its alerts so far (severity.py); None: not read from the store yet
    severity: str | None = None
    # firing alert instances and their latest values; treat as immutable
    instances: Mapping[InstanceId, float | None] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return self.status == "open"


@dataclass(frozen=True, slots=True)
class Firing:
    instance: InstanceId
    value: float | None  # None when the rule reads no value or the value is unusable
    value_problem: str | None  # why a rule that reads a value got none
    at: float
    # startsAt of every instance of this (rule, key) within the rule's repeats window, this one
    # included; empty for rules without `repeats`
    starts: tuple[float, ...] = ()


# -- decisions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opened:
    tier: int


@dataclass(frozen=True, slots=True)
class Escalated:
    from_tier: int
    to_tier: int
    reason: str
    cause: str = "value"  # value | repeats | time | verification


@dataclass(frozen=True, slots=True)
class RunTier:
    """Run every action of this tier (each at most once per incident: claims enforce it)."""

    tier: int


@dataclass(frozen=True, slots=True)
class NoValue:
    reason: str


@dataclass(frozen=True, slots=True)
class NeedsHuman:
    """The ladder has no rung left for what just happened: tell a person."""

    reason: str


@dataclass(frozen=True, slots=True)
class Closed:
    """The last firing instance resolved; run these on_resolved actions."""

    actions: tuple[str, ...]
    skipped: tuple[str, ...]  # on_resolved actions whose if_ran actions never ran


Decision = Opened | Escalated | RunTier | NoValue | NeedsHuman | Closed


@dataclass(frozen=True, slots=True)
class Transition:
    incident: Incident
    decisions: tuple[Decision, ...]


# -- transitions -------------------------------------------------------------------------------


def open_incident(rule: Rule, key: tuple[str, ...], incident_id: int, event: Firing) -> Transition:
    """A first firing instance for (rule, key): open, at the tier its value reaches."""
    tier = rule.tier_for(event.value, event.starts, event.at)
    incident = Incident(
        id=incident_id,
        rule=rule.name,
        key=key,
        status="open",
        tier=tier,
        value=event.value,
        opened_at=event.at,
        tier_at=event.at,
        updated_at=event.at,
        instances={event.instance: event.value},
    )
    decisions: list[Decision] = [Opened(tier)]
    if event.value_problem is not None:
        decisions.append(NoValue(event.value_problem))
    if tier >= 0:
        decisions.append(RunTier(tier))
    return Transition(incident, tuple(decisions))


def on_firing(incident: Incident, rule: Rule, event: Firing) -> Transition:
    """A firing instance of an open incident: new, or known with a value that may have changed.

    Known instances with an unchanged value decide nothing: that is how repeated and duplicated
    notifications stay silent."""
    known = event.instance in incident.instances
    if known and _same(incident.instances[event.instance], event.value):
        return Transition(incident, ())
    instances = {**incident.instances, event.instance: event.value}
    updated = replace(incident, instances=instances, updated_at=event.at)
    if event.value is not None:
        updated = replace(updated, value=event.value)
    decisions: list[Decision] = []
    if not known and event.value_problem is not None:
        decisions.append(NoValue(event.value_problem))
    target = rule.tier_for(event.value, event.starts, event.at)
    if target > incident.tier:
        reason, cause = _climb_reason(rule, target, event)
        updated = replace(updated, tier=target, tier_at=event.at)
        decisions += [Escalated(incident.tier, target, reason, cause), RunTier(target)]
    return Transition(updated, tuple(decisions))


def on_resolved(
    incident: Incident, rule: Rule, instance: InstanceId, at: float, ran: Collection[str]
) -> Transition:
    """An instance resolved. The incident closes when it was the last firing one; `ran` holds the
    names of actions that ran for it, so on_resolved steps undo only what was done."""
    if instance not in incident.instances:
        return Transition(incident, ())
    instances = {k: v for k, v in incident.instances.items() if k != instance}
    if instances:
        return Transition(replace(incident, instances=instances, updated_at=at), ())
    closed = replace(incident, instances={}, status="resolved", resolved_at=at, updated_at=at)
    run, skipped = [], []
    for step in rule.on_resolved:
        if not step.if_ran or any(name in ran for name in step.if_ran):
            run.append(step.action)
        else:
            skipped.append(step.action)
    return Transition(closed, (Closed(tuple(run), tuple(skipped)),))


def on_tick(incident: Incident, rule: Rule, now: float) -> Transition:
    """Time passes: a tier with `escalate_after` hands a still-firing incident to the next."""
    due = escalation_due(incident, rule)
    if due is None or now < due:
        return Transition(incident, ())
    tier = rule.tiers[incident.tier]
    assert tier.escalate_after is not None
    reason = f"still firing after {format_duration(tier.escalate_after)} at tier {tier.name!r}"
    return _climb(incident, incident.tier + 1, reason, "time", now)


def escalation_due(incident: Incident, rule: Rule) -> float | None:
    """When `escalate_after` moves this incident up, or None."""
    if (
        not incident.open
        or incident.acked
        or incident.tier < 0
        or incident.tier + 1 >= len(rule.tiers)
    ):
        return None
    after = rule.tiers[incident.tier].escalate_after
    return None if after is None else incident.tier_at + after


def on_verify_failed(
    incident: Incident, rule: Rule, tier_name: str, detail: str, now: float
) -> Transition:
    """An action of `tier_name` did not achieve its effect: the next tier, or a human."""
    if not incident.open or incident.tier < 0 or rule.tiers[incident.tier].name != tier_name:
        return Transition(incident, ())  # resolved meanwhile, or already higher
    reason = f"verification failed at tier {tier_name!r}: {detail}"
    if incident.tier + 1 >= len(rule.tiers):
        return Transition(incident, (NeedsHuman(f"{reason}; no tier left"),))
    return _climb(incident, incident.tier + 1, reason, "verification", now)


def _climb(incident: Incident, tier: int, reason: str, cause: str, now: float) -> Transition:
    climbed = replace(incident, tier=tier, tier_at=now, updated_at=now)
    return Transition(climbed, (Escalated(incident.tier, tier, reason, cause), RunTier(tier)))


def _same(a: float | None, b: float | None) -> bool:
    return a == b or (a is not None and b is not None and a != a and b != b)  # NaN == NaN here


def _climb_reason(rule: Rule, tier: int, event: Firing) -> tuple[str, str]:
    condition, repeats = rule.tiers[tier].condition, rule.tiers[tier].repeats
    if condition is not None and event.value is not None and condition.holds(event.value):
        return f"value {event.value:g} {condition}", "value"
    if repeats is not None:
        fired = repeats.fired(event.starts, event.at)
        return f"fired {fired} times within {format_duration(repeats.within)}", "repeats"
    return "reached", "value"
