"""`remediator docs`: the shipped packs' pages under docs/runbooks/ are what the command writes
today, byte for byte; they read as the seeds' runbooks do (each tier's threshold and action);
they link only inside the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from remediator.alert_rules import load_files
from remediator.config import Config, load_config
from remediator.errors import ConfigError
from remediator.runbook_docs import Where, pages
from tests.peers import REMEDIATOR

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "runbooks"
COMMAND = [
    "docs",
    "--config",
    "examples/remediator.yaml",
    "--alert-rules",
    "alerting/prometheus/rules",
    "--dashboard",
    "alerting/grafana/remediator.json",
    "--out",
    "docs/runbooks",
]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what the pages are made from, with the tokens `make run` would generate."""
    root = tmp_path_factory.mktemp("checkout")
    for part in ("examples", "rules", "alerting"):
        shutil.copytree(ROOT / part, root / part)
    (root / ".state").mkdir()
    for name in ("webhook-token", "api-token"):
        (root / ".state" / name).write_text("example-token\n")
    return root


@pytest.fixture(scope="module")
def regenerated(checkout: Path) -> Path:
    result = subprocess.run(
        [str(REMEDIATOR), *COMMAND],
        capture_output=True,
        text=True,
        cwd=checkout,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return checkout / "docs" / "runbooks"


@pytest.fixture(scope="module")
def config(checkout: Path) -> Config:
    return load_config(checkout / "examples" / "remediator.yaml")


def test_the_committed_pages_are_what_the_command_writes_byte_for_byte(regenerated: Path) -> None:
    written = sorted(p.name for p in regenerated.iterdir())
    assert written == ["cdc.md", "incident.md", "ingestion.md", "migration.md"]
    assert sorted(p.name for p in DOCS.glob("*.md")) == written, "make docs, and commit them"
    for name in written:
        assert (regenerated / name).read_bytes() == (DOCS / name).read_bytes(), (
            f"docs/runbooks/{name} is stale: run `make docs` and commit it"
        )


# The runbooks' own words, tier by tier: the page must show the threshold and the
# action the runbook prescribes in the row of that tier.
SEEDS = [
    # 004 ingestion, 3.4 "Error rate > 5% | Alert team in Slack", "> 10%": page and PAUSE (4.1),
    # "> 20%": roll back (4.2)
    ("ingestion", "ingestion-error-rate", "notify", "> 5 %", []),
    ("ingestion", "ingestion-error-rate", "pause", "> 10 %", ["pause_ingestion"]),
    ("ingestion", "ingestion-error-rate", "rollback", "> 20 %", ["rollback_feature_flag"]),
    # 004: "repeated circuit breaker events" roll back
    (
        "ingestion",
        "ingestion-circuit-open",
        "rollback",
        "3 times within 1h",
        ["rollback_feature_flag"],
    ),
    # 000 migration: "high system load": pause; "critical issue requiring immediate halt": stop
    ("migration", "migration-source-overloaded", "pause", "> 80 %", ["pause_migration"]),
    (
        "migration",
        "migration-source-overloaded",
        "emergency-stop",
        "> 95 %",
        ["emergency_stop_migration"],
    ),
    # 002 CDC: "If FAILED, restart"; "Escalate: if not resolved in 30 minutes"
    ("cdc", "cdc-connector-down", "restart", "after 30m", ["restart_connector"]),
    # 003 incident response: the severity levels as rungs
    ("incident", "incident-high-error-rate", "P3-issue-tracker", "> 1 %", []),
    ("incident", "incident-high-error-rate", "P2-team-channel", "> 5 %", []),
    ("incident", "incident-high-error-rate", "P1-page-on-call", "> 10 %", []),
    ("incident", "incident-high-error-rate", "P0-service-down", "> 50 %", []),
]


@pytest.mark.parametrize(("page", "rule", "tier", "threshold", "actions"), SEEDS)
def test_each_tier_reads_as_the_seed_runbook(
    regenerated: Path, page: str, rule: str, tier: str, threshold: str, actions: list[str]
) -> None:
    row = _tier_row(_section(regenerated / f"{page}.md", rule), tier)
    assert threshold in row
    for action in actions:
        assert f"`{action}`" in row
    if not actions:
        assert "none: people are told" in row


def test_every_tier_of_every_rule_shows_its_threshold_and_its_actions(
    regenerated: Path, config: Config
) -> None:
    for rule in config.rules:
        page = regenerated / f"{Path(rule.source.partition(':')[0]).stem}.md"
        section = _section(page, rule.name)
        for tier in rule.tiers:
            row = _tier_row(section, tier.name)
            if tier.condition is not None:
                assert f"{tier.condition.op} " in row
                assert f"({tier.condition.threshold:g})" in row
            for action in tier.actions:
                assert f"[`{action}`](#action-{action})" in row
                assert f'<a id="action-{action}"></a>' in section
        for step in rule.on_resolved:
            assert f"- runs `{step.action}`" in section


def test_actions_show_their_request_precondition_verification_and_approval(
    regenerated: Path,
) -> None:
    cdc = (regenerated / "cdc.md").read_text()
    assert (
        "`POST kafka-connect/connectors/{connector}/restart?includeTasks=true&onlyFailed=true`"
        in cdc
    )
    assert (
        "**Only if**: `connector {connector} on kafka-connect: state in ['FAILED', 'UNASSIGNED']`"
        in cdc
    )
    ingestion = (regenerated / "ingestion.md").read_text()
    assert (
        "`PATCH feature-flags/v1/flags/ingestion_v2_enabled` with body "
        '`{"allowlist": [], "enabled": false}`' in ingestion
    )
    assert "**Approval**: destructive" in ingestion
    assert "**Budget**: at most 2 starts per 1h of this action" in ingestion
    assert "- runs `resume_ingestion` if `pause_ingestion` ran" in ingestion


def test_the_kill_switch_shows_once_per_incident_where_the_rollback_tier_lists_it_again(
    regenerated: Path,
) -> None:
    section = _section(regenerated / "ingestion.md", "ingestion-error-rate")
    pause, rollback = _tier_row(section, "pause"), _tier_row(section, "rollback")
    assert "once per incident" not in pause
    assert (
        "[`pause_ingestion`](#action-pause_ingestion) (once per incident: not called again if it "
        "already ran)" in rollback
    )
    assert "once per incident" not in rollback.partition("rollback_feature_flag")[2]
    kill_switch = section[section.index("#### `pause_ingestion`") :].partition("\n#### ")[0]
    assert "- **Once per incident**: " in kill_switch
    assert "**Once per incident**" not in section[section.index("#### `resume_ingestion`") :]


def test_tiers_that_page_say_so_and_without_a_policy_the_page_says_nobody_is_called(
    regenerated: Path,
) -> None:
    section = _section(regenerated / "ingestion.md", "ingestion-error-rate")
    assert "**pages**" not in _tier_row(section, "notify")
    assert "**pages**" in _tier_row(section, "pause")
    assert "the tiers that page (`pause`, `rollback`) call nobody" in section
    backlog = _section(regenerated / "ingestion.md", "ingestion-staging-backlog")
    assert "No escalation policy is configured" in backlog
    assert "call nobody" not in backlog


def test_an_escalation_policy_is_shown_level_by_level(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example config's commented `paging` section, switched on: the CDC runbook's path."""
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "R" * 32)
    monkeypatch.setenv("OPSGENIE_API_KEY", "opsgenie-key")
    example = checkout / "examples" / "remediator.yaml"
    lines = example.read_text().splitlines()
    start = lines.index("# paging:")
    for i in range(start, start + 10):
        lines[i] = lines[i][2:]
    paged = example.with_name("paged.yaml")
    paged.write_text("\n".join(lines) + "\n")

    found = {p.name: p.text for p in pages(load_config(paged), [], Where(tmp_path))}

    cdc = _section_text(found["cdc.md"], "cdc-connector-down")
    assert "Reaching `escalate-on-call` calls the escalation policy `on-call`" in cdc
    assert (
        "It is also called when an action fails, an action is interrupted, a verification "
        "fails, a step needs a human, a circuit opens." in cdc
    )
    assert "1. at once: <!subteam^S0ONCALL>, triggers `pagerduty`" in cdc
    assert "2. unacknowledged 30m after level 1: <!subteam^S0TEAMLEAD>, triggers `opsgenie`" in cdc
    assert "3. unacknowledged 30m after level 2: <!subteam^S0INFRAMGR>" in cdc
    backlog = _section_text(found["ingestion.md"], "ingestion-staging-backlog")
    assert (
        "No tier pages; the escalation policy `on-call` is called when an action fails" in backlog
    )


def test_pages_show_the_alerting_rule_expression_and_link_only_inside_the_repository(
    regenerated: Path,
) -> None:
    ingestion = (regenerated / "ingestion.md").read_text()
    assert "sum(rate(ingestion_errors_total[5m]))" in ingestion
    for page in regenerated.iterdir():
        text = page.read_text()
        for target in re.findall(r"\]\(([^)]+)\)", text):
            assert "://" not in target, f"{page.name} links outside: {target}"
            path, _, anchor = target.partition("#")
            if path:
                assert (page.parent / path).resolve().is_file(), f"{page.name}: {target}"
                assert (page.parent / path).resolve().is_relative_to(page.parents[2])
            else:
                assert f'id="{anchor}"' in text or f"\n## {anchor}\n" in text, target


def test_without_alerting_rules_the_page_says_so(config: Config, tmp_path: Path) -> None:
    found = pages(config, [], Where(tmp_path))
    assert "No alerting rule given to `remediator docs` fires this alert." in found[0].text


def test_a_broken_alerting_rule_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: g\n    rules:\n      - alert: A\n        exprr: up\n")
    with pytest.raises(ConfigError) as e:
        load_files([bad])
    assert "bad.yml: groups[0].rules[0].exprr: unknown key 'exprr'" in str(e.value)


def test_docs_prints_to_stdout_without_out(checkout: Path) -> None:
    result = subprocess.run(
        [str(REMEDIATOR), "docs", "--config", "examples/remediator.yaml"],
        capture_output=True,
        text=True,
        cwd=checkout,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("# On-call runbook: ") == 4


def _section(page: Path, rule: str) -> str:
    return _section_text(page.read_text(), rule)


def _section_text(text: str, rule: str) -> str:
    start = text.index(f"\n## {rule}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def _tier_row(section: str, tier: str) -> str:
    rows = [line for line in section.splitlines() if line.startswith(f"| {tier} | ")]
    assert len(rows) == 1, f"no single ladder row for tier {tier!r}"
    return rows[0]
