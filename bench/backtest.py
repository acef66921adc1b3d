"""How long a backtest of a week at one-minute resolution takes (issue 18: under 30 s).

The week of tests/history.py (an error rate, connector states and a replication lag, each sample
a minute apart, 10,081 per series, with their ALERTS) is backfilled into a real Prometheus with
`promtool tsdb create-blocks-from openmetrics`. Then, several times each:

* baseline: the raw `query_range` calls a backtest makes (ALERTS, and each alerting rule's
  expression over the week), nothing else;
* `remediator backtest` from ALERTS: those queries, plus turning the samples into alerts and
  notifications, plus deciding them in the sandbox (rules/ingestion.yaml and rules/cdc.yaml);
* `remediator backtest --alert-rules`: each rule's expression with `for:` applied instead.

    .venv/bin/python -m bench.backtest          # prints the figures
    python -m bench.run --only backtest         # as part of bench/RESULTS.md
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import Figure, Section, median, print_section
from remediator.alert_rules import load_files
from remediator.backtest import Prometheus, backtest
from remediator.config import Config, load_config
from tests.history import backfill, fired, openmetrics, recent_week, rules, rules_file
from tests.peers import prometheus
from tests.test_replay import ROOT, main_config

TARGET = 30.0  # seconds, the issue's


def _config(workdir: Path) -> Config:
    os.environ.setdefault("TEST_WEBHOOK_TOKEN", "bench")
    os.environ.setdefault("TEST_API_TOKEN", "bench")
    urls = {
        name: "http://127.0.0.1:9"
        for name in ("ingestion-config", "feature-flags", "kafka-connect", "alertmanager")
    }
    path = workdir / "remediator.yaml"
    path.write_text(main_config(workdir, urls, 30, ROOT / "rules" / "ingestion.yaml"))
    return load_config(path)


async def _raw(url: str, since: float, until: float) -> float:
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60.0, trust_env=False) as client:
        prom = Prometheus(url, client)
        names = "|".join(sorted({r.alert for r in rules()}))
        query = f'last_over_time(ALERTS{{alertstate="firing", alertname=~"{names}"}}[59999ms])'
        await prom.query_range(query, since, until, 60.0)
        for rule in await prom.alerting_rules():
            await prom.query_range(rule.expr, since, until, 60.0)
    return time.perf_counter() - started


async def _backtest(
    config: Config, url: str, span: tuple[float, float], path: Path | None, incidents: int
) -> float:
    given = load_files([path]) if path else None
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60.0, trust_env=False) as client:
        result = await backtest(config, Prometheus(url, client), *span, 60.0, given)
    seconds = time.perf_counter() - started
    assert result.summary.incidents >= incidents, (result.summary.incidents, result.notes)
    return seconds


async def _measure(runs: int, fleet: int) -> tuple[list[float], list[float], list[float]]:
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as tmp:
        workdir = Path(tmp)
        week = recent_week(time.time(), fleet)
        incidents = 6 + 6 * fleet  # a seventh daily failure may straddle the week's end
        backfill(openmetrics(week, fired(week, rules())), workdir)
        (workdir / "alerts.yml").write_text(rules_file(rules()))
        setup = "global: {scrape_interval: 1m, evaluation_interval: 1m}\nrule_files: [alerts.yml]\n"
        config = _config(workdir)
        raw, alerts, given = [], [], []
        async with prometheus(workdir, setup) as url:
            span = (week.start, week.end)
            await _raw(url, *span)  # warm up: the blocks' first reads
            for _ in range(runs):
                raw.append(await _raw(url, *span))
                alerts.append(await _backtest(config, url, span, None, incidents))
                given.append(await _backtest(config, url, span, workdir / "alerts.yml", incidents))
    return raw, alerts, given


WEEKS = (
    ("the tests' week (10 alerts)", 0),
    ("a busy week (50 more connectors failing daily: 355 incidents)", 50),
)


def run(quick: bool = False) -> Section:
    started = time.monotonic()
    runs = 2 if quick else 5
    section = Section("backtest", "Backtest: a week at one-minute resolution (issue 18)")
    for title, fleet in WEEKS:
        raw, alerts, given = asyncio.run(_measure(runs, fleet))
        baseline = median(raw)
        for name, found in (("from ALERTS", alerts), ("--alert-rules", given)):
            section.figures.append(
                Figure(
                    f"backtest {name}, {title}: seconds",
                    median(found),
                    "s",
                    f"< {TARGET:g} s",
                    median(found) < TARGET,
                    baseline,
                    "the same query_range calls alone",
                    found,
                )
            )
    section.notes += [
        f"median of {runs} runs each; series of 10,081 samples (one a minute for 7 days) and "
        "their ALERTS, in a Prometheus 2.42 TSDB backfilled by promtool (tests/history.py)",
        "the difference between a backtest and its baseline is the sandbox: notifications "
        "decided by the daemon's own engine, guardrails and timers on a scratch SQLite store "
        "in /dev/shm",
    ]
    section.seconds = time.monotonic() - started
    return section


if __name__ == "__main__":
    logging.getLogger("remediator").setLevel(logging.ERROR)  # the sandbox's recorded refusals
    print_section(run())
