"""POST /alerts, the probes, /metrics and the API: every status code, with its body."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from remediator import engine
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN, Running, StartDaemon, base_config
from tests.payloads import alert, notification

RULES = """
actions:
  restart_connector:
    kind: http
    target: connect
    path: /connectors/{connector}/restart
    retries: 0
rules:
  - name: connector-down
    match: '{alertname="ConnectorDown"}'
    incident_key: [alertname, connector]
    tiers:
      - actions: [restart_connector]
"""


@pytest.fixture
async def daemon(write_config: Callable[..., Path], start_daemon: StartDaemon) -> Running:
    config = write_config(
        base_config(
            {"connect": "http://127.0.0.1:9"},
            "rule_files: [rules.yaml]\nserver: {max_body_bytes: 4096}\n",
        ),
        rules=RULES,
    )
    return await start_daemon(config)


def body(name: str = "Unmatched") -> dict[str, object]:
    return notification(alert(name, connector="c1"))


async def test_accepts_a_valid_notification_after_journaling_it(daemon: Running) -> None:
    r = await daemon.post_alerts(body())
    assert r.status_code == 200
    assert r.json() == {"status": "accepted", "journal_id": 1, "alerts": 1}


async def test_a_deep_decision_backlog_answers_503_and_journals_nothing(
    daemon: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "BACKLOG_LIMIT", -1)  # as if 20,000 alerts were waiting
    r = await daemon.post_alerts(body())
    assert (r.status_code, r.headers["Retry-After"]) == (503, "5")
    assert "retry later" in r.json()["error"]
    assert await daemon.daemon.store.unprocessed_journal() == []
    monkeypatch.setattr(engine, "BACKLOG_LIMIT", 20_000)
    r = await daemon.post_alerts(body())
    assert (r.status_code, r.json()["journal_id"]) == (200, 1)  # Alertmanager's retry


async def test_accepts_unknown_keys_from_newer_alertmanagers(daemon: Running) -> None:
    payload = body()
    payload["notification_reason"] = "repeat_interval"
    payload["routeLabels"] = {"team": "data"}
    payload["alerts"][0]["somethingNew"] = True  # type: ignore[index]
    assert (await daemon.post_alerts(payload)).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong",
        f"Basic {base64.b64encode(b'u:' + WEBHOOK_TOKEN.encode()).decode()}",
        f"bearer{WEBHOOK_TOKEN}",
        "Bearer",
        "",
    ],
)
async def test_rejects_missing_or_wrong_credentials_with_401(
    daemon: Running, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    r = await daemon.client.post("/alerts", json=body(), headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="remediator"'
    assert r.json() == {"error": "missing or wrong credentials"}


async def test_bearer_scheme_is_case_insensitive(daemon: Running) -> None:
    r = await daemon.client.post(
        "/alerts", json=body(), headers={"Authorization": f"bearer {WEBHOOK_TOKEN}"}
    )
    assert r.status_code == 200


async def test_basic_auth_as_alertmanager_sends_it(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AM_PASSWORD", "s3cret:with:colons")
    config = write_config(
        "webhook_auth: {basic_auth: {username: alertmanager, password_env: AM_PASSWORD}}\n"
        "store: {sqlite: {path: state.db}}\n"
    )
    running = await start_daemon(config)
    good = httpx.BasicAuth("alertmanager", "s3cret:with:colons")
    assert (await running.client.post("/alerts", json=body(), auth=good)).status_code == 200
    for user, password in [("alertmanager", "wrong"), ("someone", "s3cret:with:colons")]:
        r = await running.client.post("/alerts", json=body(), auth=httpx.BasicAuth(user, password))
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == 'Basic realm="remediator"'
    garbage = {"Authorization": "Basic %%%not-base64"}
    assert (await running.client.post("/alerts", json=body(), headers=garbage)).status_code == 401


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_rejects_non_json_content_type_with_415(
    daemon: Running, content_type: str | None
) -> None:
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    if content_type:
        headers["Content-Type"] = content_type
    r = await daemon.client.post("/alerts", content=json.dumps(body()), headers=headers)
    assert r.status_code == 415
    assert r.json()["error"].startswith("expected Content-Type application/json, got ")


async def test_accepts_json_with_a_charset(daemon: Running) -> None:
    r = await daemon.client.post(
        "/alerts",
        content=json.dumps(body()),
        headers={
            "Authorization": f"Bearer {WEBHOOK_TOKEN}",
            "Content-Type": "application/json; charset=utf-8",
        },
    )
    assert r.status_code == 200


async def test_rejects_a_body_over_the_limit_with_413(daemon: Running) -> None:
    big = body()
    big["alerts"][0]["annotations"] = {"description": "x" * 5000}  # type: ignore[index]
    r = await daemon.post_alerts(big)
    assert r.status_code == 413
    assert r.json() == {"error": "body larger than the limit of 4096 bytes"}


async def test_rejects_an_oversized_chunked_body_without_content_length(daemon: Running) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    r = await daemon.client.post(
        "/alerts",
        content=chunks(),
        headers={
            "Authorization": f"Bearer {WEBHOOK_TOKEN}",
            "Content-Type": "application/json",
        },
    )
    assert r.status_code == 413


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            b"{not json",
            "invalid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        (b"", "invalid JSON: Expecting value: line 1 column 1 (char 0)"),
        (b"\xff\xfe", "the body starts with a byte-order mark"),
    ],
)
async def test_rejects_invalid_json_with_400(daemon: Running, raw: bytes, message: str) -> None:
    r = await daemon.client.post(
        "/alerts",
        content=raw,
        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["error"].startswith(message)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda b: b["alerts"][0].__setitem__("labels", []),
            "alerts[0].labels: expected an object, got an array",
        ),
        (lambda b: b["alerts"][0].pop("labels"), "alerts[0].labels: required"),
        (
            lambda b: b["alerts"][0].__setitem__("status", "pending"),
            'alerts[0].status: expected "firing" or "resolved", got \'pending\'',
        ),
        (
            lambda b: b["alerts"][0].__setitem__("startsAt", "yesterday"),
            "alerts[0].startsAt: not an RFC 3339 timestamp: 'yesterday'",
        ),
        (
            lambda b: b["alerts"][0]["labels"].__setitem__("severity", 3),
            "alerts[0].labels.severity: expected a string, got a number",
        ),
        (lambda b: b.__setitem__("alerts", {}), "alerts: expected an array, got an object"),
        (
            lambda b: b.__setitem__("version", "3"),
            "version: unsupported version '3' (expected \"4\")",
        ),
        (lambda b: b.pop("groupKey"), "groupKey: required"),
    ],
)
async def test_rejects_schema_violations_with_400_naming_the_field(
    daemon: Running, mutate: Callable[[dict[str, object]], object], message: str
) -> None:
    payload = body()
    mutate(payload)
    r = await daemon.post_alerts(payload)
    assert r.status_code == 400
    assert r.json() == {"error": message}


async def test_rejects_a_non_object_body_with_400(daemon: Running) -> None:
    r = await daemon.post_alerts([1, 2])
    assert r.status_code == 400
    assert r.json() == {"error": "body: expected an object, got an array"}


async def test_bad_input_is_counted_by_outcome(daemon: Running) -> None:
    await daemon.post_alerts(body())
    await daemon.post_alerts(body(), token="wrong")
    await daemon.post_alerts({"version": "4"})
    text = (await daemon.client.get("/metrics")).text
    assert 'remediator_notifications_received_total{outcome="accepted"} 1.0' in text
    assert 'remediator_notifications_received_total{outcome="unauthorized"} 1.0' in text
    assert 'remediator_notifications_received_total{outcome="invalid"} 1.0' in text
    assert 'remediator_notifications_received_total{outcome="too_large"} 0.0' in text


async def test_unknown_routes_and_methods_answer_json(daemon: Running) -> None:
    r = await daemon.client.get("/nope")
    assert (r.status_code, r.json()) == (404, {"error": "Not Found"})
    r = await daemon.client.get("/alerts")
    assert (r.status_code, r.json()) == (405, {"error": "Method Not Allowed"})
    assert r.headers["Allow"] == "POST"


async def test_probes(daemon: Running) -> None:
    r = await daemon.client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    r = await daemon.client.get("/readyz")
    assert (r.status_code, r.json()) == (
        200,
        {"status": "ready", "rules": 1, "dry_run": False, "killswitch": False},
    )


async def test_readyz_fails_without_rules(
    write_config: Callable[..., Path], start_daemon: StartDaemon
) -> None:
    running = await start_daemon(write_config(base_config({})))
    r = await running.client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {
        "status": "not ready",
        "problems": ["no rules loaded"],
        "dry_run": False,
        "killswitch": False,
    }


async def test_metrics_exports_the_declared_series_at_zero(daemon: Running) -> None:
    r = await daemon.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    text = r.text
    assert 'remediator_actions_total{kind="http",outcome="failed"} 0.0' in text
    assert 'remediator_decisions_total{decision="opened",rule="connector-down"} 0.0' in text
    assert 'remediator_incidents_open{rule="connector-down"} 0.0' in text
    assert "remediator_build_info{version=" in text


async def test_api_requires_the_bearer_token(daemon: Running) -> None:
    for path in ("/api/v1/incidents", "/api/v1/actions"):
        r = await daemon.client.get(path)
        assert r.status_code == 401
        assert r.json() == {"error": "missing or wrong bearer token"}
        r = await daemon.client.get(path, headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"})
        assert r.status_code == 401


async def test_api_is_closed_without_a_configured_token(
    write_config: Callable[..., Path], start_daemon: StartDaemon
) -> None:
    running = await start_daemon(write_config("store: {sqlite: {path: s.db}}\n"))
    r = await running.client.get(
        "/api/v1/incidents", headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    assert r.status_code == 403
    assert "the API is disabled" in r.json()["error"]


async def test_api_lists_incidents_newest_first_with_pages(daemon: Running) -> None:
    for i in range(5):
        await daemon.post_alerts(notification(alert("ConnectorDown", connector=f"c{i}")))
    await daemon.settle()
    first = await daemon.api("/api/v1/incidents?limit=2")
    assert [i["key"]["connector"] for i in first["items"]] == ["c4", "c3"]
    assert first["items"][0]["tier_name"] == "tier0"
    assert first["items"][0]["status"] == "open"
    second = await daemon.api(first["next"])
    assert [i["key"]["connector"] for i in second["items"]] == ["c2", "c1"]
    third = await daemon.api(second["next"])
    assert [i["key"]["connector"] for i in third["items"]] == ["c0"]
    assert third["next"] is None


async def test_api_lists_actions_with_their_outcome(daemon: Running) -> None:
    await daemon.post_alerts(notification(alert("ConnectorDown", connector="c1")))
    await daemon.settle()
    page = await daemon.api("/api/v1/actions")
    [action] = page["items"]
    assert action["action"] == "restart_connector"
    assert action["status"] == "failed"  # port 9 refuses: the failure is recorded, not lost
    assert action["request"]["url"] == "http://127.0.0.1:9/connectors/c1/restart"


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=501", "limit=x", "before=abc", "status=closed"]
)
async def test_api_rejects_bad_parameters_with_400(daemon: Running, query: str) -> None:
    r = await daemon.client.get(
        f"/api/v1/incidents?{query}", headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    assert r.status_code == 400
    assert "error" in r.json()
