"""The CDC runbook's "connector down" end to end, with the real Prometheus and Alertmanager.

Prometheus (Debian's binary, 1 s scrape and evaluation intervals) scrapes a Kafka Connect
stand-in that exports `connector_state` and evaluates the shipped ConnectorDown alert
(alerting/prometheus/rules/cdc.yml, its `for:` shortened to 0s). Alertmanager (Debian's binary)
runs the shipped alertmanager.yml, timings shortened to 1 s, its remediator receiver pointed at
the daemon with the bearer token from a credentials_file, and the people's receivers at a
recorder. remediator runs the shipped rule pack rules/cdc.yaml unchanged, its Slack messages go
to a Slack Web API stand-in.

The sink connector fails; the alert fires, Alertmanager posts it, remediator checks the
connector is FAILED (the pack's precondition), restarts it over Connect's REST API, and the
stand-in's restart makes it RUNNING. The metric goes back to 1, the alert resolves, Alertmanager
sends the resolution, the incident closes, and the pack's verification (every 10s) sees the
connector RUNNING. Slack holds one parent message for the incident, updated in place to resolved,
with the restart, the resolution and the verification in its thread.

Every step is awaited by polling with a timeout; the timeline is printed (pytest -s shows it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from remediator.trust import default_tls
from tests.conftest import WEBHOOK_TOKEN, Running, StartDaemon, base_config, slack_config
from tests.peers import alertmanager, free_port, prometheus
from tests.slack_standin import Message, SlackAPI
from tests.standins import Connector, KafkaConnect, Recorder

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ALERT_RULES = ROOT / "alerting" / "prometheus" / "rules" / "cdc.yml"
ALERTMANAGER_CONFIG = ROOT / "alerting" / "alertmanager" / "alertmanager.yml"
RULE_PACK = ROOT / "rules" / "cdc.yaml"
SINK, SOURCE = "postgres-sink-connector", "sqlserver-source-connector"
STEP_TIMEOUT = 30.0  # generous: Prometheus needs up to ~5 s to discover its targets
PEOPLE = ("oncall-pager", "team-slack", "issue-tracker")

T = TypeVar("T")


class Timeline:
    """Each step's duration, and its time since the connector failed."""

    def __init__(self) -> None:
        self.started = self.last = time.monotonic()
        self.failed_at: float | None = None
        self.steps: list[tuple[str, float, float | None]] = []

    async def wait(self, step: str, check: Callable[[], Awaitable[T | None]]) -> T:
        """Poll `check` until it returns something true; return that."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            found = await check()
            if found:
                self.mark(step)
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {STEP_TIMEOUT:g}s waiting for: {step}")
            await asyncio.sleep(0.05)

    def mark(self, step: str) -> None:
        now = time.monotonic()
        since_failure = None if self.failed_at is None else now - self.failed_at
        self.steps.append((step, now - self.last, since_failure))
        self.last = now

    def report(self) -> str:
        lines = [f"{'step':<64} {'took':>6} {'since failure':>14}"]
        for step, took, since in self.steps:
            at = "" if since is None else f"{since:.2f}s"
            lines.append(f"{step:<64} {took:>5.2f}s {at:>14}")
        lines.append(f"{'total':<64} {time.monotonic() - self.started:>5.2f}s")
        return "\n".join(lines)


# -- the peers' configuration, from the shipped files -------------------------------------------


def alert_rules() -> str:
    """alerting/prometheus/rules/cdc.yml with ConnectorDown's `for: 5m` shortened to 0s."""
    rules = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))
    [down] = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "ConnectorDown"]
    assert down["expr"] == "connector_state == 0"
    down["for"] = "0s"
    return yaml.safe_dump(rules, sort_keys=False)


def prometheus_config(connect_port: int, alertmanager_port: int) -> str:
    return f"""\
        global: {{scrape_interval: 1s, evaluation_interval: 1s}}
        rule_files: [cdc.yml]
        alerting:
          alertmanagers:
            - static_configs: [{{targets: ["127.0.0.1:{alertmanager_port}"]}}]
        scrape_configs:
          - job_name: kafka-connect
            static_configs: [{{targets: ["127.0.0.1:{connect_port}"]}}]
        """


def alertmanager_config(remediator: str, token_file: Path, people: str) -> str:
    """alerting/alertmanager/alertmanager.yml with 1 s timings, the remediator receiver pointed at
    the daemon and every people's receiver at a recorder (one path per receiver)."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    route = config["route"]
    [to_remediator] = [r for r in route["routes"] if r.get("receiver") == "remediator"]
    for node in (route, to_remediator):
        node.update(group_wait="1s", group_interval="1s")
    receivers = {r["name"]: r for r in config["receivers"]}
    [webhook] = receivers["remediator"]["webhook_configs"]
    assert webhook["send_resolved"] is True
    webhook["url"] = f"{remediator}/alerts"
    webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    assert set(receivers) == {"remediator", *PEOPLE}
    config["receivers"] = [
        receivers["remediator"],
        *({"name": name, "webhook_configs": [{"url": f"{people}/{name}"}]} for name in PEOPLE),
    ]
    return yaml.safe_dump(config, sort_keys=False)


# -- reading the peers --------------------------------------------------------------------------


async def query(client: httpx.AsyncClient, prom: str, expr: str) -> list[dict[str, Any]]:
    r = await client.get(f"{prom}/api/v1/query", params={"query": expr})
    body = r.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def connector_state(client: httpx.AsyncClient, prom: str) -> float | None:
    found = await query(client, prom, f'connector_state{{connector="{SINK}"}}')
    return float(found[0]["value"][1]) if found else None


async def firing_alerts(client: httpx.AsyncClient, prom: str) -> list[dict[str, Any]]:
    alerts = (await client.get(f"{prom}/api/v1/alerts")).json()["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == "ConnectorDown"]


def first_line(message: Message) -> str:
    return message.text.split("\n")[0]


def latest(message: Message) -> dict[str, Any]:
    """The message as it reads now: its last update, or the post."""
    if message.updates:
        return message.updates[-1]
    return {"text": message.text, "attachments": message.attachments}


def connect_calls(connect: KafkaConnect) -> list[str]:
    """What remediator asked Kafka Connect's REST API (Prometheus's scrapes left out)."""
    return [
        f"{s.method} {s.path}" + (f"?{s.query}" if s.query else "")
        for s in connect.server.seen
        if s.path != "/metrics"
    ]


# -- the scenario -------------------------------------------------------------------------------


async def test_a_failed_connector_is_restarted_and_resolved_through_the_real_stack(
    tmp_path: Path,
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    slack_api: SlackAPI,
    recorder: Callable[..., Awaitable[Recorder]],
) -> None:
    timeline = Timeline()
    connect = KafkaConnect(
        {SINK: Connector("RUNNING", ["RUNNING", "RUNNING"]), SOURCE: Connector()}
    )
    await connect.server.start()
    try:
        people = await recorder()
        alertmanager_port = free_port()
        targets = {
            "kafka-connect": connect.server.url,
            "alertmanager": f"http://127.0.0.1:{alertmanager_port}",  # the pack's silences
        }
        main = base_config(targets, f"rule_files: [{RULE_PACK}]\n" + slack_config(slack_api))
        running = await start_daemon(write_config(main))
        remediator = f"http://127.0.0.1:{running.daemon.port}"
        token_file = tmp_path / "webhook-token"
        token_file.write_text(WEBHOOK_TOKEN + "\n")
        (tmp_path / "prometheus").mkdir()
        (tmp_path / "prometheus" / "cdc.yml").write_text(alert_rules())
        timeline.mark("stand-ins and remediator started")

        async with (
            alertmanager(
                tmp_path / "alertmanager",
                alertmanager_config(remediator, token_file, people.server.url),
                port=alertmanager_port,
            ),
            prometheus(
                tmp_path / "prometheus",
                prometheus_config(connect.server.port, alertmanager_port),
            ) as prom,
            httpx.AsyncClient(verify=default_tls(), timeout=5) as client,
        ):
            timeline.mark("Alertmanager and Prometheus ready")
            await scenario(timeline, client, prom, connect, running, slack_api, people)
    finally:
        print("\n" + timeline.report())
        await connect.server.stop()


async def scenario(
    timeline: Timeline,
    client: httpx.AsyncClient,
    prom: str,
    connect: KafkaConnect,
    running: Running,
    slack_api: SlackAPI,
    people: Recorder,
) -> None:
    async def active_alertmanagers() -> list[Any]:
        found = (await client.get(f"{prom}/api/v1/alertmanagers")).json()["data"]
        return list(found["activeAlertmanagers"])

    async def state_is(value: float) -> bool:
        return await connector_state(client, prom) == value

    async def incidents(status: str) -> list[dict[str, Any]]:
        return list((await running.api(f"/api/v1/incidents?status={status}"))["items"])

    async def restart_seen() -> bool:
        return any("/restart" in call for call in connect_calls(connect))

    async def verified() -> dict[str, Any] | None:
        [claim] = (await running.api("/api/v1/actions"))["items"]
        return claim if claim["verify_status"] == "passed" else None

    async def slack_told_it_all() -> bool:
        parents = slack_api.parents()
        return len(parents) == 1 and len(slack_api.thread(parents[0])) >= 3

    await timeline.wait("Prometheus scrapes the connector: RUNNING (1)", lambda: state_is(1))
    await timeline.wait("Prometheus knows its Alertmanager", active_alertmanagers)

    connect.connectors[SINK] = Connector("FAILED", ["FAILED", "RUNNING"])
    timeline.failed_at = time.monotonic()
    timeline.mark("the sink connector FAILS in Kafka Connect")

    await timeline.wait("Prometheus scrapes connector_state 0", lambda: state_is(0))
    [alert] = await timeline.wait(
        "ConnectorDown fires in Prometheus", lambda: firing_alerts(client, prom)
    )
    assert alert["state"] == "firing"
    assert alert["labels"]["connector"] == SINK
    [opened] = await timeline.wait(
        "Alertmanager posts it; remediator opens an incident", lambda: incidents("open")
    )
    assert opened["rule"] == "cdc-connector-down"
    assert opened["key"] == {"alertname": "ConnectorDown", "connector": SINK}
    await timeline.wait("remediator restarts the connector (REST)", restart_seen)
    assert connect.connectors[SINK] == Connector("RUNNING", ["RUNNING", "RUNNING"])

    await timeline.wait("Prometheus scrapes connector_state 1 again", lambda: state_is(1))
    await timeline.wait(
        "ConnectorDown resolves in Prometheus",
        lambda: _none_firing(firing_alerts(client, prom)),
    )
    [closed] = await timeline.wait(
        "Alertmanager sends the resolution; the incident closes", lambda: incidents("resolved")
    )
    assert closed["id"] == opened["id"]
    assert await incidents("open") == []
    claim = await timeline.wait("the restart is verified (the pack polls every 10s)", verified)
    await timeline.wait("Slack has the incident's thread", slack_told_it_all)
    await running.daemon.outbox.drain()

    assert connect_calls(connect) == [
        f"GET /connectors/{SINK}/status",  # the precondition: FAILED, so a restart is right
        f"POST /connectors/{SINK}/restart?includeTasks=true&onlyFailed=true",
        f"GET /connectors/{SINK}/status",  # the verification: RUNNING, every task RUNNING
    ]
    assert (claim["action"], claim["status"], claim["step"]) == (
        "restart_connector",
        "succeeded",
        "restart",
    )
    await assert_decisions(running)
    assert_slack_thread(slack_api)
    assert_people_were_paged_too(people)


async def _none_firing(alerts: Awaitable[list[dict[str, Any]]]) -> bool:
    return not await alerts


async def assert_decisions(running: Running) -> None:
    history = (await running.daemon.store.history(100, None)).items
    decisions = [(e["event"], e["tier"]) for e in reversed(history) if e["kind"] == "decision"]
    assert decisions == [("opened", "restart"), ("resolved", "restart")]
    metrics = (await running.client.get("/metrics")).text
    assert 'remediator_notifications_received_total{outcome="unauthorized"} 0.0' in metrics
    assert 'remediator_actions_total{kind="kafka_connect",outcome="succeeded"} 1.0' in metrics


def assert_slack_thread(slack_api: SlackAPI) -> None:
    [parent] = slack_api.parents()
    assert first_line(parent) == "🚨 INCIDENT: P1 - Connector is not running"
    now = latest(parent)
    assert now["text"] == "✅ RESOLVED: P1 - Connector is not running"
    assert now["attachments"][0]["color"] == "#2e7d32"  # green, updated in place
    replies = [first_line(m) for m in slack_api.thread(parent)]
    taken = ":gear: *ACTION TAKEN: restart_connector*"
    resolution = ":white_check_mark: *RESOLVED: Connector is not running*"
    verification = ":heavy_check_mark: *VERIFIED: restart_connector*"
    assert sorted(replies) == sorted([taken, resolution, verification]), replies
    # the restart comes first; the verification (10 s after it) may follow the resolution,
    # which with 1 s intervals arrives sooner
    assert replies[0] == taken, replies
    assert len(slack_api.messages) == 4  # the parent and its three replies, nothing elsewhere


def assert_people_were_paged_too(people: Recorder) -> None:
    """The remediator route has `continue: true`: a P1 also reaches the on-call pager."""
    paged = [s.json() for s in people.server.seen if s.path == "/oncall-pager"]
    assert paged, [s.path for s in people.server.seen]
    assert paged[0]["alerts"][0]["labels"]["alertname"] == "ConnectorDown"
