"""Benchmark 2, alert to action: webhook sent -> the action's request arrives at the target.

The load generator (bench/a2a_load.py, LOAD_CPU) sends 200 notifications/s, each a new alert
instance `seq` of BenchA2A, which opens an incident whose tier runs `a2a_call`: POST /a2a/<seq>
to the sink (LOAD_CPU), which answers 200 at once and notes when the request arrived. Both
timestamps are CLOCK_MONOTONIC on the same machine, so latency = arrival - send. The path it
measures, in the daemon: ack after the journal commit, the engine's batch (match, decide, commit
the incident and the claim, started in the same commit: offers.py), then the executor (the HTTP
request).

Baseline, same run: bench/servers.py `relay` on SERVER_CPU, which parses the webhook, answers
200 and sends the same request with aiohttp (the `http` kind's client): aiohttp in and out, no
journal, no decisions.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from bench.common import (
    LOAD_CPU,
    OUT,
    PYTHON,
    SERVER_CPU,
    Figure,
    Proc,
    Section,
    Workdir,
    daemon,
    free_port,
    helper,
    http_get,
    percentile,
    pinned,
    sink,
    wait_ready,
)
from bench.ingest import cpu_seconds, py_spy
from bench.workload import BENCH_RULES

RATE = 200.0
PACE_RATE = 400.0  # the daemon must still keep pace here (actions/s >= 0.95x alerts/s)
WARMUP = 1.0  # seconds at the rate before measuring, not counted


def _load(
    work: Workdir, port: int, seconds: float, first: int, name: str, rate: float = RATE
) -> dict[str, object]:
    out = work.path / f"{name}.json"
    argv = [
        PYTHON,
        "-m",
        "bench.a2a_load",
        "--port",
        str(port),
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        "--first",
        str(first),
        "--out",
        str(out),
    ]
    with Proc(pinned(LOAD_CPU, argv), work.path / f"{name}.log", grace=5) as proc:
        assert proc.proc is not None
        proc.proc.wait(timeout=seconds + 90)
        if proc.proc.returncode != 0:
            raise RuntimeError(f"load generator failed:\n{proc.tail()}")
    result: dict[str, object] = json.loads(out.read_text())
    return result


def _arrivals(sink_port: int, expected: int, limit: float = 30.0) -> dict[str, int]:
    deadline = time.monotonic() + limit
    while True:
        arrivals: dict[str, int] = json.loads(http_get(sink_port, "/_arrivals")[1])["arrivals"]
        if len(arrivals) >= expected or time.monotonic() > deadline:
            return arrivals
        time.sleep(0.1)


STAGES = (
    ("send -> handler took the body (journal received_at)", "received"),
    ("received -> engine batch started (journal commit, queue)", "batched"),
    ("batch -> claim start (decide; one the batch starts: stamped before its commit)", "claimed"),
    ("claim start -> attempt (the commit that starts it)", "attempted"),
    ("attempt -> request at the target (HTTP client)", "arrived"),
)


def stages(db: Path, sent: dict[int, int], arrivals: dict[str, int]) -> dict[str, list[float]]:
    """Per notification, the time spent in each stage (ms), from the daemon's own records.

    The daemon stamps with time.time(), the load generator and the sink with CLOCK_MONOTONIC;
    the offset between the two clocks is read here, on the same machine, once."""
    offset = time.time() - time.monotonic()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        journal = {
            json.loads(body)["alerts"][0]["labels"]["seq"]: (received, processed)
            for body, received, processed in conn.execute(
                "SELECT body, received_at, processed_at FROM journal"
            )
        }
        claims = {
            json.loads(context)["labels"]["seq"]: (started, attempt)
            for context, started, attempt in conn.execute(
                "SELECT c.context, c.started_at, a.started_at FROM claims c "
                "JOIN attempts a ON a.claim_id = c.id AND a.attempt = 1"
            )
        }
    finally:
        conn.close()
    out: dict[str, list[float]] = {key: [] for _, key in STAGES}
    for seq, t_sent in sent.items():
        key = str(seq)
        if key not in journal or key not in claims or key not in arrivals:
            continue
        received, processed = journal[key]
        started, attempt = claims[key]
        points = [
            t_sent / 1e9 + offset,
            received,
            processed,
            started,
            attempt,
            arrivals[key] / 1e9 + offset,
        ]
        for (_, name), a, b in zip(STAGES, points, points[1:], strict=False):
            out[name].append((b - a) * 1e3)
    return out


def measure(
    kind: str, seconds: float, profile: Path | None = None, rate: float = RATE, rules: str = ""
) -> dict[str, Any]:
    """One run against `kind` (daemon or relay) at `rate`: latency percentiles in ms, counts, and
    the server's CPU per notification (from the load's start until every action arrived)."""
    with Workdir.make(f"a2a-{kind}") as work:
        port = free_port()
        with sink(work) as sink_port:
            if kind == "daemon":
                server = daemon(work, work.config(sink_port, rules or BENCH_RULES), port)
            else:
                target = f"http://127.0.0.1:{sink_port}"
                server = helper(work, "relay", port, "--target", target, cpu=SERVER_CPU)
            spy: Proc | None = None
            with server:
                wait_ready(server, port)
                _load(work, port, WARMUP, 1_000_000, "warmup", rate)
                _arrivals(sink_port, int(WARMUP * rate))
                if profile is not None:
                    spy = py_spy(server.pid, seconds, profile, work)
                before = cpu_seconds(server.pid)
                try:
                    result = _load(work, port, seconds, 0, "load", rate)
                finally:
                    if spy is not None:
                        assert spy.proc is not None
                        spy.proc.wait(timeout=60)
                        spy.stop()
                sent = {int(k): v for k, v in result["sent"].items()}  # type: ignore[attr-defined]
                acked = {int(k): v for k, v in result["acked"].items()}  # type: ignore[attr-defined]
                arrivals = _arrivals(sink_port, len(sent) + int(WARMUP * rate))
                cpu = cpu_seconds(server.pid) - before
            summary = summarise(sent, acked, arrivals, result, rate)
            summary["cpu_us"] = cpu / max(len(sent), 1) * 1e6
            if kind == "daemon":
                summary["stages"] = stages(work.db, sent, arrivals)
    return summary


def summarise(
    sent: dict[int, int],
    acked: dict[int, list[int]],
    arrivals: dict[str, int],
    result: dict[str, object],
    rate: float = RATE,
) -> dict[str, Any]:
    latencies = [(arrivals[str(s)] - t) / 1e6 for s, t in sent.items() if str(s) in arrivals]
    ours = [arrivals[str(s)] for s in sent if str(s) in arrivals]
    span = (max(ours, default=0) - min(sent.values(), default=0)) / 1e9
    acks = [(a[0] - sent[s]) / 1e6 for s, a in acked.items() if a[1] == 200]
    windows = []
    ordered = sorted(sent)
    per_window = int(rate * 10)
    for i in range(0, len(ordered), per_window):
        chunk = [
            (arrivals[str(s)] - sent[s]) / 1e6
            for s in ordered[i : i + per_window]
            if str(s) in arrivals
        ]
        if chunk:
            windows.append(percentile(chunk, 99))
    return {
        "sent": len(sent),
        "acked_200": len(acks),
        "arrived": len(latencies),
        "missing": len(sent) - len(latencies),
        "send_seconds": float(result["send_seconds"]),  # type: ignore[arg-type]
        "alert_rate": len(sent) / float(result["send_seconds"]),  # type: ignore[arg-type]
        # actions/s: from the first send to the last action's arrival
        "action_rate": len(ours) / span if span > 0 else float("nan"),
        "p50": percentile(latencies, 50),
        "p90": percentile(latencies, 90),
        "p99": percentile(latencies, 99),
        "max": max(latencies, default=float("nan")),
        "ack_p50": percentile(acks, 50),
        "ack_p99": percentile(acks, 99),
        "p99_windows": windows,
    }


def run(quick: bool = False) -> Section:
    started = time.monotonic()
    seconds, base_seconds = (10.0, 5.0) if quick else (60.0, 20.0)
    section = Section("a2a", f"2. Alert to action at {RATE:.0f} notifications/s")
    base = measure("relay", base_seconds)
    full = measure("daemon", seconds)
    pace = measure("daemon", base_seconds, rate=PACE_RATE)
    section.figures += [
        Figure(
            "alert to action p50",
            full["p50"],
            "ms",
            "<= 5 ms",
            full["p50"] <= 5.0,
            base["p50"],
            "relay (aiohttp in, aiohttp out)",
        ),
        Figure(
            "alert to action p99",
            full["p99"],
            "ms",
            "<= 25 ms",
            full["p99"] <= 25.0,
            base["p99"],
            "relay (aiohttp in, aiohttp out)",
        ),
        Figure(
            "alert to action: actions missing",
            full["missing"],
            "",
            "0",
            full["missing"] == 0,
            full["sent"],
            "notifications sent",
        ),
        Figure(
            "daemon CPU per new incident with one HTTP action",
            full["cpu_us"],
            "µs",
            "<= 2.5x relay",
            full["cpu_us"] <= 2.5 * base["cpu_us"],
            base["cpu_us"],
            "relay CPU per relayed request",
        ),
        Figure(
            f"alert to action at {PACE_RATE:g}/s: actions/s",
            pace["action_rate"],
            "/s",
            ">= 0.95x alerts/s",
            pace["action_rate"] >= 0.95 * pace["alert_rate"] and pace["missing"] == 0,
            pace["alert_rate"],
            "alerts/s sent",
        ),
        Figure(
            f"alert to action at {PACE_RATE:g}/s: p99",
            pace["p99"],
            "ms",
            "-",
            None,
            base["p99"],
            f"relay at {RATE:g}/s",
        ),
    ]
    rows = ["| server | rate /s | s | sent | 200s | arrived | actions/s | p50 ms | p90 ms | "
            "p99 ms | max ms | ack p50 ms | ack p99 ms | CPU µs/notif. | "
            "p99 per 10 s window, ms |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r, s, rate in (
        ("relay", base, base_seconds, RATE),
        ("daemon", full, seconds, RATE),
        ("daemon", pace, base_seconds, PACE_RATE),
    ):
        windows = ", ".join(f"{w:.1f}" for w in r["p99_windows"])
        rows.append(
            f"| {name} | {rate:g} | {s:g} | {r['sent']:.0f} | {r['acked_200']:.0f} | "
            f"{r['arrived']:.0f} | {r['action_rate']:.0f} | "
            f"{r['p50']:.2f} | {r['p90']:.2f} | {r['p99']:.2f} | {r['max']:.1f} | "
            f"{r['ack_p50']:.2f} | {r['ack_p99']:.2f} | {r['cpu_us']:,.0f} | {windows} |"
        )
    section.details.append("\n".join(rows))
    breakdown = [
        "Where the daemon's time goes, per notification, from its own timestamps (journal "
        "received_at and processed_at, claim started_at, attempt started_at):",
        "",
        "| stage | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
    ]
    for title, key in STAGES:
        v = full["stages"][key]
        breakdown.append(
            f"| {title} | {percentile(v, 50):.2f} | {percentile(v, 90):.2f} | "
            f"{percentile(v, 99):.2f} | {max(v, default=float('nan')):.1f} |"
        )
    section.details.append("\n".join(breakdown))
    section.notes.append(
        f"One run of {seconds:g} s for the daemon ({full['arrived']:,} samples), one of "
        f"{base_seconds:g} s for the relay and one of {base_seconds:g} s for the daemon at "
        f"{PACE_RATE:g}/s, each after a {WARMUP:g} s warm-up at the same rate "
        "that is not counted; the p99 of each 10 s window shows the spread across the run. "
        "CPU: the server's user+system time from the load's start until every action arrived, "
        "per notification (each opens one incident with one HTTP action). The bench rule runs "
        "its actions one at a time per alert instance (`one_at_a_time_by: [seq]`): every "
        "instance is its own thing behind the one sink. "
        "Send time is taken in the load generator just before the request goes to its HTTP "
        "client, so loopback transit and client overhead (tens of µs) count against the daemon."
    )
    section.seconds = time.monotonic() - started
    return section


def profile(seconds: float) -> Path:
    out = OUT / "profile-a2a.txt"
    measure("daemon", seconds, profile=out)
    return out


if __name__ == "__main__":
    from bench.common import print_section

    s = run(quick=True)
    print_section(s)
    print("\n".join(s.details))
