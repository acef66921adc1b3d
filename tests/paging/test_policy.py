"""policy.py: the `paging` section read from config (errors name file, path and value), and the
pure decisions: what pages, how long a level waits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from remediator.config import load_config
from remediator.errors import ConfigError
from remediator.paging.policy import (
    DEFAULT_PAGE_ON,
    EVENTS,
    Level,
    Paging,
    Policy,
    mention_text,
    paged_events,
    pages,
)
from remediator.store.records import AuditEntry

RULES = """
actions:
  noop: {kind: http, target: t, path: /x}
rules:
  - name: r
    match: '{alertname="A"}'
    tiers:
      - {name: watch, escalate_after: 5m}
      - {name: act, actions: [noop], page: true}
"""


def main(paging: str, rule_extra: str = "") -> str:
    return (
        "store: {sqlite: {path: state/r.db}}\n"
        "targets: {t: {url: 'http://127.0.0.1:9'}}\n"
        "slack: {page_group: S0PAGE}\n"
        "rule_files: [rules.yaml]\n" + paging
    )


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PD_KEY", "x" * 32)
    monkeypatch.setenv("OG_KEY", "og")


def problems(write_config: Callable[..., Path], text: str, rules: str = RULES) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(write_config(main(text), rules=rules))
    return e.value.problems


def test_a_full_paging_section(write_config: Callable[..., Path]) -> None:
    config = load_config(
        write_config(
            main(
                "paging:\n"
                "  pagers:\n"
                "    pd: {kind: pagerduty, routing_key_env: PD_KEY}\n"
                "    og: {kind: opsgenie, url: 'https://api.eu.opsgenie.com/',\n"
                "         api_key_env: OG_KEY}\n"
                "  response_times: {P0: 10m}\n"
                "  policies:\n"
                "    on-call:\n"
                "      page_on: [failed, circuit_open]\n"
                "      levels:\n"
                "        - {mention: S0ONCALL, pagers: [pd]}\n"
                "        - {after: 30m, mention: [S0LEAD, U0BOSS], pagers: [og]}\n"
            ),
            rules=RULES,
        )
    )
    paging = config.paging
    assert paging.default_policy == "on-call"
    assert paging.pagers["og"].url == "https://api.eu.opsgenie.com"
    assert paging.pagers["pd"].url == "https://events.pagerduty.com"
    assert paging.pagers["pd"].key.reveal() == "x" * 32
    assert "x" * 32 not in repr(paging)
    policy = paging.policies["on-call"]
    assert policy.page_on == frozenset({"failed", "circuit_open"})
    assert policy.levels[1] == Level(("S0LEAD", "U0BOSS"), ("og",), 1800.0)
    assert config.rules[0].tiers[1].page is True


def test_without_a_paging_section_the_slack_page_group_is_level_one(
    write_config: Callable[..., Path],
) -> None:
    config = load_config(write_config(main(""), rules=RULES))
    policy = config.paging.policy(config.rules[0])
    assert policy == Policy("default", (Level(("S0PAGE",)),))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "paging: {pagers: {pd: {kind: pagerduty, routing_key: abc}}}",
            "remediator.yaml: paging.pagers.pd.routing_key: inline secrets are not allowed: use "
            "routing_key_env or routing_key_file",
        ),
        (
            "paging: {pagers: {pd: {kind: pagerduty, api_key_env: OG_KEY}}}",
            "remediator.yaml: paging.pagers.pd: a pagerduty pager takes routing_key_env or "
            "routing_key_file, not api_key",
        ),
        (
            "paging: {pagers: {pd: {kind: victorops, routing_key_env: PD_KEY}}}",
            "remediator.yaml: paging.pagers.pd.kind: invalid value 'victorops' (expected one of: "
            "pagerduty, opsgenie)",
        ),
        (
            "paging: {pagers: {og: {kind: opsgenie, api_key_env: MISSING_KEY}}}",
            "remediator.yaml: paging.pagers.og.api_key_env: environment variable 'MISSING_KEY' "
            "is not set or empty",
        ),
        (
            "paging: {policies: {p: {levels: [{mention: S0A, pagers: [nope]}]}}}",
            "remediator.yaml: paging.policies.p.levels[0].pagers[0]: unknown pager 'nope' "
            "(known: none defined)",
        ),
        (
            "paging: {policies: {p: {levels: [{mention: '#oncall'}]}}}",
            "remediator.yaml: paging.policies.p.levels[0].mention: expected a Slack user group "
            "(S...) or user (U..., W...) ID, got '#oncall'",
        ),
        (
            "paging: {policies: {p: {page_on: [failed, paged], levels: [{mention: S0A}]}}}",
            "remediator.yaml: paging.policies.p.page_on[1]: unknown event 'paged' (known: "
            "refused, failed, interrupted, verification_failed, needs_human, circuit_open)",
        ),
        (
            "paging: {policies: {p: {levels: [{mention: S0A}]}}, default_policy: q}",
            "remediator.yaml: paging.default_policy: unknown policy 'q' (known: p)",
        ),
    ],
)
def test_config_errors_name_file_path_and_value(
    write_config: Callable[..., Path], text: str, problem: str
) -> None:
    found = problems(write_config, text)
    assert any(p.endswith(problem) for p in found), found


def test_a_rule_naming_an_unknown_policy(write_config: Callable[..., Path]) -> None:
    rules = RULES.replace("    match:", "    escalation: cdc-path\n    match:")
    found = problems(write_config, "", rules)
    assert any(
        p.endswith("rules[0].escalation: unknown escalation policy 'cdc-path' (known: default)")
        for p in found
    ), found


def entry(kind: str, event: str, tier: str = "act", **detail: object) -> AuditEntry:
    return AuditEntry(kind, event, "m", 0.0, incident_id=1, rule="r", tier=tier, detail=detail)


def test_what_pages(write_config: Callable[..., Path]) -> None:
    config = load_config(write_config(main(""), rules=RULES))
    rule = config.rules[0]
    policy = Policy("p", (Level(("S0A",)),))
    assert pages(entry("decision", "escalated", "act"), rule, policy)
    assert pages(entry("decision", "opened", "act"), rule, policy)
    assert not pages(entry("decision", "opened", "watch"), rule, policy)
    assert pages(entry("decision", "escalated", "act", storm=True), rule, policy)
    for event in ("failed", "interrupted", "verification_failed", "circuit_opened"):
        assert pages(entry("action", event), rule, policy), event
    assert pages(entry("decision", "needs_human"), rule, policy)
    assert not pages(entry("action", "refused"), rule, policy)  # not by default
    assert pages(
        entry("action", "refused"), rule, Policy("p", policy.levels, frozenset({"refused"}))
    )
    assert not pages(entry("action", "succeeded"), rule, policy)


def test_paged_events_name_every_line_that_pages(write_config: Callable[..., Path]) -> None:
    """The desk reads only the audit lines whose event paged_events names (the store skips the
    rest): every line pages() is true for, whatever the policy pages on, has one of them."""
    config = load_config(write_config(main(""), rules=RULES))
    rule = config.rules[0]
    known = {e for names in EVENTS.values() for e in names}
    known |= {"opened", "escalated", "resolved", "claimed", "succeeded", "started", "muted"}
    for page_on in [DEFAULT_PAGE_ON, frozenset(), *(frozenset({w}) for w in EVENTS)]:
        policy = Policy("p", (Level(("S0A",)),), page_on)
        paging = [
            (kind, event)
            for kind in ("decision", "action", "page", "summary")
            for event in sorted(known)
            for tier in ("act", "watch")
            if pages(entry(kind, event, tier), rule, policy)
        ]
        assert paging, page_on
        assert {event for _, event in paging} <= paged_events(policy), page_on


def test_how_long_a_level_waits() -> None:
    policy = Policy("p", (Level(("S0A",)), Level(("S0B",)), Level(("S0C",), after=3600.0)))
    paging = Paging(policies={"p": policy})
    assert paging.after(policy, 1, "P0") == 900.0  # the runbook's P0 response time
    assert paging.after(policy, 1, "critical") == 900.0
    assert paging.after(policy, 1, "P2") == 4 * 3600.0
    assert paging.after(policy, 1, "") == 1800.0  # no severity: 30 minutes
    assert paging.after(policy, 2, "P0") == 3600.0  # the level's own
    assert paging.after(policy, 3, "P0") is None  # the last level


def test_mentions() -> None:
    assert mention_text(("S0A", "U0B", "W0C")) == "<!subteam^S0A> <@U0B> <@W0C>"
