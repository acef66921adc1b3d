"""PostgreSQL stopped for 20 seconds under load, with the daemon in its own process.

A PostgreSQL server of this module's own (the test stops it), a daemon on it, and senders that
post distinct alerts without pause and send a 503'd alert again, as Alertmanager does. While the
server is down every webhook answers 503 with a JSON body and Retry-After, fast, and /readyz
fails; once it is back the daemon, never restarted, is ready again and acts again; every alert
it acknowledged is in the journal, decided, and acted on exactly once at the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import StartDaemon, base_config
from tests.payloads import alert, notification
from tests.peers import DaemonProcess
from tests.postgres import PostgresServer
from tests.standins import Recorder

pytestmark = pytest.mark.postgres

OUTAGE = 20.0  # seconds the server is down
SENDERS = 3
PACE = 0.05  # seconds between a sender's alerts
RESEND = 0.5  # before a 503'd alert is sent again (Alertmanager backs off longer)
FAST = 5.0  # no answer takes longer than this while the store is down

RULES = """
actions:
  act: {kind: http, target: svc, path: '/act/{n}', retries: 0}
rules:
  - name: outage
    match: '{alertname="Outage"}'
    incident_key: [alertname, n]
    tiers:
      - actions: [act]
"""


@dataclass
class Answer:
    n: int | None  # the alert's number; None for a /readyz probe
    sent: float
    answered: float
    status: int | None  # None: no HTTP answer at all (refused, reset, timed out)
    body: Any = None
    retry_after: str | None = None


@dataclass
class Load:
    """Senders of distinct alerts, and a /readyz prober, recording every answer."""

    daemon: DaemonProcess
    answers: list[Answer] = field(default_factory=list)
    probes: list[Answer] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    next_n: int = 0

    async def sender(self) -> None:
        """Alert after alert; a 503'd one again until it is acknowledged (also when stopping)."""
        while not self.stopping.is_set():
            n, self.next_n = self.next_n, self.next_n + 1
            while (await self._post(n)).status != 200:
                await asyncio.sleep(RESEND)
            await asyncio.sleep(PACE)

    async def _post(self, n: int) -> Answer:
        body = notification(alert("Outage", n=str(n)))
        sent = time.monotonic()
        try:
            r = await self.daemon.post(body)
            answer = Answer(n, sent, time.monotonic(), r.status_code, r.json(),
                            r.headers.get("Retry-After"))  # fmt: skip
        except httpx.HTTPError as e:
            answer = Answer(n, sent, time.monotonic(), None, repr(e))
        self._record(self.answers, answer)
        return answer

    async def prober(self) -> None:
        while not self.stopping.is_set():
            sent = time.monotonic()
            try:
                r = await self.daemon.client.get("/readyz")
                answer = Answer(None, sent, time.monotonic(), r.status_code, r.json())
            except httpx.HTTPError as e:
                answer = Answer(None, sent, time.monotonic(), None, repr(e))
            self._record(self.probes, answer)
            await asyncio.sleep(0.2)

    def _record(self, into: list[Answer], answer: Answer) -> None:
        into.append(answer)
        self.changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = 60.0) -> None:
        """Until the condition holds, looked at on every answer (and every 0.1 s)."""
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await self.changed.wait()

    def acknowledged(self, after: float = 0.0) -> list[int]:
        return [
            a.n for a in self.answers if a.status == 200 and a.sent >= after and a.n is not None
        ]


def during(answers: list[Answer], start: float, end: float) -> list[Answer]:
    """The answers to requests sent after `start` and answered before `end`."""
    return [a for a in answers if a.sent >= start and a.answered <= end]


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """This module's own server: the test stops it, which no other test's server may be."""
    pg = PostgresServer()
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()


async def test_postgres_stopped_for_20s_under_load(
    server: PostgresServer,
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dsn = server.dsn(await server.create_database())
    monkeypatch.setenv("TEST_PG_DSN", dsn)
    monkeypatch.setenv("TEST_STORE_BACKEND", "postgres")
    target = Recorder()
    await target.server.start()
    config = write_config(
        base_config({"svc": target.server.url}, "rule_files: [outage.yaml]\n"), outage=RULES
    )
    daemon = DaemonProcess(config)
    load = Load(daemon)
    tasks: list[asyncio.Task[None]] = []
    try:
        await daemon.start()
        assert daemon.proc is not None
        tasks = [asyncio.create_task(load.sender()) for _ in range(SENDERS)]
        tasks.append(asyncio.create_task(load.prober()))
        await load.until(lambda: len(load.acknowledged()) >= 30)

        await asyncio.to_thread(server.halt)
        down = time.monotonic()
        await asyncio.sleep(OUTAGE)
        up = time.monotonic()
        await server.resume()

        # ready again, and acknowledging again, with no restart
        await load.until(lambda: any(p.status == 200 for p in load.probes if p.sent > up))
        await load.until(lambda: len(load.acknowledged(after=up)) >= 30)
        load.stopping.set()
        await asyncio.gather(*tasks)
        assert daemon.proc.poll() is None, "the daemon exited"

        # while the server was down: 503 with a JSON body and Retry-After, fast; /readyz 503
        outage = during(load.answers, down, up)
        assert len(outage) >= 20, f"only {len(outage)} requests during the outage"
        assert {a.status for a in outage} == {503}, Counter(a.status for a in outage)
        assert all("store unavailable" in a.body["error"] for a in outage), outage[0].body
        assert all(a.retry_after is not None for a in outage)
        slowest = max(a.answered - a.sent for a in outage)
        assert slowest < FAST, f"an answer took {slowest:.1f}s while the store was down"
        probes = during(load.probes, down, up)
        assert probes, "no /readyz probe while the store was down"
        assert {p.status for p in probes} == {503}, probes
        assert all("store unreachable" in " ".join(p.body["problems"]) for p in probes)
        # every request got an HTTP answer, 200 or 503: nothing refused, reset or hung
        assert {a.status for a in load.answers} == {200, 503}

        # Every acknowledged alert is decided and its action settled: run once, or, for an
        # action in flight when the store went away, handled by its on_interrupted policy. The
        # leader loses its lock with its connection and its successor (the same process, once
        # PostgreSQL is back) finds that claim running: `escalate` tells a human, never a
        # second run. Known gap (issue 12): that action did succeed; its outcome should be
        # written rather than escalated.
        acked = load.acknowledged()
        assert len(acked) == len(set(acked)) == load.next_n
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            undecided, succeeded, interrupted, incidents = await store_counts(dsn)
            if undecided == 0 and succeeded + interrupted == incidents == len(acked):
                break
            await asyncio.sleep(0.1)
        assert (undecided, succeeded + interrupted, incidents) == (0, len(acked), len(acked))
        assert interrupted <= SENDERS, "only actions in flight at the outage are interrupted"
        acts = Counter(s.path for s in target.server.seen)
        assert set(acts.values()) == {1}, acts.most_common(3)  # nothing ran twice
        assert set(acts) <= {f"/act/{n}" for n in acked}  # nothing unacknowledged ran
        assert len(acts) >= succeeded  # every succeeded claim reached the target
    finally:
        load.stopping.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await daemon.close()
        await target.server.stop()


async def test_a_timer_armed_while_the_store_is_down_fires_once_it_is_back(
    server: PostgresServer,
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    start_daemon: StartDaemon,
) -> None:
    """Timers derive from the store: arming them while it is down fails, and must be tried again
    once it is back, without anything else changing (a mute's expiry here, due after the store
    is back: an expiry passed unarmed is not announced, whatever the store does)."""
    monkeypatch.setenv("TEST_PG_DSN", server.dsn(await server.create_database()))
    monkeypatch.setenv("TEST_STORE_BACKEND", "postgres")
    config = write_config(
        base_config({"svc": "http://127.0.0.1:9"}, "rule_files: [outage.yaml]\n"), outage=RULES
    )
    daemon = (await start_daemon(config)).daemon
    mute = await daemon.control.add_mute(
        rule="outage", target=None, matchers=None, duration=4.0, reason="drill", by="test"
    )
    await asyncio.to_thread(server.halt)
    try:
        await daemon.timers.stop()
        daemon.timers.start()  # no timer armed: arming needs the store, which is down
        await asyncio.sleep(1.0)
    finally:
        await server.resume()

    async def expired() -> bool:
        items = (await daemon.store.history(20, None)).items
        return any(
            e["event"] == "mute_expired" and f"Mute {mute.id} " in e["message"] for e in items
        )

    async with asyncio.timeout(15):
        while not await expired():
            await asyncio.sleep(0.1)


async def store_counts(dsn: str) -> tuple[int, int, int, int]:
    """Undecided journal entries, succeeded claims, interrupted claims, incidents."""
    conn = await asyncpg.connect(dsn)
    try:
        undecided = await conn.fetchval("SELECT count(*) FROM journal WHERE processed_at IS NULL")
        succeeded = await conn.fetchval("SELECT count(*) FROM claims WHERE status = 'succeeded'")
        interrupted = await conn.fetchval(
            "SELECT count(*) FROM claims WHERE status = 'interrupted'"
        )
        incidents = await conn.fetchval("SELECT count(*) FROM incidents")
    finally:
        await conn.close()
    return undecided, succeeded, interrupted, incidents
