"""leader.py in one process: two daemons on one PostgreSQL database (tests/postgres.py), the
first elected, the second a follower; an ingest-only replica; SQLite's one process. The
multi-process failures (SIGKILL, a cut connection) are tests/test_replicas.py."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from remediator.clock import FakeClock
from remediator.config import load_config
from remediator.server import Daemon
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN, base_config
from tests.payloads import alert, notification
from tests.postgres import replica_store
from tests.standins import Recorder
from tests.test_replicas import LADDER

Start = Callable[..., Awaitable[tuple[Daemon, httpx.AsyncClient]]]


@pytest.fixture
async def start(
    write_config: Callable[..., Path],
    target: Recorder,
    postgres_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Start]:
    monkeypatch.setenv("TEST_PG_DSN", postgres_dsn)
    monkeypatch.setenv("TEST_STORE_BACKEND", "postgres")
    started: list[tuple[Daemon, httpx.AsyncClient]] = []
    clock = FakeClock()

    async def make(role: str = "auto", sqlite: bool = False) -> tuple[Daemon, httpx.AsyncClient]:
        main = base_config({"svc0": target.server.url}, "rule_files: [rules.yaml]\n")
        pg = replica_store()
        main = main.replace("store: {postgres: {dsn_env: TEST_PG_DSN}}", pg)
        if sqlite:
            main = main.replace(pg, "store: {sqlite: {path: state/remediator.db}}")
        rules = textwrap.dedent(LADDER % {"after": "5m"})
        daemon = Daemon(load_config(write_config(main, rules=rules)), clock=clock, role=role)
        await daemon.start("127.0.0.1", 0)
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.port}")
        started.append((daemon, client))
        return daemon, client

    yield make
    for daemon, client in reversed(started):
        await client.aclose()
        await daemon.stop()


async def post(client: httpx.AsyncClient, connector: str) -> None:
    body = notification(alert("Down", connector=connector))
    r = await client.post(
        "/alerts", json=body, headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    )
    assert r.status_code == 200


async def ready(client: httpx.AsyncClient) -> dict[str, object]:
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    found: dict[str, object] = r.json()
    return found


async def test_the_first_replica_leads_the_second_follows_and_only_the_leader_decides(
    start: Start, target: Recorder
) -> None:
    leader, leader_client = await start()
    follower, follower_client = await start()
    assert (await ready(leader_client))["role"] == "leader"
    assert (await ready(follower_client))["role"] == "follower"
    assert (leader.store.epoch, follower.store.epoch) == (1, 0)  # 0: every decision refused

    await post(follower_client, "c1")  # acknowledged by the follower, decided by the leader
    assert leader.feed is not None
    await leader.feed.read()
    await leader.engine.idle()
    await leader.executor.idle()
    assert [s.path for s in target.server.seen] == ["/act/c1"]
    assert follower.engine.open == {}

    replicas = (
        await follower_client.get(
            "/api/v1/replicas", headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
    ).json()
    assert replicas["epoch"] == 1
    assert [r["role"] for r in replicas["items"]] in (["leader"], ["follower"])  # one host:pid


async def test_an_ack_through_a_follower_stops_the_leaders_escalation(
    start: Start, target: Recorder
) -> None:
    leader, leader_client = await start()
    _, follower_client = await start()
    await post(leader_client, "c1")
    await leader.engine.idle()
    await leader.executor.idle()
    [incident] = leader.engine.open.values()
    r = await follower_client.post(
        f"/api/v1/incidents/{incident.id}/ack",
        json={"by": "ana"},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    assert r.status_code == 200, r.text
    assert not leader.engine.open[next(iter(leader.engine.open))].acked  # the leader's cache
    leader.clock.advance(600)  # type: ignore[attr-defined]
    await leader.timers.run_due()
    await leader.executor.idle()
    assert [s.path for s in target.server.seen] == ["/act/c1"]  # no page: acknowledged


async def test_an_ingest_replica_acknowledges_and_never_leads(start: Start) -> None:
    daemon, client = await start(role="ingest")  # alone on its database, still not leading
    assert (await ready(client))["role"] == "ingest"
    await post(client, "c1")
    assert [i for i, _ in await daemon.store.unprocessed_journal()] == [1]
    assert daemon.engine.started is False


async def test_on_sqlite_the_one_process_leads(start: Start) -> None:
    daemon, client = await start(sqlite=True)
    assert daemon.roles.leading
    assert daemon.store.epoch == 1
    assert "role" not in await ready(client)  # SQLite's /readyz is as it was
