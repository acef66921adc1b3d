"""A rule keeps its identity across edits: renamed with `previous_names`, its incidents,
claims and cooldowns follow it, after a reload and after a restart, and nothing runs twice. A
rule removed from the config has its open incidents closed and announced; people close an
incident by hand over the API. POST /-/reload needs the API token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from remediator.config import load_config
from remediator.errors import ConfigError
from remediator.reload import diff
from tests.conftest import API_TOKEN, Running, StartDaemon, base_config, slack_config
from tests.payloads import alert, notification
from tests.slack_standin import SlackAPI
from tests.standins import Recorder

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
RULES = """
actions:
  restart_worker: {{kind: http, target: svc, path: /restart, retries: 0}}
  page: {{kind: http, target: svc, path: /page, retries: 0}}
rules:
  - name: {name}
    {previous}
    match: '{{alertname="WorkerStuck"}}'
    incident_key: [alertname, worker]
    cooldown: 1h
    tiers:
      - actions: [restart_worker]
  {extra}
"""
OTHER_RULE = """- name: other
    match: '{alertname="Other"}'
    tiers:
      - actions: [page]
"""


def rules(name: str, previous: str = "", extra: str = "") -> str:
    return RULES.format(
        name=name, previous=f"previous_names: [{previous}]" if previous else "", extra=extra
    )


@pytest.fixture
async def svc(recorder: Callable[..., Awaitable[Recorder]]) -> Recorder:
    return await recorder()


@pytest.fixture
def write(
    write_config: Callable[..., Path], svc: Recorder, slack_api: SlackAPI
) -> Callable[[str], Path]:
    def make(rule_text: str) -> Path:
        return write_config(
            base_config(
                {"svc": svc.server.url}, "rule_files: [rules.yaml]\n" + slack_config(slack_api)
            ),
            rules=rule_text,
        )

    return make


def stuck(worker: str, status: str = "firing", starts_at: str = "2026-11-22T09:00:00Z") -> Any:
    return notification(alert("WorkerStuck", status, worker=worker, starts_at=starts_at))


def restarts(svc: Recorder) -> int:
    return sum(1 for s in svc.server.seen if s.path == "/restart")


async def post(running: Running, body: Any) -> None:
    assert (await running.post_alerts(body)).status_code == 200
    await running.settle()


async def open_incidents(running: Running) -> list[dict[str, Any]]:
    return list((await running.api("/api/v1/incidents?status=open"))["items"])


async def delivered(running: Running) -> None:
    async with asyncio.timeout(10):
        while True:
            await running.settle()
            await running.daemon.outbox.drain()
            if (await running.daemon.store.outbox_stats())[0] == 0:
                return


async def test_a_rule_renamed_by_reload_reopens_nothing_and_keeps_its_cooldown(
    write: Callable[[str], Path], start_daemon: StartDaemon, svc: Recorder
) -> None:
    running = await start_daemon(write(rules("promotion-stuck")))
    await post(running, stuck("promotion"))
    assert restarts(svc) == 1

    write(rules("promotion-worker-stuck", previous="promotion-stuck"))
    outcome = await running.daemon.reload("test")
    assert outcome.ok
    assert outcome.change is not None
    assert outcome.change.renamed == (("promotion-stuck", "promotion-worker-stuck"),)
    assert outcome.change.added == ()
    assert outcome.change.removed == ()

    await post(running, stuck("promotion"))  # Alertmanager's repeat of the same alert
    [incident] = await open_incidents(running)
    assert incident["rule"] == "promotion-worker-stuck"
    # a new firing after a resolution opens a new incident: the cooldown still refuses it
    await post(running, stuck("promotion", "resolved"))
    await post(running, stuck("promotion", starts_at="2026-11-22T09:10:00Z"))
    assert restarts(svc) == 1
    actions = (await running.api("/api/v1/actions"))["items"]
    assert [a["status"] for a in actions] == ["refused", "succeeded"]
    assert "cooldown" in actions[0]["detail"]


async def test_a_rule_renamed_across_a_restart_runs_nothing_twice(
    write: Callable[[str], Path], start_daemon: StartDaemon, svc: Recorder
) -> None:
    first = await start_daemon(write(rules("promotion-stuck")))
    await post(first, stuck("promotion"))
    await first.daemon.stop()

    second = await start_daemon(write(rules("promotion-worker-stuck", previous="promotion-stuck")))
    await post(second, stuck("promotion"))
    await post(second, stuck("promotion", starts_at="2026-11-22T09:05:00Z"))  # same incident
    assert restarts(svc) == 1
    [incident] = await open_incidents(second)
    assert incident["rule"] == "promotion-worker-stuck"
    history = (await second.api("/api/v1/history"))["items"]
    assert any(h["event"] == "renamed" for h in history)


async def test_a_removed_rules_incidents_are_closed_and_announced(
    write: Callable[[str], Path],
    start_daemon: StartDaemon,
    svc: Recorder,
    slack_api: SlackAPI,
) -> None:
    running = await start_daemon(write(rules("promotion-stuck", extra=OTHER_RULE)))
    await post(running, stuck("promotion"))
    await post(running, notification(alert("Other")))
    await delivered(running)

    write(rules("promotion-stuck"))
    outcome = await running.daemon.reload("test")
    assert outcome.ok
    assert outcome.change is not None
    assert outcome.change.removed == ("other",)
    await delivered(running)
    [still_open] = await open_incidents(running)
    assert still_open["rule"] == "promotion-stuck"
    closed = [h for h in (await running.api("/api/v1/history"))["items"] if h["event"] == "closed"]
    assert len(closed) == 1
    assert "no longer in the configuration" in closed[0]["message"]
    texts = [json.dumps([m.text, m.blocks, m.attachments]) for m in slack_api.messages]
    assert any("no longer in the configuration" in t for t in texts)
    assert any("Configuration reloaded by test: removed other" in t for t in texts)


async def test_an_incident_closed_by_hand_stays_closed_for_its_alerts(
    write: Callable[[str], Path], start_daemon: StartDaemon, svc: Recorder
) -> None:
    running = await start_daemon(write(rules("promotion-stuck")))
    await post(running, stuck("promotion"))
    [incident] = await open_incidents(running)
    path = f"/api/v1/incidents/{incident['id']}/close"

    assert (await running.client.post(path, json={"reason": "x"})).status_code == 401
    missing = await running.client.post(path, json={}, headers=AUTH)
    assert missing.status_code == 400
    assert "reason" in missing.json()["error"]
    r = await running.client.post(path, json={"reason": "fixed by hand", "by": "ana"}, headers=AUTH)
    assert r.status_code == 200
    assert r.json()["status"] == "resolved"
    again = await running.client.post(path, json={"reason": "again"}, headers=AUTH)
    assert again.status_code == 409
    nothing = await running.client.post(
        "/api/v1/incidents/999/close", json={"reason": "x"}, headers=AUTH
    )
    assert nothing.status_code == 404

    await post(running, stuck("promotion"))  # the same alert repeated: reopens nothing
    assert await open_incidents(running) == []
    assert restarts(svc) == 1
    record = await running.api(f"/api/v1/incidents/{incident['id']}")
    assert record["status"] == "resolved"
    assert [c["action"] for c in record["claims"]] == ["restart_worker"]
    assert record["claims"][0]["attempts"][0]["ok"] is True
    events = [a["event"] for a in record["audit"]]
    assert events[0] == "opened"
    assert events[-1] == "closed"
    assert "api:ana" in record["audit"][-1]["message"]


async def test_reload_over_http_needs_the_token_and_names_every_problem(
    write: Callable[[str], Path], start_daemon: StartDaemon
) -> None:
    running = await start_daemon(write(rules("promotion-stuck")))
    assert (await running.client.post("/-/reload")).status_code == 401
    wrong = await running.client.post("/-/reload", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401

    ok = await running.client.post("/-/reload", headers=AUTH)
    assert ok.status_code == 200
    assert ok.json()["status"] == "success"

    broken = rules("promotion-stuck").replace("restart_worker]", "restart_wroker]")
    write(
        broken.replace(
            "{kind: http, target: svc, path: /page", "{kind: htp, target: svc, path: /page"
        )
    )
    refused = await running.client.post("/-/reload", headers=AUTH)
    assert refused.status_code == 422
    problems = refused.json()["problems"]
    assert len(problems) == 2
    assert any("restart_wroker" in p for p in problems)
    metrics = (await running.client.get("/metrics")).text
    assert "remediator_config_last_reload_successful 0.0" in metrics


def test_diff_names_added_removed_changed_renamed_and_restart_only_settings(
    write_config: Callable[..., Path],
) -> None:
    main = base_config({"svc": "http://127.0.0.1:1"}, "rule_files: [rules.yaml]\n")
    old = load_config(write_config(main, rules=rules("a", extra=OTHER_RULE)))
    renamed = rules("b", previous="a", extra=OTHER_RULE.replace("[page]", "[restart_worker]"))
    moved = main.replace("state/remediator.db", "elsewhere.db") + "server: {listen: ':9999'}\n"
    new = load_config(write_config(moved, rules=renamed))
    change = diff(old, new)
    assert change.renamed == (("a", "b"),)
    assert change.changed == ("other",)
    assert change.restart == ("server.listen", "store")
    assert "next restart" in change.summary()
    assert diff(old, old).summary() == "no rule changed"


def test_previous_names_must_be_free(write_config: Callable[..., Path]) -> None:
    main = base_config({"svc": "http://127.0.0.1:1"}, "rule_files: [rules.yaml]\n")
    clash = rules("a", previous="other", extra=OTHER_RULE)
    with pytest.raises(ConfigError) as e:
        load_config(write_config(main, rules=clash))
    assert "'other' is the name of a current rule" in str(e.value.problems)
