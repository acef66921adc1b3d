"""`remediator replay`: a day recorded by the running daemon (the ingestion ladder twice, a
flapping connector, a storm of failed connectors), replayed from its journal through the same
rules to exactly the actions the audit recorded, and through edited rules to the differences a
person predicts; the live database is byte for byte what it was."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from remediator.clock import FakeClock, iso
from remediator.config import load_config
from remediator.replay import replay
from remediator.report import Difference
from remediator.sandbox import run_timers
from tests.conftest import Running, StartDaemon, base_config
from tests.payloads import fingerprint, notification
from tests.peers import REMEDIATOR
from tests.standins import ConfigService, Connector, KafkaConnect

ROOT = Path(__file__).resolve().parent.parent
DAY = 1_795_305_600.0  # 2026-11-22T00:00:00Z
HOUR = 3600.0
LADDER = "alertname=IngestionHighErrorRate"
STORM = [f"storm-{i:02d}" for i in range(12)]  # more than guardrails.storm.incidents (10)
FLAPPY = "orders-sink"
KEY = "alertname=ConnectorDown, connector={}"


def main_config(tmp_path: Path, urls: dict[str, str], budget: int, ingestion: Path) -> str:
    (tmp_path / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
    )
    extra = (
        "  ingestion-cluster: {kubernetes: {kubeconfig: kubeconfig}}\n"
        f"guardrails: {{budget: {{max: {budget}, per: 1h}}}}\n"
        f"rule_files: [{ingestion}, {ROOT / 'rules' / 'cdc.yaml'}]\n"
    )
    return base_config(urls, extra)


class Day:
    """The running daemon, on a fake clock moved through the day; timers run when they are due,
    as APScheduler runs them."""

    def __init__(self, running: Running, clock: FakeClock, connect: KafkaConnect) -> None:
        self.running, self.clock, self.connect = running, clock, connect

    async def at(self, when: float) -> None:
        await run_timers(self.running.daemon.timers, self.clock, when, self.running.settle)

    async def post(self, when: float, *alerts: dict[str, Any]) -> None:
        await self.at(when)
        response = await self.running.post_alerts(notification(*alerts))
        assert response.status_code == 200, response.text
        await self.running.settle()

    async def ladder(self, start: float) -> None:
        """IngestionHighErrorRate climbs 7 %, 12 %, 23 % (one instance per rung, as
        alerting/prometheus/rules/ingestion.yml fires them), then resolves."""
        rungs = [("P2", "0.07"), ("P1", "0.12"), ("P0", "0.23")]
        fired = [
            alert("IngestionHighErrorRate", start + 300 * i, {"error_rate": rate}, severity=sev)
            for i, (sev, rate) in enumerate(rungs)
        ]
        for i in range(len(fired)):
            await self.post(start + 300 * i, *fired[: i + 1])
        await self.post(start + 1800, *(resolve(a, start + 1800) for a in fired))

    async def flap(self, start: float) -> None:
        """One connector fails three times in half an hour: each failure a new alert instance."""
        for i in range(3):
            began = start + 600 * i
            self.connect.connectors[FLAPPY] = Connector("FAILED", ["FAILED"])
            down = alert("ConnectorDown", began, connector=FLAPPY, severity="P1")
            await self.post(began, down)
            await self.post(began + 180, resolve(down, began + 180))

    async def storm(self, start: float) -> None:
        fired = [
            alert("ConnectorDown", start + 5 * i, connector=name, severity="P1")
            for i, name in enumerate(STORM)
        ]
        for i, down in enumerate(fired):
            await self.post(start + 5 * i, down)
        for down in fired:
            await self.post(start + 1200, resolve(down, start + 1200))


def alert(
    name: str, starts: float, annotations: dict[str, str] | None = None, **labels: str
) -> dict[str, Any]:
    all_labels = {"alertname": name, **labels}
    return {
        "status": "firing",
        "labels": all_labels,
        "annotations": annotations or {},
        "startsAt": iso(starts),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.test:9090/graph",
        "fingerprint": fingerprint(all_labels),
    }


def resolve(fired: dict[str, Any], at: float) -> dict[str, Any]:
    return {**fired, "status": "resolved", "endsAt": iso(at)}


@pytest.fixture
async def recorded_day(
    tmp_path: Path, start_daemon: StartDaemon, write_config: Callable[..., Path]
) -> AsyncIterator[Path]:
    """Runs the day through the daemon, stops it, and yields its main config."""
    services = ConfigService(), ConfigService()
    connect = KafkaConnect({name: Connector("FAILED", ["FAILED"]) for name in STORM})
    servers = [services[0].server, services[1].server, connect.server]
    for server in servers:
        await server.start()
    urls = {
        "ingestion-config": services[0].server.url,
        "feature-flags": services[1].server.url,
        "kafka-connect": connect.server.url,
        "alertmanager": "http://127.0.0.1:9",  # the pack's silences are not part of this day
    }
    path = write_config(main_config(tmp_path, urls, 30, ROOT / "rules" / "ingestion.yaml"))
    clock = FakeClock(DAY)
    running = await start_daemon(path, clock)
    day = Day(running, clock, connect)
    await day.ladder(DAY + 2 * HOUR)
    await day.flap(DAY + 6 * HOUR)
    await day.storm(DAY + 10 * HOUR)
    await day.ladder(DAY + 14 * HOUR)
    await day.at(DAY + 24 * HOUR)
    await running.daemon.stop()
    yield path
    for server in servers:
        await server.stop()


def ladder(n: int, *, pause_at_pause: bool = True) -> list[tuple[Any, ...]]:
    """The ladder's actions: the kill switch runs once per incident, at the first tier that
    lists it; the rollback tier lists it again (runbook 4.2) and does not call it twice."""
    at_rollback = "not repeated" if pause_at_pause else "ran"
    rows = [
        ("ingestion-error-rate", LADDER, n, "on_resolved", "resume_ingestion", "ran"),
        ("ingestion-error-rate", LADDER, n, "rollback", "pause_ingestion", at_rollback),
        ("ingestion-error-rate", LADDER, n, "rollback", "rollback_feature_flag", "approval asked"),
    ]
    if pause_at_pause:
        rows.insert(1, ("ingestion-error-rate", LADDER, n, "pause", "pause_ingestion", "ran"))
    return rows


def flapping() -> list[tuple[Any, ...]]:
    rows = [("cdc-connector-down", KEY.format(FLAPPY), 1, "restart", "restart_connector", "ran")]
    rows += [
        ("cdc-connector-down", KEY.format(FLAPPY), n, "restart", "restart_connector", outcome)
        for n, outcome in ((2, "refused: cooldown"), (3, "refused: cooldown"))
    ]
    return rows


def storm(ran: int = len(STORM)) -> list[tuple[Any, ...]]:
    return [
        (
            "cdc-connector-down",
            KEY.format(name),
            1,
            "restart",
            "restart_connector",
            "ran" if i < ran else "refused: budget",
        )
        for i, name in enumerate(STORM)
    ]


def by_side(differences: list[Difference], side: str) -> list[tuple[Any, ...]]:
    return sorted(
        (d.rule, d.key, d.occurrence, d.tier, d.action, getattr(d, side))
        for d in differences
        if getattr(d, side) is not None
    )


def digest(path: Path) -> dict[str, str]:
    """Every file beside the database (the -wal and -shm too), by content."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


async def test_the_journal_replays_to_exactly_the_actions_the_audit_recorded(
    recorded_day: Path,
) -> None:
    config = load_config(recorded_day)
    state = config.store_path.parent
    before = digest(state)

    result = await replay(config, config.store_path, DAY, DAY + 24 * HOUR, compare=True)

    assert digest(state) == before
    assert result.differences is not None
    expected = sorted(ladder(1) + flapping() + storm() + ladder(2))
    assert by_side(result.differences, "live") == expected  # what the daemon did, one by one
    assert by_side(result.differences, "replay") == expected  # and the replay, one by one
    assert all(d.same for d in result.differences)
    s = result.summary
    assert (s.notifications, s.incidents) == (4 + 6 + 24 + 4, 1 + 3 + len(STORM) + 1)
    assert s.actions == {  # per ladder: pause at 12 % and resume; 23 % does not pause again
        ("ingestion-error-rate", "ingestion-config"): 4,
        ("cdc-connector-down", "kafka-connect"): 1 + len(STORM),
    }
    assert s.refusals == {"cooldown": 2}
    assert [a.action for a in s.approvals] == ["rollback_feature_flag"] * 2
    assert s.busiest_hour == (DAY + 10 * HOUR, len(STORM))
    assert any(line.event == "storm_started" for line in result.timeline)


async def test_edited_rules_replay_to_the_differences_a_person_predicts(
    recorded_day: Path, tmp_path: Path
) -> None:
    """Pause moved from > 10 % to > 15 %: 12 % no longer pauses, so each ladder loses its pause
    tier's pause_ingestion, and 23 % pauses in the rollback tier instead (live, the kill switch
    was not repeated there: it had run at 12 %). The budget lowered from 30 to 5 an hour: of the
    storm's twelve restarts within the hour, five run and seven are refused. Nothing else
    changes."""
    live = load_config(recorded_day)
    text = (ROOT / "rules" / "ingestion.yaml").read_text()
    assert text.count('when: "> 10%"') == 1
    edited_rules = tmp_path / "edited" / "ingestion.yaml"
    edited_rules.parent.mkdir()
    edited_rules.write_text(text.replace('when: "> 10%"', 'when: "> 15%"'))
    urls = {name: target.url for name, target in live.targets.items() if target.url}
    edited = tmp_path / "edited" / "remediator.yaml"
    edited.write_text(main_config(edited.parent, urls, 5, edited_rules))
    before = digest(live.store_path.parent)

    result = await replay(load_config(edited), live.store_path, DAY, DAY + 24 * HOUR, compare=True)

    assert digest(live.store_path.parent) == before
    assert result.differences is not None
    changed = [d for d in result.differences if not d.same]
    lost_pauses: list[tuple[str, str, int, str, str, str, str | None]] = [
        ("ingestion-error-rate", LADDER, n, "pause", "pause_ingestion", "ran", None) for n in (1, 2)
    ]
    paused_at_rollback: list[tuple[str, str, int, str, str, str, str | None]] = [
        ("ingestion-error-rate", LADDER, n, "rollback", "pause_ingestion", "not repeated", "ran")
        for n in (1, 2)
    ]
    refused: list[tuple[str, str, int, str, str, str, str | None]] = [
        (
            "cdc-connector-down",
            KEY.format(name),
            1,
            "restart",
            "restart_connector",
            "ran",
            "refused: budget",
        )
        for name in STORM[5:]
    ]
    assert sorted(
        (d.rule, d.key, d.occurrence, d.tier, d.action, d.live, d.replay) for d in changed
    ) == sorted(lost_pauses + paused_at_rollback + refused)
    assert result.summary.budgets_hit == {("cdc-connector-down", "restart_connector"): 7}
    assert by_side(result.differences, "replay") == sorted(
        ladder(1, pause_at_pause=False)
        + flapping()
        + storm(ran=5)
        + ladder(2, pause_at_pause=False)
    )


def test_the_command_prints_the_timeline_summary_and_json_and_writes_nothing(
    recorded_day: Path,
) -> None:
    config = load_config(recorded_day)
    before = digest(config.store_path.parent)
    command = [
        str(REMEDIATOR),
        "replay",
        "--config",
        str(recorded_day),
        "--from",
        iso(DAY) or "",
        "--to",
        iso(DAY + 24 * HOUR) or "",
        "--compare",
    ]

    text = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    data = subprocess.run(
        [*command, "--json"], capture_output=True, text=True, timeout=120, check=False
    )

    assert digest(config.store_path.parent) == before
    assert (text.returncode, data.returncode) == (0, 0), text.stderr + data.stderr
    assert text.stderr == ""  # no progress bar off a terminal
    out = text.stdout
    escalations = [
        line.split()
        for line in out.splitlines()
        if "[alertname=IngestionHighErrorRate] #1" in line and " escalated " in line
    ]
    assert [words[:2] for words in escalations] == [
        ["2026-11-22", "02:05:00Z"],
        ["2026-11-22", "02:10:00Z"],
    ]
    assert "refused: cooldown:" in out
    assert "Busiest hour: 2026-11-22 10:00:00Z, 12 actions" in out
    assert "Compared with the audit: 23 the same, 0 different" in out
    report = json.loads(data.stdout)
    # two ladders of two kill-switch calls each (pause, resume), one restart per connector
    assert report["summary"]["actions_total"] == 2 * 2 + 1 + len(STORM)
    assert report["summary"]["busiest_hour"] == {"start": "2026-11-22T10:00:00.000Z", "actions": 12}
    assert all(row["same"] for row in report["compare"])


def test_a_bad_time_is_a_clear_error(recorded_day: Path) -> None:
    result = subprocess.run(
        [str(REMEDIATOR), "replay", "--config", str(recorded_day), "--from", "yesterday"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "invalid time 'yesterday' (RFC 3339, Unix seconds, now or now-DURATION)\n"
    )
