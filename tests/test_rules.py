"""Rules: numbers, conditions, value sources, ladders and the rule index."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remediator.alerts import Alert
from remediator.matchers import parse_matchers
from remediator.rules import (
    Condition,
    ResolvedStep,
    Rule,
    RuleIndex,
    Tier,
    ValueSource,
    check_ladder,
    parse_number,
)

INF = math.inf


def tiers(*conditions: str | None) -> tuple[Tier, ...]:
    return tuple(
        Tier(i, f"t{i}", None if c is None else Condition.parse(c), ())
        for i, c in enumerate(conditions)
    )


def rule(name: str, match: str, *conditions: str | None, position: int = 0) -> Rule:
    return Rule(
        name=name,
        matchers=parse_matchers(match),
        incident_key=("alertname",),
        tiers=tiers(*(conditions or (None,))),
        position=position,
    )


def alert(annotations: dict[str, str] | None = None, **labels: str) -> Alert:
    return Alert("firing", labels, annotations or {}, 0.0, None, "", "f")


# --- numbers and conditions ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.125", 0.125),
        ("12.5%", 0.125),
        (" 12.5 % ", 0.125),
        ("5%", 0.05),
        ("10%", 0.1),
        ("20%", 0.2),
        # the same number as the ratio Prometheus reports, not 35 * 0.01 = 0.35000000000000003
        ("35%", 0.35),
        ("70%", 0.7),
        ("0.7%", 0.007),
        ("0%", 0.0),
        ("-3%", -0.03),
        ("100", 100.0),
        ("1e3", 1000.0),
        ("-2.5", -2.5),
        ("+Inf", INF),
        ("-Inf", -INF),
        ("inf%", INF),
    ],
)
def test_parse_number(text: str, expected: float) -> None:
    assert parse_number(text) == expected


@pytest.mark.parametrize("text", ["NaN", "nan", "NaN%"])
def test_parse_number_nan(text: str) -> None:
    assert math.isnan(parse_number(text))


@pytest.mark.parametrize("text", ["", " ", "%", "abc", "5%%", "12,5", "0x10", "5 percent", "%5"])
def test_parse_number_refuses_junk(text: str) -> None:
    with pytest.raises(ValueError, match="could not convert string to float"):
        parse_number(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("> 5%", Condition(">", 0.05)),
        (">5%", Condition(">", 0.05)),
        ("  >= 0.1 ", Condition(">=", 0.1)),
        ("< 100", Condition("<", 100.0)),
        ("<= 1e3", Condition("<=", 1000.0)),
        ("> -1", Condition(">", -1.0)),
        ("== 1", Condition("==", 1.0)),
        ("!= 0", Condition("!=", 0.0)),
    ],
)
def test_condition_parse(text: str, expected: Condition) -> None:
    assert Condition.parse(text) == expected


@pytest.mark.parametrize(
    "text", ["", "5", "=> 5", "> ", "> abc", "> = 5", "≥ 5", "! 5", "> NaN", "< nan%"]
)
def test_condition_parse_refuses(text: str) -> None:
    message = f"invalid condition {text.strip()!r} (e.g. '> 5%', '>= 0.1', '< 100')"
    with pytest.raises(ValueError, match=re.escape(message)):
        Condition.parse(text)


@pytest.mark.parametrize(
    ("condition", "value", "expected"),
    [
        ("> 10%", 0.1, False),
        ("> 10%", 0.1000001, True),
        (">= 10%", 0.1, True),
        (">= 35%", 0.35, True),
        ("< 35%", 0.35, False),
        ("< 5", 4.9, True),
        ("< 5", 5.0, False),
        ("<= 5", 5.0, True),
        ("> 5", INF, True),
        ("< 5", -INF, True),
    ],
)
def test_condition_holds(condition: str, value: float, expected: bool) -> None:
    assert Condition.parse(condition).holds(value) is expected


@pytest.mark.parametrize("condition", ["> 0", ">= 0", "< 0", "<= 0", "> -Inf", "< +Inf"])
def test_nan_satisfies_no_condition(condition: str) -> None:
    assert Condition.parse(condition).holds(math.nan) is False


@pytest.mark.parametrize(
    ("condition", "rising", "text"),
    [
        ("> 5%", True, "> 0.05"),
        (">= 2", True, ">= 2"),
        ("< 1e3", False, "< 1000"),
        ("<= 0.5", False, "<= 0.5"),
    ],
)
def test_condition_direction_and_text(condition: str, rising: bool, text: str) -> None:
    parsed = Condition.parse(condition)
    assert (parsed.rising, str(parsed)) == (rising, text)


# --- value sources ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "a", "expected"),
    [
        (ValueSource("annotation", "error_rate"), alert({"error_rate": "0.12"}), 0.12),
        (ValueSource("annotation", "error_rate"), alert({"error_rate": "12%"}), 0.12),
        (ValueSource("label", "lag"), alert(lag="300"), 300.0),
        (
            ValueSource("annotation", "error_rate"),
            alert(error_rate="0.12"),
            "annotation 'error_rate' is missing",
        ),
        (ValueSource("label", "lag"), alert({"lag": "300"}), "label 'lag' is missing"),
        (
            ValueSource("annotation", "error_rate"),
            alert({"error_rate": "n/a"}),
            "annotation 'error_rate' is not a number: 'n/a'",
        ),
        (ValueSource("label", "lag"), alert(lag=""), "label 'lag' is not a number: ''"),
    ],
)
def test_value_source_read(source: ValueSource, a: Alert, expected: float | str) -> None:
    assert source.read(a) == expected


def test_value_source_reads_nan_as_a_number() -> None:
    value = ValueSource("annotation", "v").read(alert({"v": "NaN"}))
    assert isinstance(value, float)
    assert math.isnan(value)


# --- ladders ------------------------------------------------------------------------------

INGESTION = rule("ingestion", '{alertname="IngestionHighErrorRate"}', "> 5%", "> 10%", "> 20%")
FREE_DISK = rule("disk", '{alertname="DiskFree"}', "< 50", "< 20", "< 5")


@pytest.mark.parametrize(
    ("r", "value", "expected"),
    [
        (INGESTION, None, -1),
        (INGESTION, 0.01, -1),
        (INGESTION, 0.05, -1),  # > is strict
        (INGESTION, 0.08, 0),
        (INGESTION, 0.12, 1),
        (INGESTION, 0.23, 2),  # the highest crossed, not the first
        (INGESTION, INF, 2),
        (INGESTION, math.nan, -1),
        (FREE_DISK, 60.0, -1),
        (FREE_DISK, 30.0, 0),
        (FREE_DISK, 10.0, 1),
        (FREE_DISK, 1.0, 2),
        (FREE_DISK, math.nan, -1),
        (rule("cdc", '{alertname="ConnectorDown"}'), None, 0),
        (rule("cdc", '{alertname="ConnectorDown"}'), 0.5, 0),
        (rule("r", "{a=b}", None, "> 10%", "> 20%"), None, 0),
        (rule("r", "{a=b}", None, "> 10%", "> 20%"), 0.01, 0),
        (rule("r", "{a=b}", None, "> 10%", "> 20%"), 0.15, 1),
        (rule("r", "{a=b}", None, "> 10%", "> 20%"), 0.25, 2),
        # a later unconditioned tier is reached by time or repetition, never by value
        (rule("r", "{a=b}", "> 10%", None), None, -1),
        (rule("r", "{a=b}", "> 10%", None), 0.9, 0),
    ],
)
def test_tier_for(r: Rule, value: float | None, expected: int) -> None:
    assert r.tier_for(value) == expected


@pytest.mark.parametrize(
    ("conditions", "problem"),
    [
        (("> 5%", "> 10%", "> 20%"), None),
        (("< 50", "<= 20", "< 5"), None),
        ((None, "> 10%", None, "> 20%"), None),
        ((None, None), None),
        (("> 10%", "> 5%"), "tier thresholds must increase up the ladder (> 0.1 then > 0.05)"),
        (("> 5%", ">= 5%"), "tier thresholds must increase up the ladder (> 0.05 then >= 0.05)"),
        (("> 1", None, "> 3", "> 2"), "tier thresholds must increase up the ladder (> 3 then > 2)"),
        (("< 5", "< 20"), "tier thresholds must decrease up the ladder (< 5 then < 20)"),
        (("> 5", "< 10"), "tiers mix rising (>, >=) and falling (<, <=) conditions"),
        (("<= 10", ">= 20"), "tiers mix rising (>, >=) and falling (<, <=) conditions"),
        (
            ("> 1", "== 2"),
            "tier conditions compare with >, >=, < or <=; == and != cannot rank tiers",
        ),
    ],
)
def test_check_ladder(conditions: tuple[str | None, ...], problem: str | None) -> None:
    assert check_ladder(tiers(*conditions)) == problem


def test_key_of_uses_empty_string_for_a_missing_label() -> None:
    r = Rule("r", (), ("alertname", "connector"), tiers(None))
    assert r.key_of({"alertname": "ConnectorDown"}) == ("ConnectorDown", "")
    assert r.key_of({"alertname": "ConnectorDown", "connector": "sink"}) == (
        "ConnectorDown",
        "sink",
    )


def test_action_names_include_on_resolved() -> None:
    ladder = (Tier(0, "pause", None, ("pause",)), Tier(1, "rollback", None, ("pause", "flag")))
    r = Rule("r", (), ("alertname",), ladder, on_resolved=(ResolvedStep("resume", ("pause",)),))
    assert r.action_names() == {"pause", "flag", "resume"}


# --- the index ----------------------------------------------------------------------------


def index(*specs: str) -> RuleIndex:
    return RuleIndex(tuple(rule(f"r{i}", spec, position=i) for i, spec in enumerate(specs)))


def names(rules: list[Rule]) -> list[str]:
    return [r.name for r in rules]


def test_match_returns_every_matching_rule_in_written_order() -> None:
    idx = index(
        '{job=~".+"}',  # r0: unindexed
        '{alertname="A"}',  # r1: under alertname
        '{severity="critical"}',  # r2: under severity
        '{alertname="A", env="prod"}',  # r3: under alertname
        '{alertname="B"}',  # r4
        '{alertname="A", env="dev"}',  # r5
    )
    labels = {"alertname": "A", "severity": "critical", "job": "x", "env": "prod"}
    assert names(idx.match(labels)) == ["r0", "r1", "r2", "r3"]


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"alertname": "A"}, ["r0", "r1", "r3"]),
        ({"alertname": "A", "severity": "critical"}, ["r0", "r1", "r2", "r3"]),
        ({"alertname": "B", "severity": "critical"}, ["r0", "r2", "r4"]),
        ({"alertname": "C"}, ["r0"]),
        ({"severity": "critical"}, ["r0", "r2"]),
        ({}, ["r0"]),
    ],
)
def test_candidates_are_filed_under_one_equality_matcher(
    labels: dict[str, str], expected: list[str]
) -> None:
    idx = index(
        '{job!="db"}',  # r0: no equality matcher: unindexed, a candidate for every alert
        '{alertname="A"}',  # r1
        '{severity="critical"}',  # r2: the only equality is severity
        '{severity="critical", alertname="A"}',  # r3: alertname wins, wherever it is written
        '{alertname="B", severity="critical"}',  # r4
    )
    assert names(idx.candidates(labels)) == expected


def test_candidates_do_not_grow_with_rules_for_other_alerts() -> None:
    specs = [f'{{alertname="Other{i}", severity="critical"}}' for i in range(1000)]
    idx = index(*specs, '{alertname="Target"}', '{team=~"data|infra"}')
    labels = {"alertname": "Target", "severity": "critical", "team": "data"}
    assert names(idx.candidates(labels)) == ["r1000", "r1001"]
    assert names(idx.match(labels)) == ["r1000", "r1001"]
    assert names(idx.candidates({"alertname": "Other7"})) == ["r7"]  # r1001 is under team


@pytest.mark.parametrize(
    ("spec", "labels", "candidate"),
    [
        ('{job=~"db|cache"}', {"job": "db"}, True),  # under each literal
        ('{job=~"db|cache"}', {"job": "cache"}, True),
        ('{job=~"(db|cache)"}', {"job": "cache"}, True),
        ('{job=~"db|cache"}', {"job": "dbx"}, False),
        ('{job=~"db|cache"}', {}, False),
        ('{alertname=~"Disk.*", severity!="info"}', {"alertname": "DiskFull"}, True),  # prefix
        ('{alertname=~"Disk.*", severity!="info"}', {"alertname": "Disk"}, True),
        ('{alertname=~"Disk.*", severity!="info"}', {"alertname": "NodeDisk"}, False),
        ('{alertname=~"Disk.+"}', {"alertname": "NodeDisk"}, True),  # not filed: tried always
        ('{alertname=~"(Kube|Node).*"}', {"alertname": "Other"}, True),
        ('{job!~"db|cache"}', {"job": "web"}, True),  # a negative regex narrows nothing
    ],
)
def test_rules_without_equality_are_filed_under_literal_regexes(
    spec: str, labels: dict[str, str], candidate: bool
) -> None:
    idx = index('{alertname="A"}', spec)
    assert names(idx.candidates(labels)) == (["r1"] if candidate else [])


@given(
    st.lists(
        st.sampled_from(
            [
                '{alertname="A"}',
                '{alertname="A", job=~"db|web"}',
                '{job=~"db|web"}',
                '{job=~"(db|web)", team!="x"}',
                '{alertname=~"Ab.*"}',
                '{alertname=~"A.*", job!~"db"}',
                '{team="x"}',
                '{team!="x"}',
                '{job=~"d.*|w.*"}',
                '{alertname=~"A|Abc"}',
            ]
        ),
        max_size=12,
    ),
    st.dictionaries(
        st.sampled_from(["alertname", "job", "team"]),
        st.sampled_from(["", "A", "Ab", "Abc", "B", "db", "dbx", "web", "x", "A\n"]),
    ),
)
def test_the_index_finds_exactly_the_rules_that_match(
    specs: list[str], labels: dict[str, str]
) -> None:
    idx = index(*specs)
    assert names(idx.match(labels)) == [r.name for r in idx.rules if r.matches(labels)]


@pytest.mark.parametrize(
    ("spec", "labels", "expected"),
    [
        ('{foo=""}', {"alertname": "A"}, True),
        ('{foo=""}', {"alertname": "A", "foo": "x"}, False),
        ('{alertname="A", foo=""}', {"alertname": "A"}, True),
        ('{foo="", bar="x"}', {"bar": "x"}, True),
        ('{alertname="A", team!="db"}', {"alertname": "A"}, True),
        ('{alertname="A", team!="db"}', {"alertname": "A", "team": "db"}, False),
        ('{alertname="A", team!~"db|infra"}', {"alertname": "A"}, True),
        ('{alertname="A", team!~""}', {"alertname": "A"}, False),
        ('{alertname="A", team=~".*"}', {"alertname": "A"}, True),
        ('{alertname="A", team=~".+"}', {"alertname": "A"}, False),
        ('{team!="db"}', {}, True),
    ],
)
def test_missing_labels_are_empty_strings(
    spec: str, labels: dict[str, str], expected: bool
) -> None:
    idx = index(spec)
    assert names(idx.match(labels)) == (["r0"] if expected else [])


def test_get_by_name() -> None:
    idx = index('{alertname="A"}', '{alertname="B"}')
    found = idx.get("r1")
    assert found is not None
    assert found.matchers == parse_matchers('{alertname="B"}')
    assert idx.get("r2") is None
