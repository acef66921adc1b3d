"""Guardrails: pure verdicts from (policy, ask, facts). Every guardrail alone, then in order.

No servers and no sleeps: times are plain floats, windows are checked against known dates.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from remediator.guardrails import (
    ALLOW,
    GUARDRAILS,
    Ask,
    Breaker,
    Budget,
    Facts,
    Mute,
    Policy,
    Verdict,
    Window,
    circuit_open_until,
    decide,
    needed,
)
from remediator.matchers import parse_matchers

NOW = 1_795_000_000.0
LABELS = {"alertname": "IngestionHighErrorRate", "service": "ingestion", "env": "prod"}
ASK = Ask("ingestion-error-rate", "pause_ingestion", "config", LABELS, NOW)
HOUR = 3600.0


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def verdict(policy: Policy | None = None, at: float = NOW, **facts: Any) -> Verdict:
    return decide(policy or Policy(), replace(ASK, now=at), Facts(**facts))


def test_nothing_objects_by_default() -> None:
    assert verdict() is ALLOW
    assert (ALLOW.outcome, ALLOW.refused) == ("allow", False)


# -- 1. kill switch ----------------------------------------------------------------------------


def test_the_kill_switch_refuses() -> None:
    v = verdict(killswitch=True)
    assert (v.outcome, v.guardrail, v.refused) == ("refuse", "killswitch", True)
    assert "kill switch is on" in v.reason


# -- 2. dry-run --------------------------------------------------------------------------------


def test_dry_run_decides_without_refusing() -> None:
    v = verdict(Policy(dry_run=True))
    assert (v.outcome, v.guardrail, v.refused) == ("dry_run", "dry_run", False)
    assert v.reason


# -- 3. mutes ----------------------------------------------------------------------------------


def mute(**scope: Any) -> Mute:
    return Mute(id=4, reason="deploy in progress", until=NOW + 600, created_by="alice", **scope)


SERVICE = parse_matchers('{service="ingestion"}')
OTHER_SERVICE = parse_matchers('{service="billing"}')


@pytest.mark.parametrize(
    ("m", "covers"),
    [
        (mute(rule="ingestion-error-rate"), True),
        (mute(rule="cdc-connector-down"), False),
        (mute(target="config"), True),
        (mute(target="flags"), False),
        (mute(matchers=SERVICE), True),
        (mute(matchers=OTHER_SERVICE), False),
        (mute(matchers=parse_matchers('{service=~"ing.*", env!="staging"}')), True),
        # several: everything it names must match
        (mute(rule="ingestion-error-rate", target="config", matchers=SERVICE), True),
        (mute(rule="ingestion-error-rate", target="flags"), False),
        (mute(rule="cdc-connector-down", target="config"), False),
        (mute(target="config", matchers=OTHER_SERVICE), False),
        # expiry: until is exclusive
        (replace(mute(rule="ingestion-error-rate"), until=NOW + 1), True),
        (replace(mute(rule="ingestion-error-rate"), until=NOW), False),
        (replace(mute(rule="ingestion-error-rate"), until=NOW - 60), False),
    ],
)
def test_a_mute_covers_what_it_names(m: Mute, covers: bool) -> None:
    assert m.covers(ASK.rule, ASK.target, LABELS, NOW) is covers
    v = verdict(mutes=[m])
    assert v.outcome == ("refuse" if covers else "allow")


def test_a_mute_refusal_says_which_mute_why_who_and_how_long() -> None:
    v = verdict(mutes=[mute(matchers=OTHER_SERVICE), mute(target="config")])
    assert (v.outcome, v.guardrail) == ("refuse", "mute")
    assert v.reason == "muted by mute 4 (deploy in progress, by alice) for 10m more"


def test_an_expired_mute_no_longer_applies() -> None:
    m = mute(rule="ingestion-error-rate")
    assert verdict(at=NOW + 599, mutes=[m]).outcome == "refuse"
    assert verdict(at=NOW + 600, mutes=[m]) is ALLOW


# -- 4. maintenance windows --------------------------------------------------------------------

# 2026-11-28 is a Saturday; 2026-07-04 another (summer time in Berlin).
SATURDAY_NIGHT = Window("saturday-night", duration=2 * HOUR, cron="0 2 * * sat")


@pytest.mark.parametrize(
    ("now", "until"),
    [
        (utc(2026, 11, 28, 1, 59, 59), None),
        (utc(2026, 11, 28, 2, 0, 0), utc(2026, 11, 28, 4)),  # the start is inside
        (utc(2026, 11, 28, 3, 0, 0), utc(2026, 11, 28, 4)),
        (utc(2026, 11, 28, 3, 59, 59), utc(2026, 11, 28, 4)),
        (utc(2026, 11, 28, 4, 0, 0), None),  # the end is not
        (utc(2026, 11, 27, 2, 30, 0), None),  # Friday
        (utc(2026, 11, 29, 2, 30, 0), None),  # Sunday
        (utc(2026, 12, 5, 2, 30, 0), utc(2026, 12, 5, 4)),  # next Saturday
    ],
)
def test_a_cron_window_holds_from_each_start_for_its_duration(now: float, until: float) -> None:
    assert SATURDAY_NIGHT.active_until(now) == until


@pytest.mark.parametrize(
    ("cron", "now", "start"),
    [
        ("0 2 * * sat", utc(2026, 11, 25, 12), utc(2026, 11, 28, 2)),
        ("0 2 * * sat", utc(2026, 11, 28, 2, 30), utc(2026, 12, 5, 2)),  # inside: the next one
        ("0 2 * * sat", utc(2026, 11, 28, 1, 59, 59), utc(2026, 11, 28, 2)),
        # crontab numbers days from Sunday (0 or 7): 6 is Saturday, 0 and 7 are Sunday
        ("0 2 * * 6", utc(2026, 11, 25, 12), utc(2026, 11, 28, 2)),
        ("0 2 * * 0", utc(2026, 11, 25, 12), utc(2026, 11, 29, 2)),
        ("0 2 * * 7", utc(2026, 11, 25, 12), utc(2026, 11, 29, 2)),
        ("0 2 * * 1-5", utc(2026, 11, 28, 12), utc(2026, 11, 30, 2)),  # Saturday: Monday next
        ("0 2 * * 5-7", utc(2026, 11, 26, 12), utc(2026, 11, 27, 2)),  # Friday to Sunday
        ("0 2 * * 0,6", utc(2026, 11, 25, 12), utc(2026, 11, 28, 2)),
        ("0 2 * * */3", utc(2026, 11, 25, 12), utc(2026, 11, 28, 2)),  # Sun, Wed, Sat
        ("30 1 * * *", utc(2026, 11, 28, 1, 31), utc(2026, 11, 29, 1, 30)),
    ],
)
def test_the_next_start_of_a_cron_window(cron: str, now: float, start: float) -> None:
    assert Window("w", duration=HOUR, cron=cron).next_start(now) == start


@pytest.mark.parametrize(
    ("now", "until"),
    [
        # Berlin is UTC+1 in November: 02:00 there is 01:00 UTC
        (utc(2026, 11, 28, 0, 59, 59), None),
        (utc(2026, 11, 28, 1, 0, 0), utc(2026, 11, 28, 3)),
        (utc(2026, 11, 28, 2, 59, 59), utc(2026, 11, 28, 3)),
        (utc(2026, 11, 28, 3, 0, 0), None),
        # and UTC+2 in July: 02:00 there is 00:00 UTC
        (utc(2026, 7, 3, 23, 59, 59), None),
        (utc(2026, 7, 4, 0, 0, 0), utc(2026, 7, 4, 2)),
        (utc(2026, 7, 4, 2, 0, 0), None),
    ],
)
def test_a_cron_window_keeps_its_time_zone(now: float, until: float) -> None:
    berlin = Window("berlin", duration=2 * HOUR, cron="0 2 * * sat", timezone="Europe/Berlin")
    assert berlin.active_until(now) == until


def test_a_cron_window_that_spans_midnight() -> None:
    friday_late = Window("friday-late", duration=4 * HOUR, cron="0 23 * * fri")
    assert friday_late.active_until(utc(2026, 11, 28, 1)) == utc(2026, 11, 28, 3)
    assert friday_late.active_until(utc(2026, 11, 28, 3)) is None


@pytest.mark.parametrize(
    "cron", ["0 2 * * 8", "0 2 * * someday", "0 2 * * 1/0", "0 2 * *", "0 2 * * \u00b2"]
)
def test_a_window_with_a_bad_crontab_is_refused(cron: str) -> None:
    with pytest.raises(ValueError, match=r"day of week|zero|fields"):
        Window("w", duration=HOUR, cron=cron)


START, END = utc(2026, 11, 28, 2), utc(2026, 11, 28, 4)
FIXED = Window("db-upgrade", duration=END - START, start=START, end=END)


@pytest.mark.parametrize(
    ("now", "until", "next_start"),
    [
        (START - 1, None, START),
        (START, END, None),
        (END - 1, END, None),
        (END, None, None),
        (END + HOUR, None, None),
    ],
)
def test_a_fixed_window(now: float, until: float | None, next_start: float | None) -> None:
    assert FIXED.active_until(now) == until
    assert FIXED.next_start(now) == next_start


@pytest.mark.parametrize(
    ("rules", "targets", "applies"),
    [
        ((), (), True),
        (("ingestion-error-rate",), (), True),
        (("cdc-connector-down",), (), False),
        ((), ("config",), True),
        ((), ("flags",), False),
        (("ingestion-error-rate", "cdc-connector-down"), ("flags", "config"), True),
        (("ingestion-error-rate",), ("flags",), False),
        (("cdc-connector-down",), ("config",), False),
    ],
)
def test_a_window_applies_to_the_rules_and_targets_it_names(
    rules: tuple[str, ...], targets: tuple[str, ...], applies: bool
) -> None:
    window = replace(FIXED, rules=frozenset(rules), targets=frozenset(targets))
    assert window.applies(ASK.rule, ASK.target) is applies
    v = verdict(at=START + 60, windows=[window])
    assert v.outcome == ("hold" if applies else "allow")


@pytest.mark.parametrize("window", [FIXED, SATURDAY_NIGHT], ids=["fixed", "cron"])
def test_inside_a_window_actions_are_held_until_it_ends(window: Window) -> None:
    v = verdict(at=START + 60, windows=[window])
    assert (v.outcome, v.guardrail, v.until, v.refused) == ("hold", "maintenance", END, False)
    assert window.name in v.reason
    assert verdict(at=START - 1, windows=[window]) is ALLOW
    assert verdict(at=END, windows=[window]) is ALLOW


def test_a_rule_may_drop_actions_during_maintenance() -> None:
    v = verdict(Policy(during_maintenance="drop"), at=START + 60, windows=[FIXED])
    assert (v.outcome, v.guardrail, v.until) == ("refuse", "maintenance", None)
    assert "'db-upgrade'" in v.reason
    assert "drops actions during maintenance" in v.reason


def test_the_first_window_that_applies_decides() -> None:
    elsewhere = replace(FIXED, name="elsewhere", targets=frozenset({"flags"}))
    later = Window("later", duration=HOUR, start=START, end=END + HOUR)
    v = verdict(at=START + 60, windows=[elsewhere, later, FIXED])
    assert (v.until, "'later'" in v.reason) == (END + HOUR, True)


# -- 5. cooldown per (rule, target) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("cooldown", "last", "outcome"),
    [
        (None, NOW - 1, "allow"),
        (600.0, None, "allow"),
        (600.0, NOW, "refuse"),
        (600.0, NOW - 599, "refuse"),
        (600.0, NOW - 600, "allow"),  # measured from the start: exactly the cooldown has passed
        (600.0, NOW - 3600, "allow"),
    ],
)
def test_cooldown_is_measured_from_another_incidents_last_start(
    cooldown: float | None, last: float | None, outcome: str
) -> None:
    v = verdict(Policy(cooldown=cooldown), last_other_start=last)
    assert v.outcome == outcome


def test_a_cooldown_refusal_says_when_and_how_long() -> None:
    v = verdict(Policy(cooldown=1800.0), last_other_start=NOW - 300)
    assert (v.outcome, v.guardrail) == ("refuse", "cooldown")
    assert v.reason.startswith("rule 'ingestion-error-rate' acted on 'config'")
    assert v.reason.endswith(" 5m ago; cooldown has 25m left")


# -- 6. budgets --------------------------------------------------------------------------------

TWO_AN_HOUR = Budget(max=2, per=HOUR)


@pytest.mark.parametrize(
    ("starts", "outcome"),
    [
        ((), "allow"),
        ((NOW - 10,), "allow"),
        ((NOW - 10, NOW - 20), "refuse"),
        ((NOW, NOW), "refuse"),
        ((NOW - 10, NOW - HOUR + 0.5), "refuse"),
        ((NOW - 10, NOW - HOUR), "allow"),  # exactly `per` ago is outside the window
        ((NOW - 10, NOW - 2 * HOUR, NOW - 3 * HOUR), "allow"),
    ],
)
@pytest.mark.parametrize("scope", ["global", "action"])
def test_budgets_count_only_starts_inside_their_window(
    starts: tuple[float, ...], outcome: str, scope: str
) -> None:
    if scope == "global":
        v = verdict(Policy(global_budget=TWO_AN_HOUR), started_global=starts)
    else:
        v = verdict(Policy(action_budget=TWO_AN_HOUR), started_action=starts)
    assert v.outcome == outcome


def test_a_budget_refusal_names_its_scope_and_limit() -> None:
    both = Policy(global_budget=Budget(3, HOUR), action_budget=TWO_AN_HOUR)
    busy_hour = (NOW - 1, NOW - 2, NOW - 3)
    v = verdict(both, started_global=busy_hour, started_action=busy_hour[:1])
    assert (v.outcome, v.guardrail) == ("refuse", "budget")
    assert v.reason == "budget for all actions spent: 3 actions in the last 1h (at most 3)"
    v = verdict(both, started_global=busy_hour[:2], started_action=busy_hour[:2])
    assert v.reason == "budget for pause_ingestion spent: 2 actions in the last 1h (at most 2)"


def test_each_budget_counts_its_own_starts() -> None:
    policy = Policy(global_budget=Budget(3, HOUR), action_budget=TWO_AN_HOUR)
    assert verdict(policy, started_global=[NOW - 1, NOW - 2], started_action=[NOW - 1]) is ALLOW
    assert verdict(policy, started_global=[NOW - 1], started_action=[]) is ALLOW


def test_a_zero_budget_allows_nothing() -> None:
    assert verdict(Policy(action_budget=Budget(0, HOUR))).outcome == "refuse"


def test_a_budget_reads_as_written() -> None:
    assert str(TWO_AN_HOUR) == "2 per 1h"
    assert str(Budget(10, 90.0)) == "10 per 1m30s"


# -- 7. one action at a time per target --------------------------------------------------------


def test_a_busy_target_makes_the_claim_wait() -> None:
    v = verdict(target_busy=True)
    assert (v.outcome, v.guardrail, v.refused) == ("wait", "one_at_a_time", False)
    assert v.reason == "another action is running on 'config'"


# -- 8. circuit breaker ------------------------------------------------------------------------

BREAKER = Breaker(failures=3, within=600.0, open_for=900.0)


@pytest.mark.parametrize(
    ("failures", "until"),
    [
        ((), None),
        ((0.0,), None),
        ((0.0, 100.0), None),  # below N failures: closed
        ((0.0, 100.0, 600.0), 1500.0),  # N within `within` (inclusive): open from the last
        ((0.0, 0.0, 0.0), 900.0),
        ((0.0, 301.0, 601.0), None),  # spread wider than `within`: closed
        ((0.0, 301.0, 601.0, 1300.0), None),
        ((0.0, 400.0, 800.0, 1000.0), 1900.0),  # the last three are close enough
        ((1000.0, 0.0, 800.0, 400.0), 1900.0),  # in any order
        ((0.0, 100.0, 200.0, 5000.0), 5900.0),  # a failure after tripping opens it again
    ],
)
def test_circuit_open_until(failures: tuple[float, ...], until: float | None) -> None:
    assert circuit_open_until(failures, BREAKER) == until


def test_an_open_circuit_refuses_until_it_half_opens() -> None:
    policy = Policy(breaker=BREAKER)
    failures = (NOW - 200, NOW - 100, NOW)
    v = verdict(policy, failures=failures)
    assert (v.outcome, v.guardrail, v.until) == ("refuse", "circuit_breaker", NOW + 900)
    assert v.reason == "circuit open for 'config': 3 failed actions; next attempt allowed in 15m"
    assert verdict(policy, at=NOW + 899, failures=failures).outcome == "refuse"
    # half-open: one attempt passes (one at a time per target keeps it to one)
    assert verdict(policy, at=NOW + 900, failures=failures) is ALLOW
    # the probe failed: open again, for open_for from the probe
    probed = (*failures, NOW + 905)
    assert verdict(policy, at=NOW + 906, failures=probed).until == NOW + 905 + 900
    assert verdict(policy, at=NOW + 905 + 900, failures=probed) is ALLOW


def test_failures_below_the_threshold_or_without_a_breaker_allow() -> None:
    assert verdict(Policy(breaker=BREAKER), failures=(NOW - 1, NOW)) is ALLOW
    assert verdict(Policy(), failures=(NOW - 2, NOW - 1, NOW)) is ALLOW


# -- 9. approval -------------------------------------------------------------------------------

DENIED = "denied by bob: the migration is nearly done"
EXPIRED = "approval 3 expired unanswered; an expired approval never runs"


@pytest.mark.parametrize(
    ("required", "approval", "detail", "expected"),
    [
        (False, None, "", ALLOW),
        (True, None, "", Verdict("ask_approval", "approval", "waiting for a human's approval")),
        (
            True,
            "pending",
            "",
            Verdict("await_approval", "approval", "waiting for a human's approval"),
        ),
        (True, "approved", "", ALLOW),
        (True, "denied", DENIED, Verdict("refuse", "approval", DENIED)),
        (True, "expired", EXPIRED, Verdict("refuse", "approval", EXPIRED)),
        (True, "expired", "", Verdict("refuse", "approval", "approval expired")),
    ],
)
def test_approval(required: bool, approval: str | None, detail: str, expected: Verdict) -> None:
    policy = Policy(approval_required=required)
    assert verdict(policy, approval=approval, approval_detail=detail) == expected


# -- every guardrail alone, then in order -------------------------------------------------------

ORDER = (
    "killswitch",
    "dry_run",
    "mute",
    "maintenance",
    "cooldown",
    "budget",
    "one_at_a_time",
    "circuit_breaker",
    "approval",
)

# What makes each guardrail object on its own: (policy fields, facts fields, outcome).
OBJECTIONS: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "killswitch": ({}, {"killswitch": True}, "refuse"),
    "dry_run": ({"dry_run": True}, {}, "dry_run"),
    "mute": ({}, {"mutes": [mute(target="config")]}, "refuse"),
    "maintenance": ({}, {"windows": [replace(FIXED, start=NOW - 60, end=NOW + 60)]}, "hold"),
    "cooldown": ({"cooldown": 600.0}, {"last_other_start": NOW - 60}, "refuse"),
    "budget": ({"global_budget": TWO_AN_HOUR}, {"started_global": [NOW - 2, NOW - 1]}, "refuse"),
    "one_at_a_time": ({}, {"target_busy": True}, "wait"),
    "circuit_breaker": (
        {"breaker": BREAKER},
        {"failures": [NOW - 20, NOW - 10, NOW]},
        "refuse",
    ),
    "approval": ({"approval_required": True}, {}, "ask_approval"),
}


def combined(names: tuple[str, ...] | list[str]) -> Verdict:
    policy: dict[str, Any] = {}
    facts: dict[str, Any] = {}
    for name in names:
        policy.update(OBJECTIONS[name][0])
        facts.update(OBJECTIONS[name][1])
    return decide(Policy(**policy), ASK, Facts(**facts))


def test_the_order_is_the_documented_one() -> None:
    assert tuple(OBJECTIONS) == ORDER
    assert [g for g in ORDER if g in GUARDRAILS] == list(GUARDRAILS)
    assert set(GUARDRAILS) <= set(ORDER)


@pytest.mark.parametrize("name", ORDER)
def test_each_guardrail_alone_objects_in_words(name: str) -> None:
    v = combined([name])
    assert (v.guardrail, v.outcome) == (name, OBJECTIONS[name][2])
    assert v.refused is (v.outcome == "refuse")
    assert v.reason.strip() == v.reason != ""
    assert not any(junk in v.reason for junk in ("None", "{", "<", "Mute(", "Window("))
    if v.outcome == "refuse":
        assert len(v.reason.split()) >= 5, v.reason  # a sentence, not a code


@pytest.mark.parametrize(
    ("first", "second"),
    list(itertools.combinations(ORDER, 2)),
    ids=[f"{a}>{b}" for a, b in itertools.combinations(ORDER, 2)],
)
def test_the_earlier_guardrail_decides(first: str, second: str) -> None:
    v = combined([first, second])
    assert (v.guardrail, v.outcome) == (first, OBJECTIONS[first][2])


def test_with_every_guardrail_objecting_each_in_turn_decides() -> None:
    for i, name in enumerate(ORDER):
        assert combined(ORDER[i:]).guardrail == name


# -- the store's facts a policy needs -------------------------------------------------------------

# each of Needed's facts, with values that make its guardrail object
STORED: dict[str, dict[str, Any]] = {
    "cooldown": {"last_other_start": NOW - 60},
    "budgets": {"started_global": [NOW - 2, NOW - 1], "started_action": [NOW - 2, NOW - 1]},
    "breaker": {"failures": [NOW - 20, NOW - 10, NOW]},
    "approval": {"approval": "denied", "approval_detail": DENIED},
}
POLICIES: dict[str, dict[str, Any]] = {
    "cooldown": {"cooldown": 600.0},
    "budgets": {"action_budget": TWO_AN_HOUR},
    "breaker": {"breaker": BREAKER},
    "approval": {"approval_required": True},
}


@pytest.mark.parametrize(
    "names",
    [c for n in range(len(POLICIES) + 1) for c in itertools.combinations(POLICIES, n)],
    ids=lambda names: "+".join(names) or "none",
)
def test_a_fact_the_policy_does_not_need_changes_no_verdict(names: tuple[str, ...]) -> None:
    """The store reads only what `needed` names (starts.py): every other fact left empty
    gives the verdict that all of them give, and a fact it names matters."""
    policy = Policy(**{k: v for name in names for k, v in POLICIES[name].items()})
    wanted = needed(policy)
    assert {name for name in POLICIES if getattr(wanted, name)} == set(names)
    every = {k: v for facts in STORED.values() for k, v in facts.items()}
    read = {k: v for name, facts in STORED.items() if name in names for k, v in facts.items()}
    assert decide(policy, ASK, Facts(**read)) == decide(policy, ASK, Facts(**every))
    if len(names) == 1:  # and the one it needs decides: it is needed
        assert decide(policy, ASK, Facts(**read)) != decide(policy, ASK, Facts())
