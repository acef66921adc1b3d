"""Benchmark: several replicas on one PostgreSQL database.

* Failover: two replicas, default lease and heartbeat (store.postgres.lease 8 s, heartbeat 1 s).
  Each trial SIGKILLs the leader, posts a new alert to the survivor at once (a follower
  acknowledges), and times the kill to the survivor's decision of that alert's action (the
  claim's `claimed_at`, read from the database). The killed replica is started again as a
  follower before the next trial. 20 trials: p50 and max, beside the lease and the heartbeat.
* Ingest with 1 and with 3 replicas on one database, in the same run: the same load (three wrk
  processes, bench/ingest.py's harness, 32 connections each) on one replica or one per replica.
  All replicas and PostgreSQL share this 2-core machine (the replicas pinned to one core), so
  this shows what several replicas cost, not how they scale: more replicas on more machines
  share the acknowledgement work, while one leader decides for all of them.

    .venv/bin/python -m bench.failover [--quick]
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import asyncpg
import httpx

from bench import ingest
from bench.common import (
    WEBHOOK_TOKEN,
    Figure,
    Proc,
    Section,
    Workdir,
    daemon,
    free_port,
    http_get,
    main_of,
    median,
    percentile,
    sink,
    wait_ready,
)
from bench.postgres_store import SQLITE_STORE, server
from bench.workload import BENCH_RULES, write_pool
from tests.payloads import alert, notification
from tests.postgres import PostgresServer

LEASE, HEARTBEAT = 8.0, 1.0  # the defaults (store.postgres.lease, heartbeat)
STORE = "store: {postgres: {dsn_env: BENCH_PG_DSN, pool_size: 8}}"
RULES = """
actions:
  act: {kind: http, target: sink, path: "/act/{connector}", retries: 0}
rules:
  - name: failover
    match: '{alertname="Failover"}'
    incident_key: [alertname, connector]
    tiers:
      - actions: [act]
"""


def replica_config(work: Workdir, sink_port: int, rules: str, dsn: str) -> Path:
    os.environ["BENCH_PG_DSN"] = dsn
    config = work.config(sink_port, rules)
    text = config.read_text()
    assert SQLITE_STORE in text
    config.write_text(text.replace(SQLITE_STORE, STORE))
    return config


@contextmanager
def replicas(work: Workdir, config: Path, n: int) -> Iterator[list[tuple[Proc, int]]]:
    with ExitStack() as stack:
        started = []
        for i in range(n):
            port = free_port()
            proc = stack.enter_context(daemon(work, config, port, name=f"replica-{i}"))
            started.append((proc, port))
        for proc, port in started:
            wait_ready(proc, port)
        yield started


def role(port: int) -> str:
    try:
        status, body = http_get(port, "/readyz", timeout=1.0)
    except OSError:
        return "down"
    return str(json.loads(body).get("role")) if status in (200, 503) else "down"


def leader_of(running: list[tuple[Proc, int]], timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i, (proc, port) in enumerate(running):
            if proc.alive() and role(port) == "leader":
                return i
        time.sleep(0.01)
    raise RuntimeError("no leader")


async def _claims(dsn: str) -> tuple[int, float | None]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT count(*), max(claimed_at) FROM claims")
    finally:
        await conn.close()
    assert row is not None
    return int(row[0]), row[1]


def post(port: int, body: dict[str, object]) -> None:
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    for _ in range(100):
        r = httpx.post(f"http://127.0.0.1:{port}/alerts", json=body, headers=headers)
        if r.status_code == 200:
            return
        time.sleep(0.01)
    raise RuntimeError(f"the survivor did not acknowledge: {r.status_code} {r.text}")


def measure_failover(trials: int, pg: PostgresServer) -> list[float]:
    dsn = pg.dsn(asyncio.run(pg.create_database()))
    found: list[float] = []
    with (
        Workdir.make("failover") as work,
        sink(work) as sink_port,
    ):
        config = replica_config(work, sink_port, RULES, dsn)
        with replicas(work, config, 2) as running:
            for trial in range(trials):
                i = leader_of(running)
                proc, port = running[i]
                survivor_port = running[1 - i][1]
                count, _ = asyncio.run(_claims(dsn))
                killed = time.time()
                proc.stop(signal.SIGKILL)
                post(survivor_port, notification(alert("Failover", connector=f"t{trial}")))
                deadline = time.monotonic() + 60
                while (now := asyncio.run(_claims(dsn)))[0] == count:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the survivor decided nothing within 60 s")
                    time.sleep(0.02)
                assert now[1] is not None
                found.append(now[1] - killed)
                again = daemon(work, config, port, name=f"replica-{i}-{trial}").start()
                wait_ready(again, port)
                running[i] = (again, port)
            for proc, _ in running:
                proc.stop()
    return found


def measure_ingest(n: int, seconds: float, pg: PostgresServer) -> ingest.Run:
    """Three wrk processes on n replicas (one each on three, all on the one)."""
    dsn = pg.dsn(asyncio.run(pg.create_database()))
    with (
        Workdir.make(f"replicas-{n}") as work,
        sink(work) as sink_port,
    ):
        pool = work.path / "pool-1.tsv"
        write_pool(pool, 1, ingest.POOL[1])
        config = replica_config(work, sink_port, BENCH_RULES, dsn)
        with (
            replicas(work, config, n) as running,
            concurrent.futures.ThreadPoolExecutor(3) as threads,
        ):
            ports = [running[i % n][1] for i in range(3)]
            outs = [work.path / f"wrk-{i}.json" for i in range(3)]
            raws = list(
                threads.map(
                    lambda a: ingest.wrk(a[0], pool, 1, seconds, a[1]),
                    zip(ports, outs, strict=True),
                )
            )
    runs = [ingest._summarise(f"{n} replicas", 1, raw, 0.0) for raw in raws]
    return ingest.Run(
        kind=f"{n} replicas",
        alerts=1,
        seconds=median([r.seconds for r in runs]),
        ok=sum(r.ok for r in runs),
        other={k: sum(r.other.get(k, 0) for r in runs) for r in runs for k in r.other},
        p50_ms=median([r.p50_ms for r in runs]),
        p99_ms=max(r.p99_ms for r in runs),
        max_ms=max(r.max_ms for r in runs),
        cpu_us=0.0,
    )


def run(quick: bool = False) -> Section:
    started = time.monotonic()
    trials, seconds = (5, 3.0) if quick else (20, 5.0)
    section = Section("failover", "Several replicas on PostgreSQL: failover and ingest")
    with server() as pg:
        failover = measure_failover(trials, pg)
        one = measure_ingest(1, seconds, pg)
        three = measure_ingest(3, seconds, pg)
    section.figures += [
        Figure("failover: kill to successor's decision p50", percentile(failover, 50), "s",
               f"<= 10 s (lease {LEASE:g} s)", percentile(failover, 50) <= 10, LEASE,
               "configured lease", runs=failover),
        Figure("failover: kill to successor's decision max", max(failover), "s",
               "<= 10 s", max(failover) <= 10, HEARTBEAT, "configured heartbeat"),
        Figure("ingest, 3 replicas, one database", three.rate, "notif./s", "- (see note)", None,
               one.rate, "1 replica, same load, same run"),
        Figure("ingest p99, 3 replicas", three.p99_ms, "ms", "-", None, one.p99_ms,
               "1 replica p99"),
    ]  # fmt: skip
    section.details.append(
        "| trial | kill to decision s |\n|---|---|\n"
        + "\n".join(f"| {i + 1} | {v:.3f} |" for i, v in enumerate(failover))
    )
    section.notes.append(
        f"Failover: {trials} trials, two replicas, lease {LEASE:g} s and heartbeat {HEARTBEAT:g} s "
        "(the defaults): a killed leader's lock goes with its session at once, so the successor "
        "takes over at its next try (every heartbeat), then recovers and decides. Ingest: "
        f"{seconds:g} s of three wrk processes (32 connections each) on 1 or 3 replicas; "
        f"non-200 answers: 1 replica {one.other or 0}, 3 replicas {three.other or 0}. This "
        "2-core machine runs every replica, PostgreSQL and the load generator: it cannot show "
        "scaling, only what several replicas cost on one machine."
    )
    section.seconds = time.monotonic() - started
    return section


if __name__ == "__main__":
    main_of(run)
