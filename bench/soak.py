"""Soak: the daemon under a steady 100 notifications/s for 30 minutes, with escalations and
resolutions; its resident memory must grow less than 10 % after the first 5 minutes, and its
file descriptors and asyncio tasks must not grow.

The load: KEYS incident keys, each sent every KEYS/rate seconds (30 s at the defaults). A key's
episode is nine firing notifications then one resolved (a new startsAt each episode, so a new
incident): the first opens the incident and runs `act`, escalate_after (30 s) climbs to `page`
before the resolution, and the resolution runs `resume`. Episodes are staggered across keys (key
k's starts k % EPISODE turns earlier), so about 10 incidents open, escalate and resolve per
second, steadily, each with its three actions against the sink (three targets, as one target
runs one action at a time); only the first turn opens every key's incident at once, inside the
warm-up. (Before 2026-12-03 14:00 every key's episode started on the same turn: waves of 100
openings, escalations and resolutions a second for 30 s every 5 minutes, the first full one
just after the warm-up.) The daemon runs through
bench/soak_daemon.py, which samples RSS, fds and tasks every 10 s from inside the process.

Usage: python -m bench.soak [--minutes 30] [--rate 100] [--out bench/out/soak.json]
Not part of CI (it takes half an hour); its result is recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    LOAD_CPU,
    OUT,
    PYTHON,
    SERVER_CPU,
    WEBHOOK_TOKEN,
    Proc,
    Workdir,
    free_port,
    helper,
    pinned,
    wait_ready,
)
from bench.workload import fingerprint

KEYS = 3000
EPISODE = 10  # notifications per key and episode: nine firing, then the resolution
WARMUP = 300.0  # seconds: growth is measured from here
RULES = """\
actions:
  act: {kind: http, target: sink, method: POST, path: "/soak/act/{key}", retries: 0}
  page: {kind: http, target: feature-flags, method: POST, path: "/soak/page/{key}", retries: 0}
  resume: {kind: http, target: migration-api, method: POST, path: "/soak/resume/{key}", retries: 0}
rules:
  - name: soak
    match: '{alertname="Soak"}'
    incident_key: [alertname, key]
    tiers:
      - {name: act, actions: [act], escalate_after: 30s}
      - {name: page, actions: [page]}
    on_resolved:
      - {action: resume, if_ran: [act]}
"""


def soak_notification(i: int) -> dict[str, Any]:
    key, turn = i % KEYS, i // KEYS
    episode, phase = divmod(turn + key % EPISODE, EPISODE)
    status = "resolved" if phase == EPISODE - 1 else "firing"
    labels = {"alertname": "Soak", "key": f"k{key}", "severity": "critical"}
    starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_790_000_000 + episode * 600))
    alert = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"soak {key}"},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2030-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.soak:9090/graph",
        "fingerprint": fingerprint(labels),
    }
    return {
        "version": "4",
        "groupKey": f'{{}}:{{key="k{key}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "remediator",
        "groupLabels": {"key": f"k{key}"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.soak:9093",
        "alerts": [alert],
    }


async def load(port: int, rate: float, seconds: float) -> dict[str, int]:
    url = f"http://127.0.0.1:{port}/alerts"
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
    outcomes: dict[str, int] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def send(session: aiohttp.ClientSession, i: int) -> None:
        try:
            async with session.post(url, json=soak_notification(i), headers=headers) as r:
                await r.read()
                outcome = str(r.status)
        except aiohttp.ClientError as e:
            outcome = type(e).__name__
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=64), timeout=timeout
    ) as session:
        start = time.monotonic()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(send(session, i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    return outcomes


def summarise(
    samples: list[dict[str, float]], outcomes: dict[str, int], warmup: float
) -> dict[str, Any]:
    after = [s for s in samples if s["t"] >= warmup]
    base, last = after[0], after[-1]
    return {
        "samples": len(samples),
        "rss_kib_at_warmup": base["rss_kib"],
        "rss_kib_at_end": last["rss_kib"],
        "rss_kib_max_after_warmup": max(s["rss_kib"] for s in after),
        "rss_growth_after_warmup": last["rss_kib"] / base["rss_kib"] - 1,
        "fds": [min(s["fds"] for s in after), max(s["fds"] for s in after)],
        "fds_at_warmup_and_end": [base["fds"], last["fds"]],
        "tasks": [min(s["tasks"] for s in after), max(s["tasks"] for s in after)],
        "tasks_at_warmup_and_end": [base["tasks"], last["tasks"]],
        "queued_claims_max_after_warmup": max(s.get("queued_claims", 0) for s in after),
        "answers": outcomes,
    }


def run(minutes: float, rate: float, warmup: float = WARMUP) -> dict[str, Any]:
    with Workdir.make("soak") as work:
        sink_port, port = free_port(), free_port()
        samples_file = work.path / "samples.jsonl"
        config = work.config(sink_port, RULES)
        argv = [
            PYTHON, "-m", "bench.soak_daemon", "--config", str(config),
            "--listen", f"127.0.0.1:{port}", "--samples", str(samples_file),
        ]  # fmt: skip
        env = {"BENCH_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "BENCH_API_TOKEN": "bench-api-token"}
        with (
            helper(work, "sink", sink_port, cpu=LOAD_CPU) as sink,
            Proc(pinned(SERVER_CPU, argv), work.path / "daemon.log", env=env) as daemon,
        ):
            wait_ready(sink, sink_port, "/ready")  # an action before the sink listens would fail
            wait_ready(daemon, port)
            outcomes = asyncio.run(load(port, rate, minutes * 60))
            time.sleep(15)  # the last sample after the load
            log = daemon.tail(20)
        samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
        result = summarise(samples, outcomes, warmup)
        lines = (work.path / "daemon.log").read_text(errors="replace").splitlines()
        errors = [line for line in lines if " ERROR " in line]
        result |= {
            "minutes": minutes,
            "rate": rate,
            "error_log_lines": len(errors),
            "first_errors": errors[:5],
            "warning_log_lines": sum(" WARNING " in line for line in lines),
            "log_tail": log,
        }
        trace = samples_file.with_suffix(".tracemalloc.txt")  # with SOAK_TRACEMALLOC set
        if trace.exists():
            result["tracemalloc"] = trace.read_text().splitlines()
        result["series"] = samples
        return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--warmup", type=float, default=WARMUP, help="seconds before growth counts")
    parser.add_argument("--out", type=Path, default=OUT / "soak.json")
    args = parser.parse_args()
    result = run(args.minutes, args.rate, args.warmup)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    shown = {k: v for k, v in result.items() if k not in ("series", "tracemalloc")}
    print(json.dumps(shown, indent=2))


if __name__ == "__main__":
    main()
