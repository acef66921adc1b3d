"""The Prometheus alert rules under alerting/prometheus: checked and unit-tested by the real
promtool, and held to the conventions the rest of the project relies on."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from remediator.matchers import parse_matchers
from remediator.metrics import Metrics
from tests.alerting.files import (
    ROOT,
    RULE_FILES,
    RULES_DIR,
    TEST_FILES,
    TESTS_DIR,
    all_alerts,
    load,
    rule_pack_rules,
)
from tests.binaries import require_binary

SEVERITIES = {"P0", "P1", "P2", "P3"}
ANNOTATIONS = {"summary", "description", "runbook_url"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_the_rule_files_exist() -> None:
    names = {p.name for p in RULE_FILES}
    assert {"cdc.yml", "ingestion.yml", "migration.yml", "remediator.yml"} <= names


def test_promtool_check_rules_accepts_every_rule_file() -> None:
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules_rejects_a_broken_rule(tmp_path: Path) -> None:
    """The check has teeth: a rule with a PromQL syntax error fails it."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: rate(up[5m]\n"
    )
    result = promtool("check", "rules", str(broken))
    assert result.returncode != 0
    assert "broken.yml" in result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES), result.stdout


def test_promtool_unit_tests_catch_a_wrong_expectation(tmp_path: Path) -> None:
    """The unit tests have teeth: one expected annotation changed makes promtool fail."""
    source = (TESTS_DIR / "ingestion_test.yml").read_text(encoding="utf-8")
    assert 'error_rate: "0.12"' in source
    changed = source.replace('error_rate: "0.12"', 'error_rate: "0.13"', 1)
    changed = changed.replace("../rules/", f"{RULES_DIR}/")
    (tmp_path / "ingestion_test.yml").write_text(changed, encoding="utf-8")
    result = promtool("test", "rules", str(tmp_path / "ingestion_test.yml"))
    assert result.returncode != 0
    assert 'error_rate="0.13"' in result.stdout + result.stderr


def test_every_rule_file_has_a_unit_test_file() -> None:
    tested = {
        (TESTS_DIR / name).resolve() for path in TEST_FILES for name in load(path)["rule_files"]
    }
    assert {p.resolve() for p in RULE_FILES} <= tested


@pytest.mark.parametrize("alertname", sorted({r["alert"] for r in all_alerts()}))
def test_every_alert_is_tested_firing_and_not_firing(alertname: str) -> None:
    cases = [
        case
        for path in TEST_FILES
        for test in load(path)["tests"]
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == alertname
    ]
    assert any(case.get("exp_alerts") for case in cases), f"{alertname}: no test where it fires"
    assert any(not case.get("exp_alerts") for case in cases), f"{alertname}: none where it doesn't"


@pytest.mark.parametrize("rule", all_alerts(), ids=lambda r: f"{r['alert']}-{r['labels']}")
def test_every_alert_has_a_severity_and_the_annotations_people_read(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["annotations"].keys() >= ANNOTATIONS
    assert rule["annotations"]["runbook_url"].startswith("https://")


def test_alerts_sharing_a_name_differ_in_severity() -> None:
    """Rungs of one alert (IngestionHighErrorRate) must be distinct alerts in Alertmanager."""
    seen: dict[str, set[str]] = {}
    for rule in all_alerts():
        severities = seen.setdefault(rule["alert"], set())
        assert rule["labels"]["severity"] not in severities, rule["alert"]
        severities.add(rule["labels"]["severity"])


@pytest.mark.parametrize("rule", rule_pack_rules(), ids=lambda r: str(r["name"]))
def test_every_rule_pack_rule_has_its_alert_and_value_annotation(rule: dict[str, Any]) -> None:
    """remediator's shipped rules (rules/*.yaml) act on alerts defined here, and the annotation a
    rule reads its ladder's value from is set by every alert rule of that name."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for alert in all_alerts():
        by_name.setdefault(alert["alert"], []).append(alert)
    on_name = [m for m in parse_matchers(rule["match"]) if m.name == "alertname"]
    matched = [name for name in by_name if all(m.matches({"alertname": name}) for m in on_name)]
    assert matched, f"rule {rule['name']!r} matches no alert in alerting/prometheus/rules"
    annotation = (rule.get("value") or {}).get("annotation")
    if annotation is not None:
        for name in matched:
            for alert in by_name[name]:
                assert annotation in alert["annotations"], (name, annotation)


def exported_metric_names() -> set[str]:
    """The sample names the daemon exports, with one rule, action kind and target declared."""
    registry = CollectorRegistry()
    Metrics(registry).declare(["rule"], ["http"], ["target"])
    lines = generate_latest(registry).decode().splitlines()
    return {line.split("{")[0].split(" ")[0] for line in lines if not line.startswith("#")}


def test_the_self_alerts_use_metrics_the_daemon_exports() -> None:
    """Every remediator_* name in remediator.yml is one the daemon exports."""
    text = (RULES_DIR / "remediator.yml").read_text(encoding="utf-8")
    used = set(re.findall(r"\bremediator_[a-z_]+\b", text))
    assert used - exported_metric_names() == set()
