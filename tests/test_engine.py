"""The path of an alert through a running daemon: dedupe, staleness, the ladder, replay."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from remediator.alerts import parse_notification
from remediator.config import Config, load_config
from remediator.config import Storm as StormSettings
from remediator.engine import Storm
from remediator.store.sqlite import SqliteStore
from tests.conftest import API_TOKEN, Running, StartDaemon, base_config
from tests.payloads import alert, notification
from tests.standins import KafkaConnect, Recorder

CDC = """
actions:
  restart_connector:
    kind: http
    target: kafka-connect
    method: POST
    path: /connectors/{connector}/restart
    query: {includeTasks: true, onlyFailed: true}
    accept: [200, 202, 204]
    retries: 0
rules:
  - name: cdc-connector-down
    match: '{alertname="ConnectorDown"}'
    incident_key: [alertname, connector]
    tiers:
      - name: restart
        actions: [restart_connector]
"""

INGESTION = """
actions:
  pause_ingestion: {kind: http, target: config, method: PUT, path: /pause, retries: 0}
  resume_ingestion: {kind: http, target: config, method: PUT, path: /resume, retries: 0}
  rollback_flag: {kind: http, target: flags, method: PATCH, path: /flag, retries: 0}
rules:
  - name: ingestion-error-rate
    match: ['alertname="IngestionHighErrorRate"']
    value: {annotation: error_rate}
    tiers:
      - {name: notify, when: "> 5%"}
      - {name: pause, when: "> 10%", actions: [pause_ingestion]}
      - {name: rollback, when: "> 20%", actions: [pause_ingestion, rollback_flag]}
    on_resolved:
      - {action: resume_ingestion, if_ran: [pause_ingestion]}
"""


def connector_down(
    status: str = "firing",
    connector: str = "postgres-sink-connector",
    starts_at: str = "2026-11-22T09:00:00Z",
) -> dict[str, object]:
    return alert(
        "ConnectorDown", status, starts_at=starts_at, connector=connector, severity="critical"
    )


def error_rate(rate: str, status: str = "firing") -> dict[str, object]:
    return alert(
        "IngestionHighErrorRate", status, service="ingestion", annotations={"error_rate": rate}
    )


@pytest.fixture
async def cdc(
    write_config: Callable[..., Path], start_daemon: StartDaemon, kafka_connect: KafkaConnect
) -> Running:
    config = write_config(
        base_config({"kafka-connect": kafka_connect.server.url}, "rule_files: [cdc.yaml]\n"),
        cdc=CDC,
    )
    return await start_daemon(config)


Ingestion = tuple[Running, Recorder, Recorder]  # the daemon, the config service, the flags


@pytest.fixture
async def ingestion(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    recorder: Callable[..., Awaitable[Recorder]],
) -> Ingestion:
    """A daemon with the ingestion rules, its config service and feature-flag service."""
    config_service, flags = await recorder(), await recorder()
    config = write_config(
        base_config(
            {"config": config_service.server.url, "flags": flags.server.url},
            "rule_files: [ingestion.yaml]\n",
        ),
        ingestion=INGESTION,
    )
    return await start_daemon(config), config_service, flags


def restarts(connect: KafkaConnect) -> list[str]:
    return [f"{s.path}?{s.query}" for s in connect.server.requests("POST")]


async def test_an_alert_opens_an_incident_and_runs_its_action(
    cdc: Running, kafka_connect: KafkaConnect
) -> None:
    assert (await cdc.post_alerts(notification(connector_down()))).status_code == 200
    await cdc.settle()
    assert restarts(kafka_connect) == [
        "/connectors/postgres-sink-connector/restart?includeTasks=true&onlyFailed=true"
    ]
    [action] = (await cdc.api("/api/v1/actions"))["items"]
    assert (action["status"], action["step"], action["attempts"]) == ("succeeded", "restart", 1)
    assert action["detail"].endswith(": HTTP 202")
    [incident] = (await cdc.api("/api/v1/incidents"))["items"]
    assert incident["key"] == {"alertname": "ConnectorDown", "connector": "postgres-sink-connector"}


async def test_a_repeated_notification_decides_and_does_nothing_new(
    cdc: Running, kafka_connect: KafkaConnect
) -> None:
    for _ in range(3):  # group_interval ticks, repeat_interval, a retried delivery
        await cdc.post_alerts(notification(connector_down()))
        await cdc.settle()
    assert len(restarts(kafka_connect)) == 1
    assert len((await cdc.api("/api/v1/incidents"))["items"]) == 1
    events = [e["event"] for e in await history(cdc)]
    assert events.count("opened") == 1
    assert events.count("claimed") == 1


async def test_two_alertmanager_peers_sending_the_same_group_act_once(
    cdc: Running, kafka_connect: KafkaConnect
) -> None:
    body = notification(connector_down())
    answers = await asyncio.gather(*(cdc.post_alerts(body) for _ in range(2)))
    assert [a.status_code for a in answers] == [200, 200]
    await cdc.settle()
    assert len(restarts(kafka_connect)) == 1


async def test_the_same_fingerprint_firing_again_later_is_a_new_instance(
    cdc: Running, kafka_connect: KafkaConnect
) -> None:
    await cdc.post_alerts(notification(connector_down()))
    await cdc.settle()
    await cdc.post_alerts(notification(connector_down("resolved")))
    await cdc.settle()
    await cdc.post_alerts(notification(connector_down(starts_at="2026-11-22T11:00:00Z")))
    await cdc.settle()
    assert len(restarts(kafka_connect)) == 2
    incidents = (await cdc.api("/api/v1/incidents"))["items"]
    assert [i["status"] for i in incidents] == ["open", "resolved"]


async def test_a_late_firing_of_a_resolved_instance_is_stale_and_ignored(
    cdc: Running, kafka_connect: KafkaConnect
) -> None:
    await cdc.post_alerts(notification(connector_down()))
    await cdc.settle()
    await cdc.post_alerts(notification(connector_down("resolved")))
    await cdc.settle()
    await cdc.post_alerts(notification(connector_down()))  # a delayed retry of the first
    await cdc.settle()
    assert len(restarts(kafka_connect)) == 1
    assert [i["status"] for i in (await cdc.api("/api/v1/incidents"))["items"]] == ["resolved"]
    assert "remediator_alerts_stale_total 1.0" in (await cdc.client.get("/metrics")).text


async def test_stale_detection_survives_a_restart(
    write_config: Callable[..., Path], start_daemon: StartDaemon, kafka_connect: KafkaConnect
) -> None:
    config = write_config(
        base_config({"kafka-connect": kafka_connect.server.url}, "rule_files: [cdc.yaml]\n"),
        cdc=CDC,
    )
    first = await start_daemon(config)
    await first.post_alerts(notification(connector_down()))
    await first.settle()  # the restart ran before the alert resolved
    await first.post_alerts(notification(connector_down("resolved")))
    await first.settle()
    await first.daemon.stop()
    second = await start_daemon(config)
    await second.post_alerts(notification(connector_down()))
    await second.settle()
    assert len(restarts(kafka_connect)) == 1


async def test_a_resolved_alert_never_seen_firing_does_nothing(
    cdc: Running, kafka_connect: KafkaConnect
) -> None:
    await cdc.post_alerts(notification(connector_down("resolved")))
    await cdc.settle()
    assert kafka_connect.server.seen == []
    assert (await cdc.api("/api/v1/incidents"))["items"] == []


async def test_a_firing_action_never_runs_once_its_incident_resolved(
    write_config: Callable[..., Path], start_daemon: StartDaemon, kafka_connect: KafkaConnect
) -> None:
    """The only slot is busy; the queued action's incident resolves before it can start."""
    config = write_config(
        base_config(
            {"kafka-connect": kafka_connect.server.url},
            "rule_files: [cdc.yaml]\nexecutor: {max_concurrency: 1}\n",
        ),
        cdc=CDC,
    )
    running = await start_daemon(config)
    kafka_connect.hang.set()
    await running.post_alerts(notification(connector_down(connector="sqlserver-source-connector")))
    await running.daemon.engine.idle()
    await wait_for(lambda: len(kafka_connect.server.seen) == 1)
    await running.post_alerts(notification(connector_down()))
    await running.post_alerts(notification(connector_down("resolved")))
    await running.daemon.engine.idle()
    kafka_connect.release.set()
    await running.settle()
    actions = {
        a["context"]["labels"]["connector"]: a
        for a in (await running.api("/api/v1/actions"))["items"]
    }
    assert actions["postgres-sink-connector"]["status"] == "skipped"
    assert "resolved before the action started" in actions["postgres-sink-connector"]["detail"]
    assert restarts(kafka_connect) == [
        "/connectors/sqlserver-source-connector/restart?includeTasks=true&onlyFailed=true"
    ]


async def test_the_ingestion_ladder_climbs_never_descends_and_resumes_on_resolve(
    ingestion: Ingestion,
) -> None:
    running, config_service, flags = ingestion

    async def send(rate: str, status: str = "firing") -> None:
        await running.post_alerts(notification(error_rate(rate, status)))
        await running.settle()

    await send("0.06")  # > 5 %: tell the team, touch nothing
    assert (config_service.server.seen, flags.server.seen) == ([], [])
    await send("0.12")  # > 10 %: pause
    assert [s.path for s in config_service.server.seen] == ["/pause"]
    await send("0.23")  # > 20 %: roll back (the tier lists the pause too)
    assert [s.path for s in flags.server.seen] == ["/flag"]
    await send("0.08")  # falling back does not undo anything while firing
    await send("0.03", "resolved")
    assert [s.path for s in config_service.server.seen] == ["/pause", "/pause", "/resume"]
    assert len(flags.server.seen) == 1
    events = [
        (e["event"], e["tier"]) for e in reversed(await history(running)) if e["kind"] == "decision"
    ]
    assert events == [
        ("opened", "notify"),
        ("escalated", "pause"),
        ("escalated", "rollback"),
        ("resolved", "rollback"),
    ]


async def test_resume_runs_only_if_the_pause_ran(
    ingestion: Ingestion,
) -> None:
    running, config_service, _ = ingestion
    await running.post_alerts(notification(error_rate("0.07")))
    await running.post_alerts(notification(error_rate("0.07", "resolved")))
    await running.settle()
    assert config_service.server.seen == []
    [resolved] = [e for e in await history(running) if e["event"] == "resolved"]
    assert resolved["detail"]["skipped"] == ["resume_ingestion"]


async def test_a_missing_value_is_recorded_and_acts_on_nothing(
    ingestion: Ingestion,
) -> None:
    running, config_service, _ = ingestion
    for rate in (None, "lots"):
        annotations = {} if rate is None else {"error_rate": rate}
        body = notification(
            alert("IngestionHighErrorRate", annotations=annotations, service=f"s-{rate}")
        )
        await running.post_alerts(body)
        await running.settle()
    reasons = [e["message"] for e in await history(running) if e["event"] == "no_value"]
    assert reasons == [
        "No value for the ladder: annotation 'error_rate' is not a number: 'lots'",
        "No value for the ladder: annotation 'error_rate' is missing",
    ]
    assert config_service.server.seen == []


async def test_the_acknowledgement_means_the_journal_has_it(cdc: Running) -> None:
    r = await cdc.post_alerts(notification(connector_down()))
    path = cdc.daemon.config.store_path
    with sqlite3.connect(path) as conn:  # another connection, as after a crash
        row = conn.execute(
            "SELECT body FROM journal WHERE id = ?", (r.json()["journal_id"],)
        ).fetchone()
    assert json.loads(row[0])["alerts"][0]["labels"]["connector"] == "postgres-sink-connector"


async def test_acknowledged_but_unprocessed_notifications_replay_once_on_start(
    write_config: Callable[..., Path], start_daemon: StartDaemon, kafka_connect: KafkaConnect
) -> None:
    """A crash between the 200 and the decision: the journal holds the notification."""
    config_path = write_config(
        base_config({"kafka-connect": kafka_connect.server.url}, "rule_files: [cdc.yaml]\n"),
        cdc=CDC,
    )
    config = load_config(config_path)
    store = SqliteStore(config.store_path)
    await store.open()
    await store.append_journal(json.dumps(notification(connector_down())), 0.0)
    await store.close()  # nothing processed it
    running = await start_daemon(config)
    await running.settle()
    assert len(restarts(kafka_connect)) == 1
    await running.daemon.stop()
    again = await start_daemon(config)
    await again.settle()
    assert len(restarts(kafka_connect)) == 1


async def history(running: Running) -> list[dict[str, Any]]:
    store = running.daemon.store
    return (await store.history(500, None)).items


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_an_undo_action_uses_what_the_action_it_undoes_returned(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    recorder: Callable[..., Awaitable[Recorder]],
) -> None:
    """`{$results.<action>.<field>}`: a silence's id, a replica count, from the JSON answer."""
    target = await recorder()
    rules = """
    actions:
      open_thing: {kind: http, target: t, method: POST, path: /things, retries: 0}
      close_thing:
        {kind: http, target: t, method: DELETE, path: "/things/{$results.open_thing.path}",
         retries: 0}
    rules:
      - name: r
        match: '{alertname="X"}'
        tiers: [{actions: [open_thing]}]
        on_resolved: [{action: close_thing, if_ran: [open_thing]}]
    """
    config = write_config(base_config({"t": target.server.url}, "rule_files: [r.yaml]\n"), r=rules)
    running = await start_daemon(config)
    await running.post_alerts(notification(alert("X")))
    await running.settle()
    await running.post_alerts(notification(alert("X", "resolved")))
    await running.settle()
    # the Recorder answers {"ok": true, "path": "/things"}: the path segment is encoded
    assert [(s.method, s.path) for s in target.server.seen] == [
        ("POST", "/things"),
        ("DELETE", "/things/%2Fthings"),
    ]


async def test_a_poisoned_notification_is_quarantined_and_its_neighbours_decided(
    cdc: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """A notification that fails to decide (here a lone surrogate, which the edge now refuses:
    as if journaled by an older version) used to drop its whole batch, after every restart."""
    daemon = cdc.daemon
    bodies = [json.dumps(notification(connector_down(connector=f"c{i}"))) for i in range(19)]
    bodies.insert(7, json.dumps(notification(connector_down(connector="\ud800"))))
    ids = [await daemon.store.append_journal(body, 0.0) for body in bodies]
    for journal_id, body in zip(ids, bodies, strict=True):  # one batch, as under load
        daemon.engine.submit(journal_id, parse_notification(json.loads(body)))
    await cdc.settle()
    incidents = (await cdc.api("/api/v1/incidents?limit=100"))["items"]
    assert sorted(i["key"]["connector"] for i in incidents) == sorted(f"c{i}" for i in range(19))
    poisoned = ids[7]
    [(quarantined, reason)] = await daemon.store.quarantined_journal()
    assert quarantined == poisoned
    assert reason.startswith("UnicodeEncodeError")
    [entry] = [e for e in await history(cdc) if e["event"] == "journal_quarantined"]
    assert entry["detail"]["journal_id"] == poisoned
    assert f"journal entry {poisoned} quarantined" in caplog.text
    metrics = (await cdc.client.get("/metrics")).text
    assert "remediator_notifications_quarantined_total 1.0" in metrics
    assert await daemon.store.unprocessed_journal() == []  # a restart does not retry it


async def test_an_unreadable_journal_row_is_quarantined_at_start(
    write_config: Callable[..., Path], start_daemon: StartDaemon, kafka_connect: KafkaConnect
) -> None:
    config = load_config(
        write_config(
            base_config({"kafka-connect": kafka_connect.server.url}, "rule_files: [cdc.yaml]\n"),
            cdc=CDC,
        )
    )
    store = SqliteStore(config.store_path)
    await store.open()
    bad = await store.append_journal("\ufeff" + json.dumps(notification(connector_down())), 0.0)
    await store.append_journal(json.dumps(notification(connector_down(connector="ok"))), 0.0)
    await store.close()
    running = await start_daemon(config)
    await running.settle()
    assert restarts(kafka_connect) == ["/connectors/ok/restart?includeTasks=true&onlyFailed=true"]
    [(quarantined, reason)] = await running.daemon.store.quarantined_journal()
    assert (quarantined, reason.split(":")[0]) == (bad, "unreadable")


async def test_bogus_label_values_do_not_open_the_targets_breaker(
    cdc: Running, kafka_connect: KafkaConnect
) -> None:
    """Three alerts naming connectors that do not exist (404, the request's own data) used to
    open kafka-connect's breaker for 10 minutes and refuse the legitimate restart after them."""
    for i in range(3):
        await cdc.post_alerts(notification(connector_down(connector=f"bogus-{i}")))
        await cdc.settle()
    await cdc.post_alerts(notification(connector_down()))
    await cdc.settle()
    assert restarts(kafka_connect)[-1].startswith("/connectors/postgres-sink-connector/restart")
    [circuit] = (await cdc.api("/api/v1/circuits"))["items"]
    assert (circuit["state"], circuit["failures"]) == ("closed", 0)


@pytest.mark.parametrize("rate", ["NaN", "+Inf", "-Inf"])
async def test_a_value_that_is_not_finite_is_answered_as_null(
    ingestion: Ingestion, rate: str
) -> None:
    """Prometheus values may be NaN or ±Inf; the API used to answer bare NaN (invalid JSON)."""
    running, _, _ = ingestion
    await running.post_alerts(notification(error_rate(rate)))
    await running.settle()
    r = await running.client.get(
        "/api/v1/incidents", headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    [incident] = json.loads(r.text, parse_constant=lambda c: pytest.fail(f"bare {c}"))["items"]
    assert incident["value"] is None


def test_a_storm_ends_at_the_moment_its_timer_names() -> None:
    """next_due names the moment enough openings leave the window; tick at exactly that moment
    ends the storm, so no timer stays due after it ran (the daemon would spin on it)."""
    settings = StormSettings(incidents=2, within=10.0, summary_every=100.0)
    storm = Storm(cast(Config, SimpleNamespace(guardrails=SimpleNamespace(storm=settings))))
    for at in (0.0, 1.0, 2.0, 3.0):
        storm.opened(at)
    assert storm.active
    assert storm.next_due() == 11.0  # two of four must leave: the one opened at 1.0
    assert storm.tick(10.5) == []
    assert storm.active
    assert storm.next_due() == 11.0
    ended = storm.tick(11.0)
    assert [entry.event for entry in ended] == ["storm_ended"]
    assert storm.next_due() is None
