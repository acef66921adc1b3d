"""Benchmark: the PostgreSQL store beside SQLite's, in the same run.

* Ingest (bench/ingest.py's harness: wrk, 32 connections, 1-alert notifications): the bare
  handler, then ack-only and the full pipeline on SQLite, then on PostgreSQL, alternating, so
  drift of the machine hits all five. Target: PostgreSQL's full pipeline >= 0.8x SQLite's.
* Alert to action at 200 notifications/s on PostgreSQL (bench/a2a.py's harness), beside the
  relay (aiohttp in, aiohttp out). Target: p99 <= 25 ms.

The PostgreSQL server is local (tests/postgres.py), durable as deployed (fsync on, the store's
synchronous_commit=on), a fresh database per run; it shares the machine's cores with the load
generator and the daemon, which a real deployment's database would not.

    .venv/bin/python -m bench.postgres_store [--quick]
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg

from bench import a2a, ingest
from bench.common import (
    API_TOKEN,
    PYTHON,
    SERVER_CPU,
    WEBHOOK_TOKEN,
    Figure,
    Proc,
    Section,
    Workdir,
    daemon,
    free_port,
    main_of,
    median,
    percentile,
    pinned,
    sink,
    wait_ready,
)
from bench.workload import BENCH_RULES, write_pool
from tests.postgres import PostgresServer

SQLITE_STORE = "store: {sqlite: {path: state/remediator.db}}"
POSTGRES_STORE = "store: {postgres: {dsn_env: BENCH_PG_DSN, pool_size: 8}}"


@contextmanager
def server() -> Iterator[PostgresServer]:
    pg = PostgresServer(durable=True)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()


def on_postgres(work: Workdir, config: Path, pg: PostgresServer) -> Path:
    """The config with a fresh PostgreSQL database as its store ($BENCH_PG_DSN)."""
    name = asyncio.run(pg.create_database())
    os.environ["BENCH_PG_DSN"] = pg.dsn(name)
    text = config.read_text()
    assert SQLITE_STORE in text
    config.write_text(text.replace(SQLITE_STORE, POSTGRES_STORE))
    return config


async def _pg_journal(dsn: str, acked: set[int]) -> tuple[int, int, int]:
    """(acknowledged ids missing from the journal, journal rows, undecided rows)."""
    conn = await asyncpg.connect(dsn)
    try:
        present = {r["id"] for r in await conn.fetch("SELECT id FROM journal")}
        undecided = await conn.fetchval("SELECT count(*) FROM journal WHERE processed_at IS NULL")
    finally:
        await conn.close()
    return len(acked - present), len(present), int(undecided)


def _pg_run(
    work: Workdir, kind: str, sink_port: int, pool: Path, seconds: float, pg: PostgresServer
) -> ingest.Run:
    port = free_port()
    config = on_postgres(work, work.config(sink_port, BENCH_RULES), pg)
    env = {"BENCH_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "BENCH_API_TOKEN": API_TOKEN}
    if kind == "ack-only":
        argv = [PYTHON, "-m", "bench.ack_only", str(config), str(port)]
        proc = Proc(pinned(SERVER_CPU, argv), work.path / "ack-only.log", env=env)
    else:
        proc = daemon(work, config, port)
    out = work.path / f"wrk-pg-{kind}.json"
    with proc:
        wait_ready(proc, port)
        before = ingest.cpu_seconds(proc.pid)
        raw = ingest.wrk(port, pool, 1, seconds, out)
        cpu = ingest.cpu_seconds(proc.pid) - before
        result = ingest._summarise(f"postgres {kind}", 1, raw, cpu)
        dsn = os.environ["BENCH_PG_DSN"]
        acked = {int(line) for line in Path(f"{out}.ids").read_text().split()}
        if kind == "full":
            _, _, result.undecided_at_end = asyncio.run(_pg_journal(dsn, acked))
        proc.stop(signal.SIGKILL)  # what is acknowledged must survive a crash
    result.missing, result.journal_rows, _ = asyncio.run(_pg_journal(dsn, acked))
    return result


def measure_ingest(runs: int, seconds: float, pg: PostgresServer) -> dict[str, list[ingest.Run]]:
    found: dict[str, list[ingest.Run]] = {
        k: []
        for k in ("bare", "sqlite ack-only", "sqlite full", "postgres ack-only", "postgres full")
    }
    with Workdir.make("pg-ingest") as work:
        pool = work.path / "pool-1.tsv"
        write_pool(pool, 1, ingest.POOL[1])
        with sink(work) as sink_port:
            for i in range(runs):
                found["bare"].append(ingest.run_bare(work, pool, 1, seconds))
                with Workdir.make(f"pg-ingest-sa-{i}") as d:
                    found["sqlite ack-only"].append(
                        ingest.run_ack_only(d, sink_port, pool, 1, seconds)
                    )
                with Workdir.make(f"pg-ingest-sf-{i}") as d:
                    found["sqlite full"].append(ingest.run_full(d, sink_port, pool, 1, seconds))
                with Workdir.make(f"pg-ingest-pa-{i}") as d:
                    found["postgres ack-only"].append(
                        _pg_run(d, "ack-only", sink_port, pool, seconds, pg)
                    )
                with Workdir.make(f"pg-ingest-pf-{i}") as d:
                    found["postgres full"].append(_pg_run(d, "full", sink_port, pool, seconds, pg))
    return found


def ingest_figures(found: dict[str, list[ingest.Run]]) -> list[Figure]:
    rate = {k: median([r.rate for r in v]) for k, v in found.items()}
    pg_runs = found["postgres ack-only"] + found["postgres full"]
    missing = sum(r.missing for r in pg_runs)
    full, sqlite_full = rate["postgres full"], rate["sqlite full"]
    return [
        Figure(
            "postgres ingest 1-alert, full pipeline: notifications/s",
            full,
            "/s",
            ">= 0.8x sqlite full",
            full >= 0.8 * sqlite_full,
            sqlite_full,
            "sqlite full pipeline, same run",
            [r.rate for r in found["postgres full"]],
        ),
        Figure(
            "postgres ingest 1-alert, ack only: notifications/s",
            rate["postgres ack-only"],
            "/s",
            "- (diagnostic)",
            None,
            rate["sqlite ack-only"],
            "sqlite ack only, same run",
            [r.rate for r in found["postgres ack-only"]],
        ),
        Figure(
            "sqlite ingest 1-alert, full pipeline: notifications/s",
            sqlite_full,
            "/s",
            "- (same-run reference)",
            None,
            rate["bare"],
            "bare aiohttp, same run",
            [r.rate for r in found["sqlite full"]],
        ),
        Figure(
            "postgres ingest 1-alert: acked but missing",
            float(missing),
            "",
            "0",
            missing == 0,
            float(sum(r.ok for r in pg_runs)),
            "acknowledged (all postgres runs)",
        ),
    ]


def _a2a_stages(dsn: str, sent: dict[int, int], arrivals: dict[str, int]) -> dict[str, list[float]]:
    async def rows() -> tuple[list[Any], list[Any]]:
        conn = await asyncpg.connect(dsn)
        try:
            journal = await conn.fetch("SELECT body, received_at, processed_at FROM journal")
            claims = await conn.fetch(
                "SELECT c.context, c.started_at, a.started_at AS attempt FROM claims c "
                "JOIN attempts a ON a.claim_id = c.id AND a.attempt = 1"
            )
        finally:
            await conn.close()
        return journal, claims

    journal_rows, claim_rows = asyncio.run(rows())
    offset = time.time() - time.monotonic()
    journal = {
        json.loads(r["body"])["alerts"][0]["labels"]["seq"]: (r["received_at"], r["processed_at"])
        for r in journal_rows
    }
    claims = {
        json.loads(r["context"])["labels"]["seq"]: (r["started_at"], r["attempt"])
        for r in claim_rows
    }
    out: dict[str, list[float]] = {key: [] for _, key in a2a.STAGES}
    for seq, t_sent in sent.items():
        key = str(seq)
        if key in journal and key in claims and key in arrivals:
            points = [
                t_sent / 1e9 + offset,
                *journal[key],
                *claims[key],
                arrivals[key] / 1e9 + offset,
            ]
            for (_, name), a, b in zip(a2a.STAGES, points, points[1:], strict=False):
                out[name].append((b - a) * 1e3)
    return out  # fmt: skip


def measure_a2a(seconds: float, pg: PostgresServer) -> dict[str, Any]:
    with Workdir.make("pg-a2a") as work:
        port = free_port()
        with sink(work) as sink_port:
            config = on_postgres(work, work.config(sink_port, BENCH_RULES), pg)
            with daemon(work, config, port) as server_proc:
                wait_ready(server_proc, port)
                a2a._load(work, port, a2a.WARMUP, 1_000_000, "warmup")
                result = a2a._load(work, port, seconds, 0, "load")
                sent = {int(k): v for k, v in result["sent"].items()}  # type: ignore[attr-defined]
                acked = {int(k): v for k, v in result["acked"].items()}  # type: ignore[attr-defined]
                arrivals = a2a._arrivals(sink_port, len(sent) + int(a2a.WARMUP * a2a.RATE))
            summary = a2a.summarise(sent, acked, arrivals, result)
            summary["stages"] = _a2a_stages(os.environ["BENCH_PG_DSN"], sent, arrivals)
    return summary


def run(quick: bool = False) -> Section:
    started = time.monotonic()
    runs, seconds = (1, 3.0) if quick else (3, 5.0)
    a2a_seconds, relay_seconds = (10.0, 5.0) if quick else (30.0, 10.0)
    section = Section("postgres", "PostgreSQL store beside SQLite (same run)")
    with server() as pg:
        found = measure_ingest(runs, seconds, pg)
        relay = a2a.measure("relay", relay_seconds)
        sqlite_a2a = a2a.measure("daemon", a2a_seconds)
        full = measure_a2a(a2a_seconds, pg)
    section.figures += ingest_figures(found)
    section.figures += [
        Figure("postgres alert to action p50", full["p50"], "ms", "- (diagnostic)", None,
               sqlite_a2a["p50"], "sqlite daemon, same run"),
        Figure("postgres alert to action p99", full["p99"], "ms", "<= 25 ms", full["p99"] <= 25.0,
               sqlite_a2a["p99"], "sqlite daemon, same run"),
        Figure("postgres alert to action: actions missing", full["missing"], "", "0",
               full["missing"] == 0, full["sent"], "notifications sent"),
        Figure("relay alert to action p99", relay["p99"], "ms", "- (baseline)", None, relay["p50"],
               "relay p50"),
    ]  # fmt: skip
    rows = ["| run | server | acked notif./s | ack p50 ms | ack p99 ms | server CPU µs/notif. | "
            "non-200 / errors | missing |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for kind, results in found.items():
        for i, r in enumerate(results):
            missing = "-" if kind == "bare" else str(r.missing)
            rows.append(
                f"| {i + 1} | {kind} | {r.rate:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
                f"{r.cpu_us:,.0f} | {r.other or 0} | {missing} |"
            )
    section.details.append("\n".join(rows))
    stages = ["| stage (postgres daemon) | p50 ms | p99 ms |", "|---|---|---|"]
    for title, key in a2a.STAGES:
        v = full["stages"][key]
        stages.append(f"| {title} | {percentile(v, 50):.2f} | {percentile(v, 99):.2f} |")
    section.details.append("\n".join(stages))
    section.notes.append(
        f"Ingest: {runs} runs of {seconds:g} s per server, alternating; medians. Alert to action: "
        f"{a2a_seconds:g} s at {a2a.RATE:.0f}/s per store after a {a2a.WARMUP:g} s warm-up. "
        "The machine is shared with other work: read the ratios, not the absolute figures."
    )
    section.seconds = time.monotonic() - started
    return section


if __name__ == "__main__":
    main_of(run)
