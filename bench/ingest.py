"""Benchmark 1, ingest: the full pipeline against a bare aiohttp handler, same load generator.

wrk (one thread, 32 connections, on LOAD_CPU) posts notifications built by post_alerts.lua from
a pool of label sets (see workload.py) for a fixed time, to either

* `remediator serve` on SERVER_CPU: bearer auth, validation, the journal at synchronous=FULL with
  group commit, then the engine (dedupe, rule matching, decisions, claims) and the executor
  sending the actions to the sink; or
* the bare handler on SERVER_CPU (bench/servers.py `bare`), which parses and answers 200;
* as a diagnostic without a target, the daemon with its engine unplugged (bench/ack_only.py):
  auth, validation, the journal commit and the 200, nothing decided: what acknowledging alone
  costs, to separate it from the decisions and actions that share the core.

Runs alternate bare, ack-only and full so that drift of the machine hits all three. After each
full run the daemon is given time to decide its backlog, then killed with SIGKILL (the ack-only
daemon too), and every journal id it acknowledged is looked up in the SQLite file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    API_TOKEN,
    LOAD_CPU,
    OUT,
    PYTHON,
    ROOT,
    SERVER_CPU,
    WEBHOOK_TOKEN,
    Figure,
    Proc,
    Section,
    Workdir,
    daemon,
    free_port,
    helper,
    median,
    pinned,
    sink,
    wait_ready,
)
from bench.workload import BENCH_RULES, write_pool

WRK = shutil.which("wrk") or "/usr/bin/wrk"
LUA = ROOT / "bench" / "post_alerts.lua"
CONNECTIONS = 32
RESOLVE_P = 0.1
# the repeat-heavy mix: 2.5 % of alerts resolve and 2.5 % fire again as a new instance, so 95 % of
# notifications repeat a known firing alert (what Alertmanager's repeat_interval produces)
REPEATS_RESOLVE_P = 0.025
REPEATS_POOL = 200  # label sets: after the first 200 notifications, the mix is what it says
# the targets per payload size: notifications/s as a share of bare's, ack p99 (issue 17)
TARGETS = {1: (0.5, 20.0), 50: (0.25, 50.0)}
REPEATS_TARGET = 0.6
POOL = {1: 2000, 50: 100}  # groups per payload size: 2,000 label sets, or 5,000


@dataclass
class Run:
    kind: str  # bare | full
    alerts: int
    seconds: float
    ok: int  # 200s received
    other: dict[str, int]  # other statuses and socket errors
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_us: float  # server CPU time per acknowledged notification (all threads)
    missing: int = 0  # acknowledged but not in the journal
    journal_rows: int = 0
    undecided_at_end: int = 0  # journal backlog when wrk stopped
    drain_rate: float = 0.0  # notifications decided per second after wrk stopped
    claims_made: int = 0  # claims made while the load ran
    claims_judged: int = 0  # of those, started or settled before it ended
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    @property
    def retry_later(self) -> int:
        """503s: the daemon's decision backlog was full (Alertmanager would retry them)."""
        return self.other.get("503", 0)

    @property
    def decided_rate(self) -> float:
        """Notifications the engine decided per second while the load ran."""
        return max(0.0, self.ok - self.undecided_at_end) / self.seconds


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def wrk(
    port: int, pool: Path, alerts: int, seconds: float, out: Path, resolve_p: float = RESOLVE_P
) -> dict[str, object]:
    argv = [
        WRK,
        "-t1",
        f"-c{CONNECTIONS}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}/alerts",
        "--",
        str(pool),
        str(alerts),
        WEBHOOK_TOKEN,
        str(resolve_p),
        str(out),
    ]
    subprocess.run(
        pinned(LOAD_CPU, argv), check=True, stdout=subprocess.DEVNULL, timeout=seconds + 60
    )
    result: dict[str, object] = json.loads(out.read_text())
    return result


def _summarise(kind: str, alerts: int, raw: dict[str, object], cpu: float) -> Run:
    statuses = {str(k): int(v) for k, v in raw["statuses"].items()}  # type: ignore[attr-defined]
    errors = {k: int(v) for k, v in raw["errors"].items() if v}  # type: ignore[attr-defined]
    latency = raw["latency_us"]
    assert isinstance(latency, dict)
    ok = statuses.pop("200", 0)
    seconds = int(raw["duration_us"]) / 1e6  # type: ignore[call-overload]
    return Run(
        kind=kind,
        alerts=alerts,
        seconds=seconds,
        ok=ok,
        other={**statuses, **errors},
        p50_ms=latency["p50"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        cpu_us=cpu / max(ok, 1) * 1e6,
    )


def run_bare(
    work: Workdir, pool: Path, alerts: int, seconds: float, resolve_p: float = RESOLVE_P
) -> Run:
    port = free_port()
    with helper(work, "bare", port, cpu=SERVER_CPU) as proc:
        wait_ready(proc, port)
        before = cpu_seconds(proc.pid)
        raw = wrk(port, pool, alerts, seconds, work.path / "wrk-bare.json", resolve_p)
        cpu = cpu_seconds(proc.pid) - before
    return _summarise("bare", alerts, raw, cpu)


def run_ack_only(work: Workdir, sink_port: int, pool: Path, alerts: int, seconds: float) -> Run:
    """The daemon with its engine unplugged (bench/ack_only.py): what acknowledging costs."""
    port = free_port()
    config = work.config(sink_port, BENCH_RULES)
    argv = [PYTHON, "-m", "bench.ack_only", str(config), str(port)]
    env = {"BENCH_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "BENCH_API_TOKEN": API_TOKEN}
    with Proc(pinned(SERVER_CPU, argv), work.path / "ack-only.log", env=env) as proc:
        wait_ready(proc, port)
        before = cpu_seconds(proc.pid)
        raw = wrk(port, pool, alerts, seconds, work.path / "wrk-ack.json")
        cpu = cpu_seconds(proc.pid) - before
        proc.stop(signal.SIGKILL)
    result = _summarise("ack-only", alerts, raw, cpu)
    result.missing, result.journal_rows, _ = check_journal(work.db, work.path / "wrk-ack.json.ids")
    return result


def run_full(
    work: Workdir,
    sink_port: int,
    pool: Path,
    alerts: int,
    seconds: float,
    profile: Path | None = None,
    drain_limit: float = 10.0,
    profile_drain: Path | None = None,
    resolve_p: float = RESOLVE_P,
) -> Run:
    port = free_port()
    config = work.config(sink_port, BENCH_RULES)
    proc = daemon(work, config, port)
    spy: Proc | None = None
    try:
        proc.start()
        wait_ready(proc, port)
        if profile is not None:
            spy = py_spy(proc.pid, seconds, profile, work)
        before, began = cpu_seconds(proc.pid), time.time()
        raw = wrk(port, pool, alerts, seconds, work.path / "wrk-full.json", resolve_p)
        cpu, ended = cpu_seconds(proc.pid) - before, time.time()
        result = _summarise("full", alerts, raw, cpu)
        result.claims_made, result.claims_judged = judged_during(work.db, began, ended)
        if spy is not None:
            spy.proc.wait(timeout=60)  # type: ignore[union-attr]
        result.undecided_at_end = backlog(work.db)
        if profile_drain is not None:
            spy = py_spy(proc.pid, drain_limit, profile_drain, work)
        result.drain_rate = drain(work.db, result.undecided_at_end, drain_limit)
        proc.stop(signal.SIGKILL)  # what is acknowledged must survive a crash
        result.missing, result.journal_rows, result.counts = check_journal(
            work.db, work.path / "wrk-full.json.ids"
        )
        return result
    finally:
        if spy is not None:
            spy.stop()
        proc.stop()


def backlog(db: Path) -> int:
    """Journal entries not yet decided, read from the file (costs the daemon no CPU)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        sql = "SELECT count(*) FROM journal WHERE processed_at IS NULL"
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def judged_during(db: Path, began: float, ended: float) -> tuple[int, int]:
    """(claims made while the load ran, those of them started or settled before it ended):
    whether the actions keep pace with the incidents the load opens."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        made, judged = conn.execute(
            "SELECT count(*), coalesce(sum(coalesce(started_at, finished_at, 1e300) <= ?), 0) "
            "FROM claims WHERE claimed_at BETWEEN ? AND ?",
            (ended, began, ended),
        ).fetchone()
    finally:
        conn.close()
    return int(made), int(judged)


def drain(db: Path, undecided: int, limit: float) -> float:
    """Notifications decided per second once the load stopped (watched for at most `limit`)."""
    started = time.monotonic()
    left = undecided
    while left > 0 and time.monotonic() - started < limit:
        time.sleep(0.1)
        left = backlog(db)
    elapsed = time.monotonic() - started
    return (undecided - left) / elapsed if undecided and elapsed else 0.0


def check_journal(db: Path, ids_file: Path) -> tuple[int, int, dict[str, int]]:
    """(acknowledged ids missing from the journal, journal rows, a few row counts)."""
    acked = {int(line) for line in ids_file.read_text().split()}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        present = {row[0] for row in conn.execute("SELECT id FROM journal")}
        counts = {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
            for table in ("incidents", "alert_instances", "claims", "audit")
        }
    finally:
        conn.close()
    return len(acked - present), len(present), counts


def py_spy(pid: int, seconds: float, out: Path, work: Workdir) -> Proc:
    argv = [
        str(Path(ROOT / ".venv" / "bin" / "py-spy")),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "250",
        "--format",
        "raw",
        "--threads",
        "--nonblocking",
        "--output",
        str(out),
    ]
    return Proc(pinned(LOAD_CPU, argv), work.path / "py-spy.log").start()


def measure(
    alerts: int,
    runs: int,
    seconds: float,
    resolve_p: float = RESOLVE_P,
    ack_only: bool = True,
    groups: int = 0,
) -> tuple[list[Run], list[Run], list[Run]]:
    bare: list[Run] = []
    ack: list[Run] = []
    full: list[Run] = []
    with Workdir.make("ingest") as work:
        pool = work.path / f"pool-{alerts}.tsv"
        write_pool(pool, alerts, groups or POOL[alerts])
        with sink(work) as sink_port:
            for i in range(runs):
                bare.append(run_bare(work, pool, alerts, seconds, resolve_p))
                if ack_only:
                    with Workdir.make(f"ingest-ack-{alerts}-{i}") as run_dir:
                        ack.append(run_ack_only(run_dir, sink_port, pool, alerts, seconds))
                with Workdir.make(f"ingest-full-{alerts}-{i}") as run_dir:
                    full.append(
                        run_full(run_dir, sink_port, pool, alerts, seconds, resolve_p=resolve_p)
                    )
    return bare, ack, full


def profile(alerts: int, seconds: float, drain_seconds: float = 0.0) -> tuple[Path, Path | None]:
    """py-spy profiles (raw, collapsed stacks) of the daemon under the ingest load and, if
    `drain_seconds`, of the engine deciding the backlog once the load stopped."""
    out = OUT / f"profile-ingest-{alerts}.txt"
    after = OUT / f"profile-ingest-{alerts}-drain.txt" if drain_seconds else None
    with Workdir.make("ingest-profile") as work:
        pool = work.path / "pool.tsv"
        write_pool(pool, alerts, POOL[alerts])
        with sink(work) as sink_port:
            run_full(
                work,
                sink_port,
                pool,
                alerts,
                seconds,
                profile=out,
                drain_limit=drain_seconds,
                profile_drain=after,
            )
    return out, after


def run(quick: bool = False) -> Section:
    started = time.monotonic()
    runs, seconds = (1, 3.0) if quick else (3, 5.0)
    section = Section("ingest", f"1. Ingest (POST /alerts), {CONNECTIONS} connections")
    table = [
        "| payload | run | server | acked notif./s | alerts/s | ack p50 ms | ack p99 ms | "
        "max ms | server CPU µs/notif. | non-200 / errors | missing | decided/s during | "
        "backlog at end | decided/s after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for alerts in (1, 50):
        bare, ack, full = measure(alerts, runs, seconds)
        for i, (b, a, f) in enumerate(zip(bare, ack, full, strict=True)):
            for r in (b, a, f):
                table.append(
                    f"| {alerts} | {i + 1} | {r.kind} | {r.rate:,.0f} | {r.rate * alerts:,.0f} "
                    f"| {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.max_ms:.1f} | {r.cpu_us:,.0f} | "
                    f"{r.other or 0} | {r.missing if r.kind != 'bare' else '-'} | "
                    + (
                        f"{r.decided_rate:,.0f} | {r.undecided_at_end:,.0f} | {r.drain_rate:,.0f} |"
                        if r.kind == "full"
                        else "- | - | - |"
                    )
                )
        section.figures += figures(alerts, bare, full)
        section.figures += ack_figures(alerts, bare, ack)
        section.figures += pace_figures(alerts, full)
        counts = full[-1].counts
        section.notes.append(
            f"{alerts}-alert payloads, last full run: {full[-1].ok:,} acknowledged, "
            f"{full[-1].journal_rows:,} journal rows, {counts.get('incidents', 0):,} incidents, "
            f"{counts.get('claims', 0):,} claims, {counts.get('audit', 0):,} audit rows."
        )
    bare, _, full = measure(1, runs, seconds, REPEATS_RESOLVE_P, False, REPEATS_POOL)
    for i, (b, f) in enumerate(zip(bare, full, strict=True)):
        for r in (b, f):
            table.append(
                f"| 1, 95 % repeats | {i + 1} | {r.kind} | {r.rate:,.0f} | {r.rate:,.0f} | "
                f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.max_ms:.1f} | {r.cpu_us:,.0f} | "
                f"{r.other or 0} | {r.missing if r.kind != 'bare' else '-'} | "
                + (
                    f"{r.decided_rate:,.0f} | {r.undecided_at_end:,.0f} | {r.drain_rate:,.0f} |"
                    if r.kind == "full"
                    else "- | - | - |"
                )
            )
    section.figures += repeat_figures(bare, full)
    section.details.append("\n".join(table))
    section.notes.append(
        f"The repeat-heavy rows: 1-alert payloads where an alert resolves with probability "
        f"{REPEATS_RESOLVE_P:g} and fires again as a new instance after that, so about 95 % "
        f"of notifications repeat a firing alert the daemon already knows (a pool of "
        f"{REPEATS_POOL} label sets, sent round-robin: only the first pass is new)."
    )
    section.notes.append(
        f"{runs} runs of {seconds:g} s per server and payload size, alternating bare, ack-only "
        "and full; "
        f"figures are medians. Latency is wrk's (closed loop: with {CONNECTIONS} connections, "
        f"mean latency = {CONNECTIONS} / throughput)."
    )
    section.seconds = time.monotonic() - started
    return section


def ack_figures(alerts: int, bare: list[Run], ack: list[Run]) -> list[Figure]:
    """Diagnostic, no target: the daemon with its engine unplugged (bench/ack_only.py)."""
    rate_b, rate_a = median([r.rate for r in bare]), median([r.rate for r in ack])
    missing = sum(r.missing for r in ack)
    return [
        Figure(
            f"ingest {alerts}-alert, ack path only: notifications/s",
            rate_a,
            "/s",
            "- (diagnostic)",
            None,
            rate_b,
            "bare aiohttp",
            [r.rate for r in ack],
        ),
        Figure(
            f"ingest {alerts}-alert, ack path only: ack p99",
            median([r.p99_ms for r in ack]),
            "ms",
            "- (diagnostic)",
            None,
            median([r.p99_ms for r in bare]),
            "bare aiohttp",
            [r.p99_ms for r in ack],
        ),
        Figure(
            f"ingest {alerts}-alert, ack path only: acked but missing",
            float(missing),
            "",
            "0",
            missing == 0,
            float(sum(r.ok for r in ack)),
            "acknowledged (all runs)",
        ),
    ]


def pace_figures(alerts: int, full: list[Run]) -> list[Figure]:
    made = sum(r.claims_made for r in full)
    judged = sum(r.claims_judged for r in full)
    return [
        Figure(
            f"ingest {alerts}-alert: actions judged during the load, of those claimed",
            float(judged),
            "",
            ">= 0.9x claimed",
            made > 0 and judged >= 0.9 * made,
            float(made),
            "claims made during the load (all runs)",
        )
    ]


def repeat_figures(bare: list[Run], full: list[Run]) -> list[Figure]:
    rate_b, rate_f = median([r.rate for r in bare]), median([r.rate for r in full])
    return [
        Figure(
            "ingest 1-alert, 95 % repeats: notifications/s",
            rate_f,
            "/s",
            f">= {REPEATS_TARGET:g}x bare",
            rate_f >= REPEATS_TARGET * rate_b,
            rate_b,
            "bare aiohttp, same mix",
            [r.rate for r in full],
        ),
        Figure(
            "ingest 1-alert, 95 % repeats: ack p99",
            median([r.p99_ms for r in full]),
            "ms",
            "-",
            None,
            median([r.p99_ms for r in bare]),
            "bare aiohttp, same mix",
            [r.p99_ms for r in full],
        ),
    ]


def figures(alerts: int, bare: list[Run], full: list[Run]) -> list[Figure]:
    share, p99_target = TARGETS[alerts]
    rate_b, rate_f = median([r.rate for r in bare]), median([r.rate for r in full])
    p99_b, p99_f = median([r.p99_ms for r in bare]), median([r.p99_ms for r in full])
    missing = sum(r.missing for r in full)
    acked = sum(r.ok for r in full)
    retry_later = sum(r.retry_later for r in full)
    errors = sum(sum(r.other.values()) for r in full) - 2 * retry_later  # wrk counts each twice
    return [
        Figure(
            f"ingest {alerts}-alert: notifications/s",
            rate_f,
            "/s",
            f">= {share:g}x bare",
            rate_f / rate_b >= share,
            rate_b,
            "bare aiohttp",
            [r.rate for r in full],
        ),
        Figure(
            f"ingest {alerts}-alert: ack p99",
            p99_f,
            "ms",
            f"<= {p99_target:g} ms",
            p99_f <= p99_target,
            p99_b,
            "bare aiohttp",
            [r.p99_ms for r in full],
        ),
        Figure(
            f"ingest {alerts}-alert: acked but missing",
            float(missing),
            "",
            "0",
            missing == 0,
            float(acked),
            "acknowledged (all runs)",
        ),
        Figure(
            f"ingest {alerts}-alert: errors (non-200 but 503, socket errors)",
            float(errors),
            "",
            "0",
            errors == 0,
        ),
        Figure(
            f"ingest {alerts}-alert: 503 + Retry-After (backlog full)",
            float(retry_later),
            "",
            "-",
            None,
            float(acked),
            "acknowledged (all runs)",
        ),
        Figure(
            f"ingest {alerts}-alert: decided/s during the load",
            median([r.decided_rate for r in full]),
            "/s",
            "-",
            None,
            rate_f,
            "acknowledged/s",
        ),
        Figure(
            f"ingest {alerts}-alert: server CPU per acked notif.",
            median([r.cpu_us for r in full]),
            "µs",
            "-",
            None,
            median([r.cpu_us for r in bare]),
            "bare aiohttp",
        ),
    ]


if __name__ == "__main__":
    from bench.common import print_section

    s = run(quick=True)
    print_section(s)
    print("\n".join(s.details))
