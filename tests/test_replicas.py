"""Several daemon processes on one PostgreSQL database (tests/postgres.py), each with its own
config directory: its target's URL carries the replica's name, so the stand-in target tells who
sent each action.

Three replicas receive the same 500 alerts each (an HA pair of Alertmanagers and a retrying
Service): every action runs exactly once. The leader SIGKILLed while escalations and Slack
messages are pending: another replica fires every timer and delivers every message within 10
seconds, none twice. The leader's connections cut (pg_terminate_backend) while an incident
escalates: a new leader takes over, and no action of the old one reaches the target after the
new one took the lead. Leases and heartbeats are short here (store.postgres.lease, heartbeat)."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import textwrap
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import slack_config
from tests.payloads import alert, notification
from tests.peers import DaemonProcess
from tests.postgres import PostgresServer, replica_store
from tests.slack_standin import SlackAPI
from tests.standins import Recorder

LADDER = """
actions:
  act: {kind: http, target: svc0, path: "/act/{connector}", retries: 0}
  page: {kind: http, target: svc0, path: "/page/{connector}", retries: 0}
  call: {kind: http, target: svc0, path: "/call/{connector}", retries: 0}
rules:
  - name: down
    match: '{alertname="Down"}'
    incident_key: [alertname, connector]
    tiers:
      - actions: [act]
        escalate_after: %(after)s
      - actions: [page]
        escalate_after: %(after)s
      - actions: [call]
"""
SHARDS = 10  # one target per shard: one action at a time per target, ten at once


def sharded() -> str:
    """One rule, action and target per shard: 500 actions run ten at a time, not one."""
    actions = [
        f'  act{d}: {{kind: http, target: svc{d}, path: "/act/{{connector}}", retries: 0}}'
        for d in range(SHARDS)
    ]
    rules = [
        f'  - {{name: down-{d}, match: \'{{alertname="Down", shard="{d}"}}\', '
        f"incident_key: [alertname, connector], tiers: [{{actions: [act{d}]}}]}}"
        for d in range(SHARDS)
    ]
    return "actions:\n" + "\n".join(actions) + "\nrules:\n" + "\n".join(rules) + "\n"


Make = Callable[..., DaemonProcess]


@pytest.fixture
async def replicas(
    tmp_path: Path,
    postgres_dsn: str,
    target: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Make]:
    """make(name, heartbeat=..., after=..., extra=...): a daemon process of its own config."""
    monkeypatch.setenv("TEST_PG_DSN", postgres_dsn)
    monkeypatch.setenv("TEST_WEBHOOK_TOKEN", "test-webhook-token")
    monkeypatch.setenv("TEST_API_TOKEN", "test-api-token")
    made: list[DaemonProcess] = []

    def make(
        name: str,
        heartbeat: str = "200ms",
        lease: str = "2s",
        after: str = "10m",
        extra: str = "",
        rules: str | None = None,
    ) -> DaemonProcess:
        home = tmp_path / name
        home.mkdir()
        (home / "rules.yaml").write_text(rules or textwrap.dedent(LADDER % {"after": after}))
        targets = "".join(
            f"  svc{d}: {{url: '{target.server.url}/{name}'}}\n" for d in range(SHARDS)
        )
        store = replica_store(lease, heartbeat, application_name=name, pool_size="4")
        (home / "remediator.yaml").write_text(
            "webhook_auth: {bearer_token_env: TEST_WEBHOOK_TOKEN}\n"
            "api_auth: {bearer_token_env: TEST_API_TOKEN}\n"
            f"{store}\n"
            f"targets:\n{targets}"
            "rule_files: [rules.yaml]\n" + extra
        )
        daemon = DaemonProcess(home / "remediator.yaml")
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        await daemon.close()


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def role(daemon: DaemonProcess) -> str:
    r = await daemon.client.get("/readyz")
    return str(r.json().get("role"))


async def leader_of(daemons: list[DaemonProcess], timeout: float = 10.0) -> DaemonProcess:
    async with asyncio.timeout(timeout):
        while True:
            for d in daemons:
                if d.proc is not None and d.proc.poll() is None and await role(d) == "leader":
                    return d
            await asyncio.sleep(0.05)


def sent(target: Recorder, kind: str) -> list[tuple[str, str, float]]:
    """(replica, connector, when) of every `kind` request the target received."""
    found = []
    for seen in target.server.seen:
        replica, action, connector = seen.path.strip("/").split("/")
        if action == kind:
            found.append((replica, connector, seen.at))
    return found


def down(connector: str) -> dict[str, Any]:
    return notification(alert("Down", connector=connector))


async def test_three_replicas_given_the_same_500_alerts_run_each_action_once(
    replicas: Make, target: Recorder
) -> None:
    daemons = [replicas(f"r{i}", rules=sharded()) for i in range(3)]
    await asyncio.gather(*(d.start() for d in daemons))
    leader = await leader_of(daemons)
    alerts = [
        notification(alert("Down", connector=f"c{i}", shard=str(i % SHARDS))) for i in range(500)
    ]

    async def deliver(daemon: DaemonProcess, seed: int) -> None:
        order = alerts[:]
        random.Random(seed).shuffle(order)  # each Alertmanager in its own order
        for start in range(0, len(order), 10):  # ten requests in flight per sender
            answers = await asyncio.gather(*(daemon.post(b) for b in order[start : start + 10]))
            assert {a.status_code for a in answers} == {200}

    await asyncio.gather(*(deliver(d, i) for i, d in enumerate(daemons)))
    await until(lambda: len(sent(target, "act")) >= 500, timeout=90)
    await asyncio.sleep(1.0)  # time enough for a wrong second run to show up
    acts = sent(target, "act")
    assert Counter(c for _, c, _ in acts) == Counter(f"c{i}" for i in range(500))
    leader_name = leader.config.parent.name
    assert {replica for replica, _, _ in acts} == {leader_name}  # the leader executes

    listing = await leader.api("/replicas")
    roles = sorted(r["role"] for r in listing["items"])
    assert roles == ["follower", "follower", "leader"]
    for d in daemons:
        metrics = (await d.client.get("/metrics")).text
        expected = 1.0 if d is leader else 0.0
        assert f"remediator_leader {expected}" in metrics


async def test_a_killed_leaders_timers_and_slack_messages_are_taken_over_within_10s(
    replicas: Make, target: Recorder, slack_api: SlackAPI
) -> None:
    extra = slack_config(slack_api)
    first = replicas("r0", after="3s", extra=extra)
    await first.start()
    assert await leader_of([first]) is first
    second = replicas("r1", after="3s", extra=extra)
    await second.start()
    port = slack_api.port
    await slack_api.stop()  # Slack unreachable: every message waits in the outbox
    for i in range(5):
        assert (await first.post(down(f"c{i}"))).status_code == 200
    await until(lambda: len(sent(target, "act")) == 5)
    first.kill(signal.SIGKILL)  # escalations due in ~3 s, every Slack message undelivered
    killed = time.time()
    await slack_api.start()
    assert slack_api.port == port

    assert await leader_of([second]) is second
    await until(lambda: len(sent(target, "page")) == 5, timeout=10)

    def parents_told() -> bool:
        parents = slack_api.parents()
        threads = [" ".join(m.text for m in slack_api.thread(p)) for p in parents]
        return len(parents) == 5 and all("page" in t for t in threads)

    await until(parents_told, timeout=max(0.1, killed + 10 - time.time()))
    assert time.time() - killed <= 10
    assert max(at for _, _, at in sent(target, "page")) - killed <= 10
    await asyncio.sleep(1.0)  # time enough for a duplicate to show up
    assert sorted(c for _, c, _ in sent(target, "page")) == [f"c{i}" for i in range(5)]
    assert {r for r, _, _ in sent(target, "page")} == {"r1"}
    assert sorted(c for _, c, _ in sent(target, "act")) == [f"c{i}" for i in range(5)]
    assert len(slack_api.parents()) == 5  # one parent per incident
    replies = Counter(
        (m.thread_ts, m.text, json.dumps(m.blocks)) for m in slack_api.messages if m.thread_ts
    )
    assert max(replies.values()) == 1, [k for k, n in replies.items() if n > 1]


async def test_a_leader_cut_off_from_the_database_acts_no_more_once_replaced(
    replicas: Make, target: Recorder, postgres_server: PostgresServer
) -> None:
    old = replicas("r0", heartbeat="1s", lease="3s", after="1s")
    await old.start()
    assert await leader_of([old]) is old
    new = replicas("r1", heartbeat="100ms", lease="2s", after="1s")
    await new.start()
    assert (await old.post(down("c1"))).status_code == 200
    await until(lambda: len(sent(target, "act")) == 1)  # tier 0 ran; the incident escalates

    admin = await postgres_server.admin()
    try:
        cut = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name LIKE 'r0%'"
        )
    finally:
        await admin.close()
    assert cut >= 2  # its pool and its election connection

    assert await leader_of([new]) is new
    since = (await new.api("/replicas"))["since"]
    await until(lambda: len(sent(target, "call")) == 1, timeout=15)
    await asyncio.sleep(1.5)  # the old leader's timers would have fired by now
    late = [(r, kind) for r, kind, at in _all(target) if r == "r0" and at > since]
    assert late == []
    assert Counter(kind for _, kind, _ in _all(target)) == {"act": 1, "page": 1, "call": 1}
    assert await role(old) == "follower"


def _all(target: Recorder) -> list[tuple[str, str, float]]:
    found = []
    for seen in target.server.seen:
        replica, action, _ = seen.path.strip("/").split("/")
        found.append((replica, action, seen.at))
    return found
