"""Broken neighbours: Prometheus unreachable or answering garbage while an action is verified
(unverified and escalated, never a success), a target that times out, answers 5xx or garbage,
or flaps, and a store locked by another process or whose disk is full (503 in time, nothing
acknowledged that is not stored, recovery once the lock or the space is back).
A slow Slack delays messages, never an acknowledgement or an action; Slack down and 429 are in
tests/slack/test_outbox.py.
"""

from __future__ import annotations

import asyncio
import errno
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from remediator.clock import FakeClock
from tests.binaries import in_ci
from tests.conftest import (
    STORES,
    Running,
    StartDaemon,
    base_config,
    slack_config,
)
from tests.payloads import alert, notification
from tests.peers import free_port
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


# -- the store: locked by another process, or its disk full --------------------------------------

LOCK_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")  # what a backup or an operator's sqlite3 shell can hold
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


async def post_job(running: Running, job: str) -> httpx.Response:
    return await running.post_alerts(notification(alert("Unmatched", job=job, pad="x" * 2000)))


async def stored_jobs(running: Running) -> dict[int, str]:
    entries = await running.daemon.store.journal_between(0.0, math.inf)
    return {i: json.loads(body)["alerts"][0]["labels"]["job"] for i, _, body in entries}


async def test_a_store_locked_by_another_process_answers_503_in_time_and_recovers(
    write_config: Callable[..., Path], start_daemon: StartDaemon
) -> None:
    """SQLite waits up to 30 s for a lock; the webhook answers within server.journal_timeout
    (under Alertmanager's 10 s), and what it refused is not stored behind its back."""
    config = write_config(base_config({}, "server: {journal_timeout: 1s}\n"))
    running = await start_daemon(config)
    before = await post_job(running, "before")
    assert before.status_code == 200
    db = config.parent / "state" / "remediator.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    try:
        assert await asyncio.to_thread(holder.stdout.readline) == "locked\n"
        started = time.monotonic()
        refused = await asyncio.gather(*(post_job(running, f"locked-{i}") for i in range(5)))
        took = time.monotonic() - started
        for r in refused:
            assert (r.status_code, r.json()) == (
                503,
                {"error": "the store did not take it within 1s (locked or slow); retry"},
            )
        assert 1.0 <= took < 3.0  # the bound, not SQLite's 30 s busy timeout
    finally:
        holder.communicate("\n", timeout=10)  # the lock is released
    after = await post_job(running, "after")
    assert after.status_code == 200
    await running.settle()
    ids = {before.json()["journal_id"]: "before", after.json()["journal_id"]: "after"}
    assert await stored_jobs(running) == ids
    assert await running.daemon.store.unprocessed_journal() == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a disk that really fills (ENOSPC). Mounting needs root, as CI runs."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(disk)]
    done = subprocess.run(mount, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs to fill ({done.stderr.strip()}): run as root"
        if in_ci():
            pytest.fail(f"{reason}; CI must run it, not skip it", pytrace=False)
        pytest.skip(reason)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=False)


def fill(path: Path) -> None:
    """Write to `path` until the disk is full (ENOSPC)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)


async def test_a_full_disk_answers_503_nothing_acknowledged_is_lost_and_it_recovers(
    write_config: Callable[..., Path], start_daemon: StartDaemon, small_disk: Path
) -> None:
    store = f"store: {{sqlite: {{path: {small_disk / 'remediator.db'}}}}}"
    config = write_config(base_config({}).replace(STORES["sqlite"], store))
    running = await start_daemon(config)
    filler = small_disk / "filler"
    fill(filler)
    os.truncate(filler, filler.stat().st_size - 256 * 1024)  # it fills up as alerts come
    acknowledged: dict[int, str] = {}
    refused = 0
    for i in range(1000):
        r = await post_job(running, f"j{i}")
        if r.status_code == 200:
            acknowledged[r.json()["journal_id"]] = f"j{i}"
            continue
        assert r.status_code == 503
        assert r.json()["error"].startswith("store unavailable")
        refused += 1
        if refused == 3:
            break
    assert refused == 3
    assert acknowledged  # some were taken before the disk filled: each of them is stored
    filler.unlink()  # space frees: the daemon recovers by itself
    async with asyncio.timeout(10):
        while (r := await post_job(running, "after")).status_code != 200:
            await asyncio.sleep(0.05)
    acknowledged[r.json()["journal_id"]] = "after"
    await running.settle()
    stored = await stored_jobs(running)
    for journal_id, job in acknowledged.items():
        assert stored.get(journal_id) == job, f"acknowledged journal entry {journal_id} is lost"
    assert await running.daemon.store.unprocessed_journal() == []


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
