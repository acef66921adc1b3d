"""Broken neighbours: Prometheus unreachable or answering garbage while an action is verified
(unverified and escalated, never a success), a target that times out, answers 5xx or garbage,
or flaps, and a store whose disk is full (503, and nothing acknowledged that is not stored).
A slow Slack delays messages, never an acknowledgement or an action; Slack down and 429 are in
tests/slack/test_outbox.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sqlite3
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from remediator.clock import FakeClock
from remediator.trust import default_tls
from tests.conftest import (
    API_TOKEN,
    WEBHOOK_TOKEN,
    Running,
    StartDaemon,
    base_config,
    slack_config,
)
from tests.payloads import alert, notification
from tests.peers import REMEDIATOR, free_port
from tests.slack_standin import SlackAPI
from tests.standins import Recorder, StandIn

T0 = 1_795_000_000.0
RULES = """
actions:
  fix:
    kind: http
    target: service
    method: POST
    path: "/fix/{job}"
    retries: 1
    timeout: 1s
    verify:
      promql: {query: 'up', condition: '== 1'}
      every: 5s
      within: 20s
  page: {kind: http, target: pager, path: /page, retries: 0}
rules:
  - name: broken
    match: '{alertname="Broken"}'
    incident_key: [alertname, job]
    tiers:
      - {name: fix, actions: [fix]}
      - {name: page, actions: [page]}
"""


async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> StandIn:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    standin = StandIn(app)
    await standin.start()
    return standin


async def world(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    service: str,
    prometheus: str,
    pager: Recorder,
) -> Running:
    targets = {"service": service, "prometheus": prometheus, "pager": pager.server.url}
    config = write_config(base_config(targets, "rule_files: [rules.yaml]\n"), rules=RULES)
    return await start_daemon(config, FakeClock(T0))


async def later(running: Running, seconds: float) -> None:
    clock = running.daemon.clock
    assert isinstance(clock, FakeClock)
    for _ in range(int(seconds // 5)):
        clock.advance(5)
        await running.daemon.timers.run_due()
        await running.settle()


async def actions(running: Running) -> list[tuple[str, str, str | None]]:
    items = (await running.api("/api/v1/actions"))["items"]
    return [(a["action"], a["status"], a["verify_status"]) for a in reversed(items)]


async def garbage(request: web.Request) -> web.Response:
    return web.Response(text='["not", "a", {"prometheus": "answer"}]', content_type="text/plain")


@pytest.mark.parametrize("prometheus", ["unreachable", "garbage"])
async def test_verification_without_prometheus_is_unverified_and_escalates(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    recorder: Callable[..., Awaitable[Recorder]],
    prometheus: str,
) -> None:
    service, pager = await recorder(), await recorder()
    standin = await serve(garbage) if prometheus == "garbage" else None
    url = standin.url if standin else f"http://127.0.0.1:{free_port()}"
    running = await world(write_config, start_daemon, service.server.url, url, pager)
    try:
        assert (
            await running.post_alerts(notification(alert("Broken", job="db")))
        ).status_code == 200
        await running.settle()
        await later(running, 30)
        assert await actions(running) == [
            ("fix", "succeeded", "failed"),  # never "passed" without an answer
            ("page", "succeeded", None),  # escalated
        ]
        [item] = (await running.api("/api/v1/actions?limit=1&before=2"))["items"]
        assert item["verify_detail"].startswith("not verified within 20s: query ")
    finally:
        if standin is not None:
            await standin.stop()


def flapping() -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Up, down, garbage, slow, in turn."""
    turns = iter(range(1_000))

    async def answer(request: web.Request) -> web.StreamResponse:
        turn = next(turns) % 4
        if turn == 1:
            return web.Response(status=503, text="<html>down</html>", content_type="text/html")
        if turn == 2:
            return web.Response(status=200, body=b"\xff\xfe garbage \x00", content_type="x/y")
        if turn == 3:
            await asyncio.sleep(3)  # longer than the action's 1 s timeout
        return web.json_response({"ok": True})

    return answer


@pytest.mark.parametrize("behaviour", ["timeout", "5xx", "garbage", "flapping"])
async def test_a_broken_target_fails_or_succeeds_cleanly_and_the_daemon_carries_on(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    recorder: Callable[..., Awaitable[Recorder]],
    behaviour: str,
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.json_response({})

    async def five_hundred(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>bad gateway</html>", content_type="text/html")

    async def junk(request: web.Request) -> web.Response:
        return web.Response(status=200, body=b"\x00\xff" * 1000, content_type="application/json")

    handler = {"timeout": slow, "5xx": five_hundred, "garbage": junk, "flapping": flapping()}
    service, pager = await serve(handler[behaviour]), await recorder()
    running = await world(write_config, start_daemon, service.url, service.url, pager)
    try:
        for job in ("a", "b", "c"):
            r = await running.post_alerts(notification(alert("Broken", job=job)))
            assert r.status_code == 200
            await running.settle()
        statuses = {status for _, status, _ in await actions(running)}
        assert statuses <= {"succeeded", "failed", "refused"}  # refused: the breaker opened
        if behaviour in ("timeout", "5xx"):
            assert "succeeded" not in statuses
        assert (await running.client.get("/readyz")).status_code == 200
    finally:
        await service.stop()


# -- a full disk ---------------------------------------------------------------------------------


def _limited(max_bytes: int) -> Callable[[], None]:
    def limit() -> None:  # in the child: its files cannot grow past max_bytes (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return limit


async def test_a_full_disk_answers_503_and_nothing_acknowledged_is_lost(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = write_config(base_config({"pager": "http://127.0.0.1:9"}))
    port = free_port()
    env = {**os.environ, "TEST_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "TEST_API_TOKEN": API_TOKEN}
    argv = [str(REMEDIATOR), "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"]
    with (tmp_path / "daemon.log").open("ab") as log:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=log,
            preexec_fn=_limited(600_000),
        )
    acknowledged: dict[int, str] = {}
    statuses: set[int] = set()
    try:
        async with httpx.AsyncClient(
            verify=default_tls(), base_url=f"http://127.0.0.1:{port}", timeout=40
        ) as client:
            for _ in range(200):
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
            for i in range(3000):
                body = notification(alert("Unmatched", job=f"j{i}", pad="x" * 2000))
                r = await client.post("/alerts", json=body, headers=headers)
                statuses.add(r.status_code)
                if r.status_code == 200:
                    acknowledged[r.json()["journal_id"]] = f"j{i}"
                else:
                    assert (r.status_code, r.json()) == (503, {"error": "store unavailable; retry"})
                    if len([s for s in statuses if s == 503]) and i > 10:
                        break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert statuses == {200, 503}, (tmp_path / "daemon.log").read_text()[-2000:]
    with sqlite3.connect(config.parent / "state" / "remediator.db") as conn:
        stored = {
            row[0]: json.loads(row[1])["alerts"][0]["labels"]["job"]
            for row in conn.execute("SELECT id, body FROM journal")
        }
    for journal_id, job in acknowledged.items():
        assert stored.get(journal_id) == job, f"acknowledged journal entry {journal_id} is lost"


# -- a slow Slack ------------------------------------------------------------------------------


async def test_a_slow_slack_delays_messages_never_an_acknowledgement_or_an_action(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    recorder: Callable[..., Awaitable[Recorder]],
    slack_api: SlackAPI,
) -> None:
    service = await recorder()
    rules = 'actions:\n  fix: {kind: http, target: service, path: "/fix/{job}", retries: 0}\n'
    rules += "rules:\n  - {name: slow, match: '{alertname=\"Slow\"}', tiers: [{actions: [fix]}]}\n"
    extra = "rule_files: [rules.yaml]\n" + slack_config(slack_api)
    config = write_config(base_config({"service": service.server.url}, extra), rules=rules)
    running = await start_daemon(config)
    slack_api.delay = 3.0
    started = asyncio.get_running_loop().time()
    r = await running.post_alerts(notification(alert("Slow", job="a")))
    assert r.status_code == 200
    await running.settle()  # decided and acted on
    assert len(service.server.requests()) == 1
    assert asyncio.get_running_loop().time() - started < 2.0  # Slack's 3 s did not hold it up
    slack_api.delay = 0.0
    async with asyncio.timeout(15):  # the message follows once Slack answers
        while not slack_api.messages:
            await asyncio.sleep(0.05)
