"""A restart in the middle of an escalate-after wait, a cooldown and a pending approval: each
still holds afterwards, because every timer is derived from the store. A timer that came due while
the daemon was down fires once, on start."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from remediator.clock import FakeClock
from tests.conftest import API_TOKEN, Running, StartDaemon, base_config
from tests.payloads import alert, notification
from tests.standins import Connector, KafkaConnect, Recorder

T0 = 1_795_000_000.0

RULES = """
actions:
  restart_connector:
    kind: http
    target: connect
    path: /connectors/{connector}/restart
    retries: 0
  page_oncall: {kind: http, target: pager, path: /page, retries: 0}
  rollback_flag: {kind: http, target: flags, method: PATCH, path: /flag, retries: 0,
                  destructive: true}
rules:
  - name: connector-down
    match: '{alertname="ConnectorDown"}'
    incident_key: [alertname, connector]
    cooldown: 30m
    tiers:
      - {name: restart, actions: [restart_connector], escalate_after: 15m}
      - {name: page, actions: [page_oncall]}
  - name: flag
    match: '{alertname="BadFlag"}'
    tiers:
      - actions: [rollback_flag]
"""


@pytest.fixture
def config(
    write_config: Callable[..., Path],
    kafka_connect: KafkaConnect,
    pager: Recorder,
    flags: Recorder,
) -> Path:
    kafka_connect.connectors.update({c: Connector("FAILED", ["FAILED"]) for c in ("a", "b")})
    return write_config(
        base_config(
            {
                "connect": kafka_connect.server.url,
                "pager": pager.server.url,
                "flags": flags.server.url,
            },
            "rule_files: [rules.yaml]\n",
        ),
        rules=RULES,
    )


@pytest.fixture
async def pager(recorder: Callable[..., Awaitable[Recorder]]) -> Recorder:
    return await recorder()


@pytest.fixture
async def flags(recorder: Callable[..., Awaitable[Recorder]]) -> Recorder:
    return await recorder()


async def fire(running: Running, status: str, connector: str, starts_at: str) -> None:
    body = notification(alert("ConnectorDown", status, starts_at=starts_at, connector=connector))
    assert (await running.post_alerts(body)).status_code == 200
    await running.settle()


async def test_waits_cooldowns_and_approvals_survive_a_restart(
    config: Path,
    start_daemon: StartDaemon,
    kafka_connect: KafkaConnect,
    pager: Recorder,
    flags: Recorder,
) -> None:
    clock = FakeClock(T0)
    first = await start_daemon(config, clock)
    await fire(first, "firing", "a", "2026-11-22T09:00:00Z")  # escalates after 15m
    await fire(first, "firing", "b", "2026-11-22T09:00:00Z")  # its cooldown starts now
    await fire(first, "resolved", "b", "2026-11-22T09:00:00Z")
    await first.post_alerts(notification(alert("BadFlag", flag="v2")))  # waits for approval
    await first.settle()
    clock.advance(10 * 60)
    await first.daemon.timers.run_due()
    await first.settle()
    assert pager.server.seen == []
    await first.daemon.stop()

    second = await start_daemon(config, clock)
    # the pending approval is still pending, and can be decided after the restart
    pending = (await second.api("/api/v1/approvals"))["items"]
    assert [(a["id"], a["action"], a["status"]) for a in pending] == [
        (1, "rollback_flag", "pending")
    ]
    # the cooldown still holds: b fires again 10 minutes after its restart
    kafka_connect.connectors["b"].state = "FAILED"
    await fire(second, "firing", "b", "2026-11-22T09:10:00Z")
    assert kafka_connect.restarts("b") == 1
    refused = (await second.api("/api/v1/actions"))["items"][0]
    assert (refused["status"], refused["detail"][:9]) == ("refused", "cooldown:")
    # the escalate-after wait resumes where it was: 5 more minutes, not 15
    clock.advance(5 * 60)
    await second.daemon.timers.run_due()
    await second.settle()
    assert len(pager.server.seen) == 1
    r = await second.client.post(
        "/api/v1/approvals/1",
        json={"decision": "approve"},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    assert r.status_code == 200
    await second.settle()
    assert len(flags.server.seen) == 1


async def test_a_timer_due_while_the_daemon_was_down_fires_once_on_start(
    config: Path,
    start_daemon: StartDaemon,
    pager: Recorder,
) -> None:
    clock = FakeClock(T0)
    first = await start_daemon(config, clock)
    await fire(first, "firing", "a", "2026-11-22T09:00:00Z")
    await first.daemon.stop()
    clock.advance(40 * 60)  # escalate-after came due 25 minutes ago, while down
    second = await start_daemon(config, clock)  # nobody calls run_due: start must
    async with asyncio.timeout(10):
        while not pager.server.seen:
            await asyncio.sleep(0.02)
    await second.settle()
    await second.daemon.timers.run_due()
    await second.settle()
    assert len(pager.server.seen) == 1
    [incident] = (await second.api("/api/v1/incidents"))["items"]
    assert incident["tier_name"] == "page"


async def test_an_approval_that_expired_while_down_never_runs(
    config: Path,
    start_daemon: StartDaemon,
    flags: Recorder,
) -> None:
    clock = FakeClock(T0)
    first = await start_daemon(config, clock)
    await first.post_alerts(notification(alert("BadFlag", flag="v2")))
    await first.settle()
    await first.daemon.stop()
    clock.advance(31 * 60)
    second = await start_daemon(config, clock)
    async with asyncio.timeout(10):
        while (await second.api("/api/v1/approvals?status=expired"))["items"] == []:
            await asyncio.sleep(0.02)
    r = await second.client.post(
        "/api/v1/approvals/1",
        json={"decision": "approve"},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    assert (r.status_code, r.json()["error"]) == (409, "approval 1 is already expired")
    await second.settle()
    assert flags.server.seen == []
