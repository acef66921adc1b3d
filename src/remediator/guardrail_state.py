"""The guardrails that read the store, as GET /api/v1/guardrails shows them: the cooldowns still
running, what each budget has left, the targets busy with an action (one at a time), and the
action starts they count. `simulate --url` judges an alert's actions with these same facts
(remediator.simulate, through remediator.cli_remote). Pure: the store read is the caller's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from remediator.clock import iso
from remediator.config import Config
from remediator.guardrails import Budget
from remediator.schema import format_duration
from remediator.store.records import GuardrailState, Start


def horizon(config: Config) -> float:
    """The longest window a cooldown or a budget reads back, in seconds (0: none configured)."""
    budgets = [config.guardrails.budget, *(p.budget for p in config.action_policies.values())]
    spans = [b.per for b in budgets if b is not None]
    spans += [rule.cooldown for rule in config.rules if rule.cooldown]
    return max(spans, default=0.0)


def view(config: Config, state: GuardrailState, now: float) -> dict[str, Any]:
    return {
        "now": iso(now),
        "since": iso(now - horizon(config)),
        "cooldowns": cooldowns(config, state.starts, now),
        "budgets": budgets(config, state.starts, now),
        "busy_targets": list(state.busy),
        "starts": [start_view(s) for s in state.starts],
    }


def start_view(s: Start) -> dict[str, Any]:
    return {
        "rule": s.rule,
        "action": s.action,
        "target": s.target,
        "key": list(s.key),
        "incident_key": dict(s.key_labels),
        "started_at": iso(s.at),
    }


def cooldowns(config: Config, starts: Sequence[Start], now: float) -> list[dict[str, Any]]:
    """Per rule, incident key and target: the cooldowns not yet over."""
    latest: dict[tuple[str, tuple[str, ...], str], Start] = {}
    for s in starts:  # oldest first: the last one wins
        latest[(s.rule, s.key, s.target)] = s
    running = []
    for s in latest.values():
        rule = config.rule(s.rule)
        cooldown = rule.cooldown if rule is not None else None
        if cooldown and now - s.at < cooldown:
            running.append(
                {
                    "rule": s.rule,
                    "target": s.target,
                    "incident_key": dict(s.key_labels),
                    "last_start": iso(s.at),
                    "until": iso(s.at + cooldown),
                }
            )
    return running


def budgets(config: Config, starts: Sequence[Start], now: float) -> list[dict[str, Any]]:
    """The global budget and each action's: starts counted in its window, and what is left."""
    found = []
    if config.guardrails.budget is not None:
        found.append(_budget("all actions", config.guardrails.budget, starts, now))
    for name in sorted(config.action_policies):
        budget = config.policy(name).budget
        if budget is not None:
            mine = [s for s in starts if s.action == name]
            found.append(_budget(name, budget, mine, now))
    return found


def _budget(scope: str, budget: Budget, starts: Sequence[Start], now: float) -> dict[str, Any]:
    used = sum(1 for s in starts if now - s.at < budget.per)
    return {
        "scope": scope,
        "max": budget.max,
        "per": format_duration(budget.per),
        "used": used,
        "left": max(0, budget.max - used),
    }
