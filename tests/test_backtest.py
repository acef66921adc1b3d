"""`remediator backtest` against a real Prometheus (Debian's 2.42) whose TSDB was backfilled with
`promtool tsdb create-blocks-from openmetrics`: a week of error-rate, connector-state and lag
series, and the ALERTS series of what fired (tests/history.py). Its actions match the replay of
the same alerts; with --alert-rules a lower threshold fires more, as predicted."""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from remediator.alert_rules import AlertingRule, load_files
from remediator.backtest import Prometheus, backtest, firing
from remediator.clock import iso
from remediator.config import Config, load_config
from remediator.replay import Result, decide
from remediator.report import outcomes
from remediator.trust import default_tls
from tests.history import Fired, Week, backfill, fired, openmetrics, recent_week, rules, rules_file
from tests.payloads import fingerprint, notification
from tests.peers import REMEDIATOR, prometheus
from tests.test_replay import ROOT, main_config

pytestmark = pytest.mark.e2e

LADDER = "alertname=IngestionHighErrorRate"
SINK = "alertname=ConnectorDown, connector=orders-sink"
LAG = "alertname=HighReplicationLag, connector=orders-source"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def history(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[str, Week]]:
    workdir = tmp_path_factory.mktemp("prometheus")
    week = recent_week(time.time())
    backfill(openmetrics(week, fired(week, rules())), workdir)
    (workdir / "alerts.yml").write_text(rules_file(rules()))
    setup = "global: {scrape_interval: 1m, evaluation_interval: 1m}\nrule_files: [alerts.yml]\n"
    async with prometheus(workdir, setup) as url:
        yield url, week


@pytest.fixture
def config(write_config: Callable[..., Path], tmp_path: Path) -> Config:
    urls = {name: "http://127.0.0.1:9" for name in ("ingestion-config", "feature-flags")}
    urls |= {"kafka-connect": "http://127.0.0.1:9", "alertmanager": "http://127.0.0.1:9"}
    ingestion = ROOT / "rules" / "ingestion.yaml"
    return load_config(write_config(main_config(tmp_path, urls, 30, ingestion)))


async def run(config: Config, url: str, week: Week, rules_path: Path | None = None) -> Result:
    given = load_files([rules_path]) if rules_path else None
    async with httpx.AsyncClient(verify=default_tls(), timeout=60) as client:
        return await backtest(config, Prometheus(url, client), week.start, week.end, 60.0, given)


def actions(result: Result) -> list[tuple[Any, ...]]:
    return sorted((*key, outcome) for key, outcome in outcomes(result.timeline).items())


def decisions(result: Result) -> list[tuple[str | None, str, str]]:
    """When each incident opened, climbed and resolved."""
    return [
        (iso(line.at), line.incident, line.event)
        for line in result.timeline
        if line.event in ("opened", "escalated", "resolved")
    ]


def ladder(n: int) -> list[tuple[Any, ...]]:
    """The kill switch pauses at > 10 % and, once per incident, is not called again when the
    rollback tier lists it (runbook 4.2); the flag rollback waits for a person."""
    return [
        ("ingestion-error-rate", LADDER, n, "on_resolved", "resume_ingestion", "ran"),
        ("ingestion-error-rate", LADDER, n, "pause", "pause_ingestion", "ran"),
        ("ingestion-error-rate", LADDER, n, "rollback", "pause_ingestion", "not repeated"),
        ("ingestion-error-rate", LADDER, n, "rollback", "rollback_feature_flag", "approval asked"),
    ]


# What a person reads off tests/history.py: two ladders (the 9 % plateau of day 2 is a third
# incident that only notifies), the connector restarted once and then held by the cooldown, the
# lag of day 5 above 10,000 for 20 minutes (notify; it would pause after 30).
EXPECTED = sorted(
    ladder(1)
    + ladder(3)
    + [
        ("cdc-connector-down", SINK, 1, "restart", "restart_connector", "ran"),
        ("cdc-connector-down", SINK, 2, "restart", "restart_connector", "refused: cooldown"),
    ]
)


def alertmanager_sends(alerts: list[Fired]) -> list[tuple[int, float, str]]:
    """The notifications for these alerts, built here the way Alertmanager groups them (by
    alertname, each carrying the group's firing alerts): the replay's input."""
    moments = sorted({a.start for a in alerts} | {a.end for a in alerts})
    journal: list[tuple[int, float, str]] = []
    for at in moments:
        changed = [a for a in alerts if at in (a.start, a.end)]
        for name in sorted({a.labels["alertname"] for a in changed}):
            group = [a for a in alerts if a.labels["alertname"] == name and a.start <= at < a.end]
            ended = [a for a in changed if a.end == at and a.labels["alertname"] == name]
            body = notification(*(_alert(a, at) for a in group + ended))
            journal.append((len(journal) + 1, at, json.dumps(body)))
    return journal


def _alert(a: Fired, at: float) -> dict[str, Any]:
    resolved = a.end <= at
    return {
        "status": "resolved" if resolved else "firing",
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": iso(a.start),
        "endsAt": iso(a.end) if resolved else "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": fingerprint(a.labels),
    }


async def test_the_backtest_of_alerts_series_matches_the_replay_of_the_same_alerts(
    history: tuple[str, Week], config: Config
) -> None:
    url, week = history

    result = await run(config, url, week)
    replayed = await decide(config, alertmanager_sends(fired(week, rules())), week.start, week.end)

    assert actions(result) == EXPECTED
    assert actions(replayed) == EXPECTED
    assert result.summary.incidents == replayed.summary.incidents == 3 + 2 + 1
    assert decisions(result) == decisions(replayed)  # the same times, to the minute
    assert result.notes[0].startswith("10 alerts from ALERTS")
    assert any(
        "annotations are the rule's templates rendered again" in a for a in result.assumptions
    )


async def test_the_alerting_rules_evaluated_with_their_for_give_the_same_alerts(
    history: tuple[str, Week], config: Config, tmp_path: Path
) -> None:
    path = tmp_path / "alerts.yml"
    path.write_text(rules_file(rules()))

    url, week = history
    result = await run(config, url, week, path)

    assert actions(result) == EXPECTED
    assert result.notes[0].startswith("10 alerts from the alert rules given")
    replayed = await decide(config, alertmanager_sends(fired(week, rules())), week.start, week.end)
    assert decisions(result) == decisions(replayed)


async def test_a_lower_threshold_fires_more_as_predicted(
    history: tuple[str, Week], config: Config, tmp_path: Path
) -> None:
    """HighReplicationLag at > 5,000 instead of > 10,000: day 3's 8,000 fires too (at 08:10, for
    40 minutes), so its incident climbs after 30 minutes to pause the sink and silence
    ConnectorDown, and on resolve resumes and lifts the silence. Day 5's is now the second."""
    url, week = history
    path = tmp_path / "lower.yml"
    path.write_text(rules_file(rules(lag_threshold=5_000)))

    result = await run(config, url, week, path)

    assert result.notes[0].startswith("11 alerts from the alert rules given")
    more = [
        ("cdc-replication-lag", LAG, 1, "pause-sink", "pause_sink_connector", "ran"),
        ("cdc-replication-lag", LAG, 1, "pause-sink", "silence_sink_connector_down", "ran"),
        ("cdc-replication-lag", LAG, 1, "on_resolved", "resume_sink_connector", "ran"),
        ("cdc-replication-lag", LAG, 1, "on_resolved", "unsilence_sink_connector_down", "ran"),
    ]
    assert actions(result) == sorted(EXPECTED + more)
    [climb] = [
        line
        for line in result.timeline
        if line.rule == "cdc-replication-lag" and line.event == "escalated"
    ]
    assert climb.at == week.at(3, 8, 40)


def test_the_command_prints_json_and_names_an_unreachable_prometheus(
    history: tuple[str, Week], config: Config
) -> None:
    url, week = history
    command = [
        str(REMEDIATOR),
        "backtest",
        "--config",
        str(config.path),
        "--from",
        iso(week.start) or "",
        "--to",
        iso(week.end) or "",
    ]

    found = subprocess.run(
        [*command, "--prometheus", url, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    down = subprocess.run(
        [*command, "--prometheus", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert found.returncode == 0, found.stderr
    report = json.loads(found.stdout)
    # each ladder calls the kill switch twice (pause, resume); the connector restarts once
    assert report["summary"]["actions_total"] == 2 * 2 + 1
    assert report["summary"]["incidents"] == 6
    assert len(report["summary"]["approvals"]) == 2
    assert (down.returncode, down.stdout) == (1, "")
    assert down.stderr.startswith("cannot reach Prometheus at http://127.0.0.1:9")
    assert math.isfinite(report["summary"]["busiest_hour"]["actions"])


# -- the alert states, without Prometheus ----------------------------------------------------------


def test_for_and_keep_firing_for_as_prometheus_applies_them() -> None:
    rule = AlertingRule("A", "x > 1", for_=120.0)
    present = {t: 2.0 for t in (60.0, 120.0, 180.0, 240.0, 360.0, 420.0, 480.0)}
    # pending at 60, firing at 180 (held 120 s), resolved at 300; pending again at 360, fires 480
    assert firing(rule, present, 60.0, 0.0, 600.0) == [(180.0, 300.0), (480.0, 540.0)]
    keep = AlertingRule("A", "x > 1", for_=120.0, keep_firing_for=60.0)
    # the gap at 300 is bridged; absent from 540, it resolves once absent for 60 s: at 600
    assert firing(keep, present, 60.0, 0.0, 600.0) == [(180.0, 600.0)]
    # still firing at the end of the range
    assert firing(rule, present, 60.0, 0.0, 480.0) == [(180.0, 300.0), (480.0, None)]
