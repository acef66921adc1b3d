"""Escalation policies, configured once: what pages, whom, and when the next level is called.

A policy is a path of levels. Level 1 is called when an incident pages: its tier says `page: true`
(the ingestion runbook's "> 10 %: page on-call"), or something happened that the policy's
`page_on` lists (an action refused, failed or interrupted, a failed verification, a step that
needs a human, a circuit opening). Each level mentions Slack users or user groups and triggers
pagers. Unacknowledged for the next level's `after` (default: the incident-response runbook's
response time for the incident's severity), the next level is called; an ack stops the climb.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from remediator.rules import Rule
from remediator.schema import Node, Secret
from remediator.severity import UNKNOWN, rank
from remediator.store.records import AuditEntry

PAGE_ON = ("refused", "failed", "interrupted", "verification_failed", "needs_human", "circuit_open")
DEFAULT_PAGE_ON = frozenset(PAGE_ON) - {"refused"}
# the audit events each `page_on` word stands for
EVENTS = {
    "refused": ("refused", "precondition_failed"),
    "failed": ("failed",),
    "interrupted": ("interrupted",),
    "verification_failed": ("verification_failed",),
    "needs_human": ("needs_human",),
    "circuit_open": ("circuit_opened",),
}
# the incident-response runbook: P0 15 minutes, P1 1 hour, P2 4 hours, P3 next business day
RESPONSE_TIMES = {"P0": 900.0, "P1": 3600.0, "P2": 14400.0, "P3": 86400.0}
FALLBACK_AFTER = 1800.0  # no severity: the CDC runbook's "escalate if not resolved in 30 minutes"
PAGER_KINDS = ("pagerduty", "opsgenie")
DEFAULT_URLS = {"pagerduty": "https://events.pagerduty.com", "opsgenie": "https://api.opsgenie.com"}
PAGING_KEYS = frozenset(
    {"pagers", "policies", "default_policy", "response_times", "fallback_after", "retry"}
)
PAGER_KEYS = frozenset(
    {"kind", "url", "routing_key_env", "routing_key_file", "api_key_env", "api_key_file"}
)
POLICY_KEYS = frozenset({"page_on", "levels", "description"})
LEVEL_KEYS = frozenset({"after", "mention", "pagers"})
RETRY_KEYS = frozenset({"initial", "max"})


@dataclass(frozen=True, slots=True)
class Pager:
    name: str
    kind: str  # pagerduty | opsgenie
    url: str
    key: Secret  # PagerDuty's routing key, Opsgenie's API (integration) key


@dataclass(frozen=True, slots=True)
class Level:
    mention: tuple[str, ...] = ()  # Slack user group (S...) or user (U..., W...) IDs
    pagers: tuple[str, ...] = ()
    after: float | None = None  # unacknowledged this long at the level before: call this one


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    levels: tuple[Level, ...]
    page_on: frozenset[str] = DEFAULT_PAGE_ON


@dataclass(frozen=True, slots=True)
class Paging:
    pagers: Mapping[str, Pager] = field(default_factory=dict)
    policies: Mapping[str, Policy] = field(default_factory=dict)
    default_policy: str = ""
    response_times: Mapping[str, float] = field(default_factory=lambda: dict(RESPONSE_TIMES))
    fallback_after: float = FALLBACK_AFTER
    retry_initial: float = 1.0
    retry_max: float = 300.0

    def policy(self, rule: Rule | None) -> Policy | None:
        """The rule's policy, else the default one; None when nobody is configured to call."""
        name = (rule.escalation if rule is not None else "") or self.default_policy
        return self.policies.get(name)

    def after(self, policy: Policy, level: int, severity: str) -> float | None:
        """How long level `level` (1-based) waits unacknowledged before the next is called;
        None at the last level."""
        if level >= len(policy.levels):
            return None
        own = policy.levels[level].after
        if own is not None:
            return own
        for name, seconds in self.response_times.items():
            if rank(name) == rank(severity) != UNKNOWN:
                return seconds
        return self.fallback_after


def implicit_policy(page_group: str) -> Policy | None:
    """Without a `paging` section: `slack.page_group` is level 1, mentioned, no pager."""
    if not page_group:
        return None
    return Policy("default", (Level(mention=(page_group,)),))


def pages(entry: AuditEntry, rule: Rule | None, policy: Policy) -> bool:
    """Whether this audit line calls the policy's people: reaching a tier that pages, or an
    event the policy pages on. In a storm too: Slack summarises, pagers still get each
    incident's page (one per incident; grouping them is the pager's job)."""
    if entry.incident_id is None:
        return False
    if entry.kind == "decision" and entry.event in ("opened", "escalated"):
        tier = next((t for t in rule.tiers if t.name == entry.tier), None) if rule else None
        return tier is not None and tier.page
    if entry.kind not in ("decision", "action"):
        return False
    return any(entry.event in EVENTS[word] for word in policy.page_on)


def paged_events(policy: Policy) -> frozenset[str]:
    """Every event of an audit line that pages() may be true for under `policy`."""
    return frozenset({"opened", "escalated"}).union(*(EVENTS[word] for word in policy.page_on))


def mention_text(ids: tuple[str, ...]) -> str:
    """Slack's mention syntax: <!subteam^S...> for a user group, <@U...> for a user."""
    return " ".join(f"<!subteam^{i}>" if i.startswith("S") else f"<@{i}>" for i in ids)


# -- reading the config --------------------------------------------------------------------------


def parse_paging(node: Node | None, base_dir: Path, page_group: str) -> Paging:
    """The `paging` section. Without policies, `slack.page_group` is the only level of a policy
    named `default`; `default_policy` defaults to the only policy there is."""
    if node is None:
        implicit = implicit_policy(page_group)
        return Paging(policies={"default": implicit} if implicit else {}, default_policy="default")
    node.mapping(PAGING_KEYS)
    pagers = {name: _pager(name, item, base_dir) for name, item in _items(node.get("pagers"))}
    policies = {name: _policy(name, item, pagers) for name, item in _items(node.get("policies"))}
    implicit = implicit_policy(page_group)
    if implicit is not None and not policies:
        policies["default"] = implicit
    only = next(iter(policies)) if len(policies) == 1 else ""
    default = node.opt("default_policy", Node.string, only)
    if default and default not in policies:
        raise node.child("default_policy").fail(_unknown("policy", default, policies))
    retry = node.get("retry")
    if retry is not None:
        retry.mapping(RETRY_KEYS)
    return Paging(
        pagers=pagers,
        policies=policies,
        default_policy=default,
        response_times=node.opt("response_times", _response_times, dict(RESPONSE_TIMES)),
        fallback_after=node.opt("fallback_after", Node.duration, FALLBACK_AFTER),
        retry_initial=1.0 if retry is None else retry.opt("initial", Node.duration, 1.0),
        retry_max=300.0 if retry is None else retry.opt("max", Node.duration, 300.0),
    )


def _items(node: Node | None) -> list[tuple[str, Node]]:
    return [] if node is None else list(node.items())


def _pager(name: str, node: Node, base_dir: Path) -> Pager:
    node.mapping(PAGER_KEYS)
    kind = node.require("kind").choice(PAGER_KINDS)
    secret = "routing_key" if kind == "pagerduty" else "api_key"
    other = "api_key" if kind == "pagerduty" else "routing_key"
    if node.has(f"{other}_env") or node.has(f"{other}_file"):
        raise node.fail(f"a {kind} pager takes {secret}_env or {secret}_file, not {other}")
    key = node.secret(secret, base_dir)
    if key is None:
        raise node.fail(f"a {kind} pager needs {secret}_env or {secret}_file")
    url = node.opt("url", Node.string, DEFAULT_URLS[kind]).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise node.child("url").fail(f"expected an http(s) URL, got {url!r}")
    return Pager(name, kind, url, key)


def _policy(name: str, node: Node, pagers: Mapping[str, Pager]) -> Policy:
    node.mapping(POLICY_KEYS)
    levels = tuple(_level(item, pagers) for item in node.require("levels").sequence())
    if not levels:
        raise node.child("levels").fail("a policy needs at least one level")
    words = node.strings("page_on") if node.has("page_on") else sorted(DEFAULT_PAGE_ON)
    for i, word in enumerate(words):
        if word not in PAGE_ON:
            raise (
                node.child("page_on")
                .child(i)
                .fail(f"unknown event {word!r} (known: {', '.join(PAGE_ON)})")
            )
    return Policy(name, levels, frozenset(words))


def _level(node: Node, pagers: Mapping[str, Pager]) -> Level:
    node.mapping(LEVEL_KEYS)
    mention = node.get("mention")
    ids = (
        ()
        if mention is None
        else tuple([mention.string()] if isinstance(mention.value, str) else mention.str_list())
    )
    for given in ids:
        if given[:1] not in ("S", "U", "W") or not given.isalnum():
            raise node.child("mention").fail(
                f"expected a Slack user group (S...) or user (U..., W...) ID, got {given!r}"
            )
    names = tuple(node.strings("pagers"))
    for i, name in enumerate(names):
        if name not in pagers:
            raise node.child("pagers").child(i).fail(_unknown("pager", name, pagers))
    if not ids and not names:
        raise node.fail("a level needs a mention, pagers, or both")
    return Level(ids, names, node.opt("after", Node.duration, None))


def _response_times(node: Node) -> dict[str, float]:
    times = {}
    for name, item in node.items():
        if rank(name) == UNKNOWN:
            raise item.fail(f"unknown severity {name!r} (P0..P9, critical, warning, info, ...)")
        times[name] = item.duration()
    return times


def _unknown(what: str, name: str, known: Mapping[str, object]) -> str:
    return f"unknown {what} {name!r} (known: {', '.join(sorted(known)) or 'none defined'})"
