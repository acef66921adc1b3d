"""What a payload would do, computed with the daemon's own rules, touching nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from remediator.actions.base import RenderContext
from remediator.alerts import Notification
from remediator.config import Config
from remediator.errors import RenderError
from remediator.incidents import Firing, open_incident
from remediator.rules import RuleIndex
from remediator.store.records import RESOLVED_STEP


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


def simulate(config: Config, notification: Notification) -> list[Outcome]:
    """As if the store were empty: every firing alert opens an incident, every resolved one
    would run its rule's on_resolved actions if the incident's actions had run."""
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
                    [_preview(config, n, ctx) for n in names],
                )
            )
    return outcomes


def _preview(config: Config, name: str, ctx: RenderContext) -> dict[str, str]:
    action = config.actions[name]
    try:
        request = action.describe(action.prepare(ctx))
    except RenderError as e:
        request = f"cannot build the request: {e}"
    return {"action": name, "kind": action.kind, "target": action.target, "request": request}
