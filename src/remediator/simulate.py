"""What a payload would do, computed with the daemon's own rules, touching nothing.

The guardrails are judged with what is known: the config (dry-run, maintenance windows, the kill
switch's default) and, given the running daemon's answers (`Known`), its kill switch, mutes, open
circuits, and the action starts and busy targets that cooldowns, budgets and one-at-a-time read
(GET /api/v1/guardrails). What could not be judged is listed (`not_evaluated`), never silently
passed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from remediator import guardrails
from remediator.actions.base import RenderContext
from remediator.alerts import Notification
from remediator.config import Config
from remediator.errors import RenderError
from remediator.incidents import Firing, open_incident
from remediator.rules import Rule, RuleIndex
from remediator.store.records import RESOLVED_STEP, GuardrailState


@dataclass(frozen=True, slots=True)
class Outcome:
    """For one (alert, rule): the incident it would open and the actions it would run."""

    alert: str
    status: str
    rule: str | None
    incident_key: dict[str, str] = field(default_factory=dict)
    value: float | None = None
    note: str = ""
    tier: str | None = None
    actions: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class Known:
    """What the running daemon said (None: not asked)."""

    killswitch: bool | None = None
    mutes: Sequence[guardrails.Mute] | None = None
    open_circuits: frozenset[str] | None = None
    store: GuardrailState | None = None  # starts and busy targets, as the daemon's store has them
    now: float = field(default_factory=time.time)


STORE_GUARDRAILS = ("cooldowns", "budgets", "one action at a time per target")


def not_evaluated(known: Known) -> list[str]:
    """The guardrails a simulation could not judge."""
    missing = [
        name
        for name, value in (
            ("the kill switch at runtime (the config's default was used)", known.killswitch),
            ("mutes", known.mutes),
            ("circuit breakers", known.open_circuits),
        )
        if value is None
    ]
    return [*missing, *(STORE_GUARDRAILS if known.store is None else ())]


def simulate(
    config: Config, notification: Notification, known: Known | None = None
) -> list[Outcome]:
    """As if the store were empty: every firing alert opens an incident, every resolved one
    would run its rule's on_resolved actions if the incident's actions had run."""
    known = known or Known()
    index = RuleIndex(config.rules)
    outcomes = []
    for alert in notification.alerts:
        name = alert.labels.get("alertname", alert.fingerprint)
        rules = index.match(alert.labels)
        if not rules:
            outcomes.append(Outcome(name, alert.status, None, note="no rule matches"))
        for rule in rules:
            key = dict(zip(rule.incident_key, rule.key_of(alert.labels), strict=True))
            read = rule.value.read(alert) if rule.value else None
            value = read if isinstance(read, float) else None
            note = read if isinstance(read, str) else ""
            if alert.firing:
                t = open_incident(
                    rule,
                    rule.key_of(alert.labels),
                    0,
                    Firing(alert.instance, value, note or None, 0.0),
                )
                tier = rule.tiers[t.incident.tier] if t.incident.tier >= 0 else None
                step, names = (tier.name, tier.actions) if tier else (None, ())
            else:
                step, names = RESOLVED_STEP, tuple(s.action for s in rule.on_resolved)
            ctx = RenderContext(
                alert.labels, alert.annotations, 0, rule.name, step or "", value, alert.fingerprint
            )
            outcomes.append(
                Outcome(
                    name,
                    alert.status,
                    rule.name,
                    key,
                    value,
                    note,
                    step,
                    [
                        {**_preview(config, n, ctx), **_judge(config, rule, step, n, ctx, known)}
                        for n in names
                    ],
                )
            )
    return outcomes


def _judge(
    config: Config, rule: Rule, step: str | None, name: str, ctx: RenderContext, known: Known
) -> dict[str, str]:
    """What the guardrails that can be judged say, and what a person must know: approval,
    precondition. Keys only when they have something to say."""
    action, policy = config.actions[name], config.policy(name)
    tier = next((t for t in rule.tiers if t.name == step), None)
    approval = policy.destructive or (tier is not None and tier.approval)
    g = config.guardrails
    undo = step == RESOLVED_STEP  # as the executor judges it: exempt from cooldowns and budgets
    verdict = guardrails.decide(
        guardrails.Policy(
            dry_run=g.dry_run or rule.dry_run,
            cooldown=None if undo else rule.cooldown,
            during_maintenance="drop" if rule.during_maintenance == "drop" else "hold",
            on_killswitch="hold" if g.on_killswitch == "hold" else "drop",
            on_mute="hold" if g.on_mute == "hold" else "drop",
            global_budget=None if undo else g.budget,
            action_budget=None if undo else policy.budget,
            approval_required=approval,
        ),
        guardrails.Ask(rule.name, name, action.target, ctx.labels, known.now),
        _facts(config, rule, name, ctx, known),
    )
    said: dict[str, str] = {}
    if approval:
        said["approval"] = "required"
    if policy.precondition is not None:
        said["precondition"] = policy.precondition.describe()
    if known.open_circuits is not None and action.target in known.open_circuits:
        said["guardrail"] = f"circuit_breaker: the circuit of {action.target!r} is open"
    elif verdict.outcome not in ("allow", "ask_approval"):
        said["guardrail"] = f"{verdict.outcome} by {verdict.guardrail}: {verdict.reason}"
    return said


def _facts(
    config: Config, rule: Rule, name: str, ctx: RenderContext, known: Known
) -> guardrails.Facts:
    """What the daemon's store says about this action, as the executor reads it for a new
    incident: the last start by the same rule and key on the target (cooldown), the starts in
    the budgets' windows, and whether the target is busy."""
    g, target = config.guardrails, config.actions[name].target
    facts = guardrails.Facts(
        killswitch=g.killswitch if known.killswitch is None else known.killswitch,
        mutes=known.mutes or (),
        windows=config.windows,
    )
    if known.store is None:
        return facts
    key = rule.key_of(ctx.labels)
    starts = known.store.starts
    same = [s.at for s in starts if (s.rule, s.target, s.key) == (rule.name, target, key)]
    return replace(
        facts,
        last_other_start=max(same, default=None),
        started_global=[s.at for s in starts],
        started_action=[s.at for s in starts if s.action == name],
        target_busy=target in known.store.busy,
    )


def _preview(config: Config, name: str, ctx: RenderContext) -> dict[str, str]:
    action = config.actions[name]
    try:
        request = action.describe(action.prepare(ctx))
    except RenderError as e:
        request = f"cannot build the request: {e}"
    return {"action": name, "kind": action.kind, "target": action.target, "request": request}
