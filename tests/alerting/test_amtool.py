"""alerting/alertmanager: the Alertmanager config checked and its routing tree exercised by the
real amtool; the AlertmanagerConfig example kept in step with it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediator.matchers import Matcher, parse_matchers
from tests.alerting.files import ROOT, all_alerts, load, rule_pack_rules
from tests.binaries import require_binary

CONFIG = ROOT / "alerting" / "alertmanager" / "alertmanager.yml"
OPERATOR_CONFIG = ROOT / "alerting" / "alertmanager" / "alertmanagerconfig.yaml"
PEOPLE = {"oncall-pager", "team-slack", "issue-tracker"}


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("amtool"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return amtool("check-config", str(path))


def receivers_for(**labels: str) -> list[str]:
    """The receivers an alert with these labels reaches, in routing-tree order."""
    pairs = [f"{k}={v}" for k, v in labels.items()]
    result = amtool("config", "routes", "test", f"--config.file={CONFIG}", *pairs)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().split(",")


def test_amtool_check_config_accepts_the_config() -> None:
    result = check_config(CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_amtool_check_config_rejects_an_unknown_key(tmp_path: Path) -> None:
    """The check has teeth: Alertmanager parses strictly, a misspelt key fails."""
    broken = tmp_path / "alertmanager.yml"
    text = CONFIG.read_text(encoding="utf-8")
    broken.write_text(text.replace("send_resolved: true", "send_resolve: true", 1))
    result = check_config(broken)
    assert result.returncode != 0


@pytest.mark.parametrize(
    "alert",
    sorted({(r["alert"], r["labels"]["severity"]) for r in all_alerts()}),
    ids=lambda a: f"{a[0]}-{a[1]}",
)
def test_every_alert_reaches_people_and_only_runbook_alerts_reach_remediator(
    alert: tuple[str, str],
) -> None:
    name, severity = alert
    receivers = receivers_for(alertname=name, severity=severity)
    assert ("remediator" in receivers) == (not name.startswith("Remediator")), receivers
    assert PEOPLE & set(receivers), receivers


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"alertname": "ConnectorDown", "severity": "P1"}, ["remediator", "oncall-pager"]),
        ({"alertname": "IngestionHighErrorRate", "severity": "P2"}, ["remediator", "team-slack"]),
        ({"alertname": "IngestionHighErrorRate", "severity": "P0"}, ["remediator", "oncall-pager"]),
        ({"alertname": "RemediatorDown", "severity": "P2"}, ["team-slack"]),
        ({"alertname": "SomethingElse", "severity": "P3"}, ["issue-tracker"]),
        ({"alertname": "SomethingElse"}, ["team-slack"]),
        ({"alertname": "ConnectorDown"}, ["remediator", "team-slack"]),
    ],
)
def test_routing_examples(labels: dict[str, str], expected: list[str]) -> None:
    assert receivers_for(**labels) == expected


def config() -> Any:
    return load(CONFIG)


def remediator_route(cfg: Any) -> dict[str, Any]:
    (route,) = [r for r in cfg["route"]["routes"] if r.get("receiver") == "remediator"]
    return dict(route)


def test_the_remediator_receiver_is_what_remediator_expects() -> None:
    (receiver,) = [r for r in config()["receivers"] if r["name"] == "remediator"]
    (webhook,) = receiver["webhook_configs"]
    assert webhook["url"] == "http://remediator.remediator.svc:9095/alerts"
    assert webhook["send_resolved"] is True
    assert webhook["max_alerts"] == 0
    authorization = webhook["http_config"]["authorization"]
    assert authorization.get("type", "Bearer") == "Bearer"
    assert authorization["credentials_file"].startswith("/")
    assert "credentials" not in authorization  # never inline


def test_the_remediator_route_continues_and_acts_fast() -> None:
    route = remediator_route(config())
    assert route["continue"] is True
    assert route["group_wait"] == "10s"
    assert route["repeat_interval"] == "4h"


def on_alertname(spec: str | list[str]) -> list[Matcher]:
    """The matchers of a matcher set that look at alertname."""
    return [m for m in parse_matchers(spec) if m.name == "alertname"]


@pytest.mark.parametrize("rule", rule_pack_rules(), ids=lambda r: str(r["name"]))
def test_rule_pack_alerts_are_grouped_by_their_incident_key(rule: dict[str, Any]) -> None:
    """Each alert a shipped rule acts on reaches remediator through a child route whose group_by
    is the rule's incident key, so one incident is one Alertmanager group."""
    names = {r["alert"] for r in all_alerts()}
    on_name = on_alertname(rule["match"])
    acted_on = [n for n in names if all(m.matches({"alertname": n}) for m in on_name)]
    assert acted_on
    key = set(rule.get("incident_key", ["alertname"]))
    for name in acted_on:
        children = [
            child
            for child in remediator_route(config())["routes"]
            if all(m.matches({"alertname": name}) for m in on_alertname(child["matchers"]))
        ]
        assert len(children) == 1, (name, children)
        assert set(children[0]["group_by"]) == key, (name, children[0]["group_by"], key)


def operator_matcher(m: dict[str, str]) -> str:
    return f'{m["name"]}{m.get("matchType", "=")}"{m["value"]}"'


def test_the_alertmanagerconfig_example_matches_the_config() -> None:
    """Same alert names, grouping and timings as alertmanager.yml, in the CRD's spelling."""
    crd = load(OPERATOR_CONFIG)
    assert crd["apiVersion"] == "monitoring.coreos.com/v1alpha1"
    assert crd["kind"] == "AlertmanagerConfig"
    spec, plain = crd["spec"], remediator_route(config())
    route = spec["route"]
    assert route["receiver"] in {r["name"] for r in spec["receivers"]}
    assert [operator_matcher(m) for m in route["matchers"]] == plain["matchers"]
    assert (route["groupWait"], route["groupInterval"], route["repeatInterval"]) == (
        plain["group_wait"],
        plain["group_interval"],
        plain["repeat_interval"],
    )
    crd_children = [
        ([operator_matcher(m) for m in child["matchers"]], child["groupBy"])
        for child in route["routes"]
    ]
    plain_children = [(child["matchers"], child["group_by"]) for child in plain["routes"]]
    assert crd_children == plain_children
    for matcher in route["matchers"] + [m for c in route["routes"] for m in c["matchers"]]:
        assert matcher.get("matchType", "=") in {"=", "!=", "=~", "!~"}


def test_the_alertmanagerconfig_webhook_reads_its_token_from_a_secret() -> None:
    spec = load(OPERATOR_CONFIG)["spec"]
    (receiver,) = spec["receivers"]
    (webhook,) = receiver["webhookConfigs"]
    assert webhook["sendResolved"] is True
    assert webhook["maxAlerts"] == 0
    assert webhook["url"].endswith(":9095/alerts")
    authorization = webhook["httpConfig"]["authorization"]
    assert authorization["type"] == "Bearer"
    assert set(authorization["credentials"]) == {"name", "key"}


def test_the_alertmanagerconfig_documents_the_namespace_caveat() -> None:
    text = OPERATOR_CONFIG.read_text(encoding="utf-8")
    assert 'namespace="<namespace of this object>"' in text
    assert "alertmanagerConfigMatcherStrategy.type: None" in text
    assert yaml.safe_load(text)["metadata"]["namespace"]
