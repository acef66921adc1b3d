"""What the guardrails are asked about a claim, from config alone: its policy, its lane, the
facts it is judged on, and the judge the store calls with them in the transaction that starts
it. Pure: the executor's own start calls it on the event loop, an engine batch's apply
(offers.py) on the store's writer thread."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from remediator import guardrails
from remediator.actions.base import RenderContext
from remediator.config import Config
from remediator.guardrails import Ask, Facts, Mute, Policy, Verdict
from remediator.lanes import lane_of
from remediator.matchers import parse_matchers
from remediator.store.records import (
    OUTLIVE_RESOLUTION,
    RESOLVED_STEP,
    Claim,
    MuteRow,
    NewClaim,
    TargetHistory,
)
from remediator.store.starts import Judge, StartIf


class RuntimeState:
    """Operator switches that live in the store and are cached here: the kill switch."""

    def __init__(self, killswitch: bool = False) -> None:
        self.killswitch = killswitch


def policy(config: Config, claim: Claim) -> Policy:
    """What config says about this claim. An undo (on_resolved) is not held to cooldowns or
    budgets: they cap remediation, and must never leave a service paused."""
    rule = config.rule(claim.rule)
    tier = None if rule is None else next((t for t in rule.tiers if t.name == claim.step), None)
    own = config.policy(claim.action)
    g = config.guardrails
    undo = claim.step == RESOLVED_STEP
    return Policy(
        dry_run=g.dry_run or (rule is not None and rule.dry_run),
        cooldown=None if rule is None or undo else rule.cooldown,
        during_maintenance="drop" if rule and rule.during_maintenance == "drop" else "hold",
        on_killswitch="hold" if g.on_killswitch == "hold" else "drop",
        on_mute="hold" if g.on_mute == "hold" else "drop",
        global_budget=None if undo else g.budget,
        action_budget=None if undo else own.budget,
        breaker=config.breaker(claim.target),
        approval_required=own.destructive or (tier is not None and tier.approval),
    )


def lane(config: Config, claim: Claim | NewClaim) -> str | None:
    """What of its target the claim holds (lanes.py; None: all of it)."""
    rule = config.rule(claim.rule)
    by = () if rule is None else rule.one_at_a_time_by
    return lane_of(by, claim.context.get("labels", {}))


def turn_key(config: Config, claim: Claim | NewClaim) -> str:
    """The queue the claim takes its turn in (turns.py): its target, or its lane of it."""
    held = lane(config, claim)
    return claim.target if held is None else f"{claim.target}\x1f{held}"


def start_if(
    config: Config, state: RuntimeState, claim: Claim, request: Mapping[str, Any], now: float
) -> StartIf:
    """What the store needs to judge the claim at `now` and start it if allowed: the starts its
    budgets count since, the facts its policy reads, whether its request leaves at once (no
    precondition: sent_at is its start's), its lane, and the judge."""
    own = policy(config, claim)
    budgets = [b.per for b in (own.global_budget, own.action_budget) if b]
    since = now - max(budgets, default=0.0)
    sent = config.policy(claim.action).precondition is None
    judged = judge(config, state, claim, own, now)
    return StartIf(
        claim, request, now, since, judged, lane(config, claim), sent, guardrails.needed(own)
    )


def judge(config: Config, state: RuntimeState, claim: Claim, own: Policy, now: float) -> Judge:
    """What the guardrails say about starting this claim now, given the store's facts (the
    store calls it inside the transaction that starts the claim); None if it is a firing
    action and its incident is no longer open. The kill switch is read when it judges."""
    ask = Ask(claim.rule, claim.action, claim.target, claim.context.get("labels", {}), now)

    def judged(history: TargetHistory, mutes: list[MuteRow]) -> Verdict | None:
        if not may_run_resolved(claim) and history.incident_status != "open":
            return None
        approval = history.approval
        facts = Facts(
            killswitch=state.killswitch,
            mutes=[_mute(row) for row in mutes],
            windows=config.windows,
            last_other_start=history.last_other_start,
            started_global=history.started_global,
            started_action=history.started_action,
            target_busy=history.target_busy,
            failures=history.failures,
            approval=None if approval is None else approval.status,
            approval_detail=_approval_detail(approval),
        )
        return guardrails.decide(own, ask, facts)

    return judged


def may_run_resolved(claim: Claim) -> bool:
    """on_resolved actions, and what a person asked for by hand, run whatever the incident's
    state; a firing action never runs for a resolved alert."""
    return claim.step in OUTLIVE_RESOLUTION


def render_context(claim: Claim, results: Mapping[str, str] | None = None) -> RenderContext:
    c = claim.context
    return RenderContext(
        results=results or {},
        labels=c.get("labels", {}),
        annotations=c.get("annotations", {}),
        incident_id=claim.incident_id,
        rule=claim.rule,
        tier=claim.step,
        value=c.get("value"),
        fingerprint=c.get("fingerprint", ""),
    )


def _mute(row: Any) -> Mute:
    return Mute(
        id=row.id,
        reason=row.reason,
        until=row.until,
        created_by=row.created_by,
        rule=row.rule,
        target=row.target,
        matchers=parse_matchers(row.matchers) if row.matchers else (),
    )


def _approval_detail(approval: Any) -> str:
    if approval is None:
        return ""
    if approval.status == "denied":
        because = f": {approval.reason}" if approval.reason else ""
        return f"denied by {approval.decided_by}{because}"
    if approval.status == "expired":
        return f"approval {approval.id} expired unanswered; an expired approval never runs"
    return f"approval {approval.id} is {approval.status}"
