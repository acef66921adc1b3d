"""Every CLI verb over --url against a live daemon, from a directory with no config file (a
laptop); read-only verbs without the secrets they do not read; REMEDIATOR_CONFIG."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import API_TOKEN, base_config
from tests.payloads import alert, notification
from tests.peers import REMEDIATOR, DaemonProcess
from tests.standins import Recorder, StandIn

RULES = """
actions:
  restart_worker: {kind: http, target: svc, path: /restart, retries: 0}
  rollback_flag: {kind: http, target: flags, path: /rollback, retries: 0, destructive: true}
rules:
  - name: worker-stuck
    match: '{alertname="WorkerStuck"}'
    tiers:
      - actions: [restart_worker]
  - name: bad-flag
    match: '{alertname="BadFlag"}'
    incident_key: [alertname, flag]
    tiers:
      - actions: [rollback_flag]
"""
SLACK = "slack:\n  bot_token_env: UNSET_SLACK_TOKEN\n  channel: '#alerts'\n"
Run = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
async def daemon(
    write_config: Callable[..., Path], recorder: Callable[..., Awaitable[Recorder]]
) -> AsyncIterator[DaemonProcess]:
    svc, flags = await recorder(), await recorder()
    config = write_config(
        base_config(
            {"svc": svc.server.url, "flags": flags.server.url}, "rule_files: [rules.yaml]\n"
        ),
        rules=RULES,
    )
    d = DaemonProcess(config)
    await d.start()
    yield d
    await d.close()


@pytest.fixture
def laptop(tmp_path: Path) -> Run:
    """The console script in a directory without a config file, no daemon secrets set."""
    home = tmp_path / "laptop"
    home.mkdir()

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REMEDIATOR), *args],
            capture_output=True,
            text=True,
            cwd=home,
            env={"PATH": os.environ["PATH"], "HOME": str(home), **(env or {})},
            timeout=60,
            check=False,
        )

    return run


async def test_every_verb_runs_over_url_without_a_config(
    daemon: DaemonProcess, laptop: Run
) -> None:
    url = ["--url", daemon.url]
    token = {"REMEDIATOR_API_TOKEN": API_TOKEN}

    def ok(*args: str) -> str:
        done = laptop(*args, *url, "--by", "ana", env=token)
        assert (done.returncode, done.stderr) == (0, ""), args
        return done.stdout

    await daemon.post(notification(alert("WorkerStuck")))
    await daemon.post(notification(alert("BadFlag", flag="v2")))
    await daemon.post(notification(alert("BadFlag", flag="v3")))
    async with asyncio.timeout(20):
        while len((await daemon.api("/approvals"))["items"]) < 2:
            await asyncio.sleep(0.05)

    assert "ready" in ok("status")
    assert "kill switch: off" in ok("status")
    assert "opened" in ok("history", "--limit", "50")
    listed = ok("incidents", "list", "--status", "open")
    assert "worker-stuck" in listed
    assert "bad-flag" in listed
    worker = next(line.split()[0] for line in listed.splitlines() if "worker-stuck" in line)
    shown = ok("incidents", "show", worker)
    assert "restart_worker on svc: succeeded" in shown

    assert "kill switch is ON" in ok("killswitch", "on", "--reason", "drill")
    assert "kill switch is ON" in ok("killswitch", "status")
    assert "kill switch is off" in ok("killswitch", "off")

    mute = ok("mutes", "add", "--target", "svc", "--duration", "1h", "--reason", "deploy")
    mute_id = mute.split()[1]
    assert "deploy" in ok("mutes", "list")
    assert f"mute {mute_id} ended" in ok("mutes", "end", mute_id)

    approvals = ok("approvals", "list")
    first, second = (line.split()[0] for line in approvals.splitlines())
    assert "rollback_flag" in approvals
    assert "denied by api:ana" in ok("approvals", "deny", first, "--reason", "not now")
    assert "approved by api:ana" in ok("approvals", "approve", second)
    assert "svc" in ok("circuits", "list")
    assert "circuit of svc closed" in ok("circuits", "reset", "svc")

    assert f"incident {worker} closed" in ok("incidents", "close", worker, "--reason", "done")
    assert "closed by api:ana: done" in ok("history")

    flag = laptop("status", "--url", daemon.url, "--token", API_TOKEN)
    assert flag.returncode == 0, flag.stderr
    no_token = laptop("status", "--url", daemon.url)
    assert no_token.returncode == 1
    assert "no API token" in no_token.stderr
    wrong = laptop("history", "--url", daemon.url, "--token", "wrong")
    assert wrong.returncode == 1
    assert "HTTP 401" in wrong.stderr
    no_reason = laptop("incidents", "close", "1", *url, env=token)
    assert "needs --reason" in no_reason.stderr


def test_read_only_verbs_need_only_what_they_read(
    write_config: Callable[..., Path], laptop: Run
) -> None:
    config = write_config(
        base_config(
            {"svc": "http://127.0.0.1:1", "flags": "http://127.0.0.1:2"},
            "rule_files: [rules.yaml]\n" + SLACK,
        ),
        rules=RULES,
    )
    env = {"TEST_WEBHOOK_TOKEN": "w", "TEST_API_TOKEN": "a"}  # no Slack token
    refused = laptop("check", "--config", str(config), env=env)
    assert refused.returncode == 1
    assert "UNSET_SLACK_TOKEN" in refused.stderr
    history = laptop("history", "--config", str(config), env=env)
    assert (history.returncode, history.stderr) == (0, "")
    assert "no history yet" in history.stdout
    by_variable = laptop("history", env={**env, "REMEDIATOR_CONFIG": str(config)})
    assert (by_variable.returncode, by_variable.stderr) == (0, "")
    assert "no history yet" in by_variable.stdout


async def test_simulate_reads_stdin_and_asks_the_daemon_for_its_guardrails(
    daemon: DaemonProcess,
) -> None:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    r = await daemon.client.put(
        "/api/v1/killswitch", json={"on": True, "by": "ana"}, headers=headers
    )
    assert r.status_code == 200
    body = json.dumps(notification(alert("WorkerStuck"), alert("BadFlag", flag="v2")))

    def simulate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REMEDIATOR), "simulate", "--config", str(daemon.config), *args],
            input=body,
            capture_output=True,
            text=True,
            env={**daemon.env, "PATH": os.environ["PATH"]},
            timeout=60,
            check=False,
        )

    asked = simulate("--url", daemon.url, "--token", API_TOKEN)
    assert (asked.returncode, asked.stderr) == (0, "")
    lines = asked.stdout.splitlines()
    [worker] = [x for x in lines if x.startswith("    restart_worker (http on svc): POST ")]
    assert worker.endswith("/restart")
    assert (
        "      refuse by killswitch: the kill switch is on: dropped (guardrails.on_killswitch: "
        "drop), it will not run when the switch is turned off"
    ) in lines
    assert "      approval required: a person approves it before it runs" in lines
    assert lines[-1] == "not evaluated: none"  # the daemon told it every guardrail's state

    alone = simulate()  # no --url: the config's default kill switch (off), and says so
    assert (alone.returncode, alone.stderr) == (0, "")
    assert "refuse by killswitch" not in alone.stdout
    assert alone.stdout.splitlines()[-1].startswith(
        "not evaluated: the kill switch at runtime (the config's default was used), mutes, "
        "circuit breakers"
    )


GUARDED = """
actions:
  restart_cool: {kind: http, target: svc, path: /restart, retries: 0}
  bump: {kind: http, target: bumps, path: /bump, retries: 0, budget: {max: 1, per: 1h}}
  poke: {kind: http, target: slow, path: /poke, retries: 0, timeout: 60s}
rules:
  - name: cool
    match: '{alertname="Cool"}'
    cooldown: 1h
    tiers:
      - actions: [restart_cool]
  - name: bump-on-alert
    match: '{alertname="Bump"}'
    incident_key: [alertname, n]
    tiers:
      - actions: [bump]
  - name: poke-on-alert
    match: '{alertname="Slow"}'
    incident_key: [alertname, n]
    tiers:
      - actions: [poke]
"""


async def test_simulate_over_url_judges_cooldowns_budgets_and_one_at_a_time(
    write_config: Callable[..., Path], recorder: Callable[..., Awaitable[Recorder]]
) -> None:
    """The daemon acted once for each rule (the poke still hangs on its target); simulating the
    next alerts over --url refuses the cooldown and the spent budget and waits for the target,
    as the daemon would, from GET /api/v1/guardrails."""
    svc, bumps = await recorder(), await recorder()
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()  # the poke stays out until the test ends
        return web.json_response({})

    hanging = web.Application()
    hanging.router.add_route("*", "/{tail:.*}", hang)
    slow = await StandIn(hanging).start()
    urls = {"svc": svc.server.url, "bumps": bumps.server.url, "slow": slow.url}
    config = write_config(base_config(urls, "rule_files: [rules.yaml]\n"), rules=GUARDED)
    daemon = DaemonProcess(config)
    await daemon.start()
    try:
        cool = alert("Cool")
        fired = notification(cool), notification(alert("Bump", n="1"))
        for body in (*fired, notification(alert("Slow", n="1"))):
            assert (await daemon.post(body)).status_code == 200
        async with asyncio.timeout(20):
            while not (svc.server.seen and bumps.server.seen and slow.seen):
                await asyncio.sleep(0.05)
        resolved = {**cool, "status": "resolved", "endsAt": "2026-11-22T09:30:00Z"}
        assert (await daemon.post(notification(resolved))).status_code == 200
        async with asyncio.timeout(20):  # the Cool incident resolved: the next one is new
            while (await daemon.api("/incidents?status=resolved"))["items"] == []:
                await asyncio.sleep(0.05)

        state = await daemon.api("/guardrails")
        [cooldown] = state["cooldowns"]
        assert (cooldown["rule"], cooldown["target"]) == ("cool", "svc")
        assert cooldown["incident_key"] == {"alertname": "Cool"}
        [budget] = state["budgets"]
        assert (budget["scope"], budget["max"], budget["used"], budget["left"]) == ("bump", 1, 1, 0)
        assert state["busy_targets"] == ["slow"]
        assert sorted(s["action"] for s in state["starts"]) == ["bump", "poke", "restart_cool"]

        payload = json.dumps(
            notification(alert("Cool"), alert("Bump", n="2"), alert("Slow", n="2"))
        )
        env = {**daemon.env, "PATH": os.environ["PATH"], "REMEDIATOR_API_TOKEN": API_TOKEN}
        command = [str(REMEDIATOR), "simulate", "--config", str(config), "-", "--url", daemon.url]

        def simulate() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                command, input=payload, capture_output=True, text=True, env=env, timeout=60
            )

        asked = await asyncio.to_thread(simulate)
        assert (asked.returncode, asked.stderr) == (0, "")
        lines = asked.stdout.splitlines()
        said = [x.strip() for x in lines if x.startswith("      ")]
        assert any(x.startswith("refuse by cooldown: rule 'cool' acted on 'svc'") for x in said)
        assert any(x.startswith("refuse by budget: budget for bump spent: 1 actions") for x in said)
        assert "wait by one_at_a_time: another action is running on 'slow'" in said
        assert lines[-1] == "not evaluated: none"
    finally:
        release.set()
        await daemon.close()
        await slow.stop()
