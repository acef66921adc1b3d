"""Which Slack messages tell an audit line, composed as Block Kit. Pure: no I/O.

One parent message per incident (posted when it opens, updated in place as its state changes:
red firing, amber acting or awaiting approval, green resolved), and every later step as a reply in
its thread. Operator changes and storm summaries go to the default channel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from remediator.alerts import parse_time
from remediator.clock import iso
from remediator.config import Config, SlackConfig
from remediator.paging.policy import mention_text, pages
from remediator.rules import Rule
from remediator.schema import format_duration
from remediator.slack.templates import Templates, Trusted, link, slack_escape
from remediator.store.records import Approval, AuditEntry, OutboxItem

RED, AMBER, GREEN = "#d32f2f", "#f9a825", "#2e7d32"
TEXT_LIMIT = 2900  # a section's text may be 3000 characters
ACTION_OUTCOMES = ("refused", "dry_run", "held", "skipped", "precondition_failed")
# what ended an approval, and the word its request's update uses (cancelled: the incident resolved)
APPROVAL_DECIDED = {
    "approval_approved": "approved",
    "approval_denied": "denied",
    "approval_expired": "expired",
    "approval_cancelled": "cancelled",
}


@dataclass(frozen=True, slots=True)
class Facts:
    """What the composer may read besides the audit line itself."""

    entry: AuditEntry
    incident: Mapping[str, Any] | None = None  # the incident's row, as the API shows it
    approval: Approval | None = None
    actions_taken: Sequence[str] = ()
    rule: Rule | None = None


class Composer:
    def __init__(self, config: Config, templates: Templates) -> None:
        self.config = config
        self.slack: SlackConfig = config.slack
        self.templates = templates

    def messages(self, facts: Facts) -> list[OutboxItem]:
        """The messages telling `facts.entry`; none for lines people need not read."""
        entry = facts.entry
        if entry.detail.get("storm"):
            return []  # a storm: the summary tells it
        if entry.incident_id is None or facts.incident is None:
            return self._channel_post(facts)
        if entry.kind == "decision":
            return self._decision(facts)
        if entry.kind in ("action", "control"):
            return self._action(facts)
        if entry.kind == "page":
            mention = Trusted(mention_text(tuple(entry.detail.get("mention") or ())))
            return [self._reply(facts, "paged", mention=mention or None)]
        return []

    # -- incident threads ----------------------------------------------------------------------

    def _decision(self, facts: Facts) -> list[OutboxItem]:
        event = facts.entry.event
        if event == "opened":
            return [self._parent(facts, "post")]
        if event == "resolved":
            resolution = self._resolution(facts)
            return [
                self._reply(facts, "resolution", resolution=resolution),
                self._parent(facts, "update"),
            ]
        if event == "closed":
            return [
                self._reply(facts, "status_update", next_steps="closed; nothing more runs for it"),
                self._parent(facts, "update"),
            ]
        if event == "needs_human":
            return [
                self._reply(facts, "needs_human", mention=self._forced(facts)),
                self._parent(facts, "update"),
            ]
        next_steps = "keep watching; remediator climbs the ladder if it gets worse"
        if event == "escalated":
            return [
                self._reply(facts, "status_update", next_steps=next_steps),
                self._parent(facts, "update"),
            ]
        return [self._reply(facts, "status_update", next_steps=next_steps)]

    def _action(self, facts: Facts) -> list[OutboxItem]:
        event = facts.entry.event
        if event == "claimed":
            return [self._parent(facts, "update", acting=facts.entry.action)]
        if event == "succeeded":
            return [self._reply(facts, self._success_template(facts.entry.action))]
        if event == "failed":
            return [self._reply(facts, "action_failed", mention=self._forced(facts))]
        if event == "interrupted":
            return [self._reply(facts, "action_interrupted", mention=self._forced(facts))]
        if event == "circuit_opened":
            return [self._reply(facts, "circuit_opened", mention=self._forced(facts))]
        if event in ACTION_OUTCOMES:
            return [self._reply(facts, "action_refused")]
        if event == "rerun":  # interrupted by the daemon's death, run again (interrupted.py)
            return [
                self._reply(
                    facts, "status_update", next_steps=f"running {facts.entry.action} again"
                )
            ]
        if event == "released":
            return [self._reply(facts, "status_update", next_steps="judging it again")]
        if event in ("verified", "verification_failed"):
            return [self._reply(facts, "verification")]
        if event == "approval_requested" and facts.approval is not None:
            return [self._approval_request(facts), self._parent(facts, "update", waiting=True)]
        if event in APPROVAL_DECIDED:
            return self._approval_decided(facts)
        if event == "acknowledged":
            return [
                self._reply(
                    facts,
                    "status_update",
                    next_steps=f"{facts.entry.actor} owns "
                    "it; remediator keeps its guardrails and stops paging on time",
                ),
                self._parent(facts, "update"),
            ]
        return []

    def _success_template(self, action: str) -> str:
        announce = self.config.policy(action).announce
        if announce:
            return announce
        lowered = action.lower()
        for word, name in (
            ("rollback", "rolled_back"),
            ("roll_back", "rolled_back"),
            ("resume", "resumed"),
            ("pause", "paused"),
        ):
            if word in lowered:
                return name
        return "action_taken"

    def _parent(
        self, facts: Facts, method: str, acting: str = "", waiting: bool = False
    ) -> OutboxItem:
        ctx = self._context(facts, acting=acting, waiting=waiting)
        incident = ctx["incident"]
        if incident["status"] == "resolved":
            ctx["mention"] = None  # resolved: nobody needs to be called to it any more
        text = self._render(facts, "incident", ctx)
        color = GREEN if incident["status"] == "resolved" else AMBER if acting or waiting else RED
        # the header and the notification text carry alert data too: escaped like the rest
        header = slack_escape(
            f"{'✅ RESOLVED' if incident['status'] == 'resolved' else '🚨 INCIDENT'}: "
            f"{incident['severity'] or 'P?'} - {incident['plain_title']}"
        )[:150]
        fields = [
            ("Rule", facts.entry.rule),
            ("Tier", incident["tier_name"] or "none"),
            ("Value", incident["value_text"] or "n/a"),
            ("Status", incident["state"]),
        ]
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": header}},
            {"type": "section", "text": _mrkdwn(text)},
            {
                "type": "section",
                "fields": [_mrkdwn(f"*{k}:*\n{slack_escape(str(v))}") for k, v in fields],
            },
            {"type": "context", "elements": [_mrkdwn(self._context_line(facts, incident))]},
        ]
        payload = {"text": _fallback(header), "attachments": [{"color": color, "blocks": blocks}]}
        ref = self._thread(facts)
        return OutboxItem(
            self._thread(facts),
            self._channel(facts),
            method,
            payload,
            ref=ref,
            audit_id=facts.entry.id,
        )

    def _reply(self, facts: Facts, template: str, **extra: Any) -> OutboxItem:
        ctx = self._context(facts) | extra
        text = self._render(facts, template, ctx)
        payload = _section(text)
        return OutboxItem(
            self._thread(facts),
            self._channel(facts),
            "reply",
            payload,
            parent=self._thread(facts),
            audit_id=facts.entry.id,
        )

    def _approval_request(self, facts: Facts) -> OutboxItem:
        approval = facts.approval
        assert approval is not None
        ctx = self._context(facts, mention=self._mention(facts, force=True))
        text = self._render(facts, "approval_request", ctx)
        destructive = self.config.policy(approval.action).destructive
        approve: dict[str, Any] = {
            "type": "button",
            "action_id": "approve",
            "style": "primary",
            "value": str(approval.id),
            "text": {"type": "plain_text", "text": "Approve"},
        }
        if destructive:
            approve["confirm"] = {
                "title": {"type": "plain_text", "text": "Run a destructive action?"},
                "text": _mrkdwn(
                    f"This runs *{slack_escape(approval.action)}* on "
                    f"`{slack_escape(approval.target)}` now."
                ),
                "confirm": {"type": "plain_text", "text": "Run it"},
                "deny": {"type": "plain_text", "text": "Cancel"},
                "style": "danger",
            }
        deny = {
            "type": "button",
            "action_id": "deny",
            "style": "danger",
            "value": str(approval.id),
            "text": {"type": "plain_text", "text": "Deny"},
        }
        blocks = [
            {"type": "section", "text": _mrkdwn(text)},
            {"type": "actions", "block_id": f"approval:{approval.id}", "elements": [approve, deny]},
        ]
        return OutboxItem(
            self._thread(facts),
            self._channel(facts),
            "reply",
            {"text": _fallback(text), "blocks": blocks},
            ref=f"approval:{approval.id}",
            parent=self._thread(facts),
            audit_id=facts.entry.id,
        )

    def _approval_decided(self, facts: Facts) -> list[OutboxItem]:
        if facts.approval is None:
            return []
        ctx = self._context(facts, approval_decision=APPROVAL_DECIDED[facts.entry.event])
        text = self._render(facts, "approval_decided", ctx)
        payload = _section(text)
        return [
            OutboxItem(
                self._thread(facts),
                self._channel(facts),
                "update",
                payload,
                ref=f"approval:{facts.approval.id}",
                audit_id=facts.entry.id,
            )
        ]

    # -- the default channel -------------------------------------------------------------------

    def _channel_post(self, facts: Facts) -> list[OutboxItem]:
        entry = facts.entry
        if entry.kind == "summary":
            template = "storm_summary"
        elif entry.kind == "control":
            template = "control"
        else:
            return []
        text = self._render(facts, template, self._context(facts))
        channel = self.slack.channel
        return [
            OutboxItem(
                f"channel:{channel}",
                channel,
                "post",
                _section(text),
                audit_id=entry.id,
            )
        ]

    # -- context -------------------------------------------------------------------------------

    def _context(
        self,
        facts: Facts,
        acting: str = "",
        waiting: bool = False,
        mention: Trusted | None = None,
        approval_decision: str = "",
    ) -> dict[str, Any]:
        entry = facts.entry
        ctx: dict[str, Any] = {
            "event": {
                "message": entry.message,
                "event": entry.event,
                "actor": entry.actor,
                "time": iso(entry.at),
                "outcome": entry.event.replace("_", " "),
                "detail": dict(entry.detail),
            },
            "mention": mention if mention is not None else self._mention(facts),
        }
        if facts.incident is not None:
            ctx["incident"] = self._incident(facts, acting, waiting)
        if entry.action:
            ctx["action"] = self._action_view(facts)
        if facts.approval is not None:
            a = facts.approval
            ctx["approval"] = {
                "id": a.id,
                "expires": iso(a.expires_at),
                "verb": approval_decision or a.status,
                "by": a.decided_by or "remediator",
                "at": iso(a.decided_at),
                "reason": a.reason,
            }
        return ctx

    def _incident(self, facts: Facts, acting: str, waiting: bool) -> dict[str, Any]:
        view = facts.incident or {}
        labels, annotations = view.get("labels", {}), view.get("annotations", {})
        rule = facts.rule
        tier_name = (rule.tier_name(view.get("tier", -1)) if rule else None) or ""
        status = view.get("status", "open")
        state = (
            "resolved"
            if status == "resolved"
            else f"awaiting approval ({facts.entry.action})"
            if waiting
            else f"acting: {acting}"
            if acting
            else f"firing, tier {tier_name}"
            if tier_name
            else "firing"
        )
        title = annotations.get("summary") or labels.get("alertname") or view.get("rule", "")
        value = view.get("value")
        opened = _parse_iso(view.get("opened_at"))
        ended = _parse_iso(view.get("resolved_at")) or facts.entry.at
        return {
            "id": view.get("id"),
            "rule": view.get("rule"),
            "status": status,
            "state": state,
            "severity": labels.get(self.slack.severity_label, ""),
            "title": title,
            "plain_title": title,
            "summary": annotations.get("summary", ""),
            "description": annotations.get("description", ""),
            "labels": labels,
            "annotations": annotations,
            "key": view.get("key", {}),
            "tier_name": tier_name,
            "value": value,
            "value_text": _value_text(value),
            "duration": format_duration(max(0, round(ended - opened))) if opened else "",
            "owner": view.get("acked_by") or "",
            "root_cause": annotations.get("root_cause", ""),
            "system": labels.get("service") or labels.get("connector") or view.get("rule", ""),
            "reason": annotations.get("summary") or facts.entry.message,
            "actions": list(facts.actions_taken),
        }

    def _action_view(self, facts: Facts) -> dict[str, Any]:
        entry = facts.entry
        action = self.config.actions.get(entry.action)
        detail = (
            entry.message.split(": ", 2)[-1]
            if entry.message.startswith(entry.action)
            else entry.message
        )
        request = ""
        if facts.approval is not None:
            r = facts.approval.request
            request = action.describe(dict(r)) if action is not None else str(r)
        return {
            "name": entry.action,
            "kind": action.kind if action else "",
            "target": action.target if action else "",
            "description": getattr(action, "description", "") if action else "",
            "detail": detail,
            "request": request,
        }

    def _mention(self, facts: Facts, force: bool = False) -> Trusted | None:
        if not self.slack.page_group or facts.incident is None:
            return None
        severity = facts.incident.get("labels", {}).get(self.slack.severity_label, "")
        if severity in self.slack.page_severities or (force and severity):
            return Trusted(f"<!subteam^{slack_escape(self.slack.page_group)}>")
        return None

    def _forced(self, facts: Facts) -> Trusted | None:
        """The paging group, whatever the severity: unless the rule's escalation policy pages
        for this line, when the PAGED reply that follows mentions whom it calls."""
        rule, paging = facts.rule, self.config.paging
        policy = paging.policy(rule)
        if policy is not None and pages(facts.entry, rule, policy):
            return None
        return self._mention(facts, force=True)

    def _context_line(self, facts: Facts, incident: Mapping[str, Any]) -> Trusted:
        view = facts.incident or {}
        parts = [
            f"rule `{slack_escape(facts.entry.rule)}`",
            f"tier `{slack_escape(incident['tier_name'] or 'none')}`",
            f"incident {incident['id']}",
        ]
        if view.get("external_url"):
            parts.append(link(view["external_url"], "Alertmanager"))
        if view.get("generator_url"):
            parts.append(link(view["generator_url"], "Prometheus"))
        return Trusted(" · ".join(parts))

    def _resolution(self, facts: Facts) -> str:
        run = facts.entry.detail.get("run") or []
        if run:
            return f"the alert cleared; remediator ran {', '.join(run)}"
        if facts.actions_taken:
            return f"the alert cleared after {', '.join(facts.actions_taken)}"
        return "the alert cleared on its own"

    def _render(self, facts: Facts, name: str, ctx: Mapping[str, Any]) -> str:
        overrides = facts.rule.templates if facts.rule else None
        return self.templates.render(name, ctx, overrides)[:TEXT_LIMIT]

    @staticmethod
    def _thread(facts: Facts) -> str:
        return f"incident:{facts.entry.incident_id}"

    def _channel(self, facts: Facts) -> str:
        return (
            facts.rule.channel if facts.rule and facts.rule.channel else ""
        ) or self.slack.channel


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _fallback(text: str) -> str:
    """The notification text: the first line, without the emoji codes' colons doubled."""
    return text.splitlines()[0][:300] if text else ""


def _value_text(value: float | None) -> str:
    if value is None:
        return ""
    if 0 < abs(value) < 1:
        return f"{value:.4g} ({value * 100:.3g}%)"
    return f"{value:g}"


def _section(text: str) -> dict[str, Any]:
    """A message of one mrkdwn section, with its plain-text fallback."""
    return {"text": _fallback(text), "blocks": [{"type": "section", "text": _mrkdwn(text)}]}


def _parse_iso(text: str | None) -> float | None:
    return parse_time(text) if text else None
