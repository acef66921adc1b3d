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

from tests.conftest import API_TOKEN, base_config
from tests.payloads import alert, notification
from tests.peers import REMEDIATOR, DaemonProcess
from tests.standins import Recorder

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
    assert lines[-1] == "not evaluated: cooldowns, budgets, one action at a time per target"

    alone = simulate()  # no --url: the config's default kill switch (off), and says so
    assert (alone.returncode, alone.stderr) == (0, "")
    assert "refuse by killswitch" not in alone.stdout
    assert alone.stdout.splitlines()[-1].startswith(
        "not evaluated: the kill switch at runtime (the config's default was used), mutes, "
        "circuit breakers"
    )
