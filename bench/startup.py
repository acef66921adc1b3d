"""Benchmarks 4 and 5: the daemon's memory with many open incidents, and its time to ready.

Both start `remediator serve` (pinned to SERVER_CPU) on a store filled by bench/populate.py
(the engine's own commit path, SqliteStore.apply), not through the webhook: the daemon loads
open incidents at start, so a store holding them is what a daemon restarted in a storm sees.

* Memory: VmRSS and VmHWM of the process from /proc, 1 s after /readyz first answers 200, with
  100,000 open incidents; baseline: the same daemon on a store with none.
* Restart: from just before the process is spawned to the first 200 from /readyz (polled every
  2 ms), with 10,000 open incidents and their finished claims; baseline: an empty store (schema
  created). The page cache is warm (the file was just written): a cold disk adds its read time.
"""

from __future__ import annotations

import subprocess
import time

from bench.common import (
    REMEDIATOR,
    SERVER_CPU,
    Figure,
    Section,
    Workdir,
    daemon,
    free_port,
    median,
    pinned,
    rss_kib,
    sink,
    wait_ready,
)
from bench.populate import populate
from bench.workload import BENCH_RULES


def _start(work: Workdir, sink_port: int, name: str) -> tuple[float, dict[str, int]]:
    """Seconds to ready, and the memory 1 s later."""
    port = free_port()
    with daemon(work, work.config(sink_port, BENCH_RULES), port, name=name) as proc:
        ready = wait_ready(proc, port)
        time.sleep(1.0)
        memory = rss_kib(proc.pid)
    return ready, memory


def _store(work: Workdir, incidents: int) -> None:
    work.db.parent.mkdir(parents=True, exist_ok=True)
    populate(work.db, incidents)


def memory(runs: int, incidents: int = 100_000) -> Section:
    started = time.monotonic()
    section = Section("memory", f"4. Memory with {incidents:,} open incidents")
    results: dict[int, list[dict[str, int]]] = {0: [], incidents: []}
    ready: list[float] = []
    with Workdir.make("memory") as work, sink(work) as sink_port:
        for n in results:
            with Workdir.make(f"memory-{n}") as store_dir:
                _store(store_dir, n)
                for i in range(runs):
                    seconds, used = _start(store_dir, sink_port, f"daemon-{i}")
                    results[n].append(used)
                    if n:
                        ready.append(seconds)
    rss = {n: median([m["VmRSS"] / 1024 for m in r]) for n, r in results.items()}
    hwm = {n: median([m["VmHWM"] / 1024 for m in r]) for n, r in results.items()}
    section.figures += [
        Figure(
            f"VmRSS, {incidents:,} open incidents",
            rss[incidents],
            "MiB",
            "<= 200 MB",
            rss[incidents] * 1.048576 <= 200,
            rss[0],
            "0 incidents",
            [m["VmRSS"] / 1024 for m in results[incidents]],
        ),
        Figure(
            f"VmHWM (peak), {incidents:,} open incidents",
            hwm[incidents],
            "MiB",
            "<= 200 MB",
            hwm[incidents] * 1.048576 <= 200,
            hwm[0],
            "0 incidents",
            [m["VmHWM"] / 1024 for m in results[incidents]],
        ),
        Figure(
            "resident memory per open incident",
            (rss[incidents] - rss[0]) * 1024 * 1024 / incidents,
            "bytes",
            "-",
            None,
        ),
    ]
    section.notes.append(
        f"Median of {runs} starts each. 200 MB is read as 200 * 10^6 bytes (190.7 MiB). Each "
        "incident: 7 labels, 3 annotations, one firing instance, one finished claim, one "
        f"attempt, three audit lines. Start to ready with these {incidents:,} incidents: "
        + ", ".join(f"{t:.2f}" for t in ready)
        + " s."
    )
    section.seconds = time.monotonic() - started
    return section


def restart(runs: int, incidents: int = 10_000) -> Section:
    started = time.monotonic()
    section = Section("restart", f"5. Restart to ready with {incidents:,} open incidents")
    imports = []
    for _ in range(runs):
        t = time.monotonic()
        subprocess.run(
            pinned(SERVER_CPU, [REMEDIATOR, "--version"]), check=True, capture_output=True
        )
        imports.append(time.monotonic() - t)
    times: dict[int, list[float]] = {0: [], incidents: []}
    with Workdir.make("restart") as work, sink(work) as sink_port:
        for n in times:
            with Workdir.make(f"restart-{n}") as store_dir:
                _store(store_dir, n)
                for i in range(runs):
                    times[n].append(_start(store_dir, sink_port, f"daemon-{i}")[0])
    value, base = median(times[incidents]), median(times[0])
    section.figures += [
        Figure(
            f"start to ready, {incidents:,} open incidents",
            value,
            "s",
            "<= 2 s",
            value <= 2.0,
            base,
            "empty store",
            times[incidents],
        ),
        Figure(
            "interpreter and imports (`remediator --version`)",
            median(imports),
            "s",
            "-",
            None,
            None,
            "",
            imports,
        ),
    ]
    section.notes.append(
        f"Median of {runs} starts each; runs: "
        + "; ".join(
            f"{n:,} incidents: " + ", ".join(f"{t:.3f}" for t in ts) for n, ts in times.items()
        )
        + ". Timers are not rows of their own: at start the scheduler derives them from the "
        "store (each open incident's next escalation, held claims, verifications). Every "
        "incident here is one of cdc-connector-down, which escalates after 30m, so all of "
        "them carry an escalation deadline that start loads and arms."
    )
    section.seconds = time.monotonic() - started
    return section


if __name__ == "__main__":
    from bench.common import print_section

    for s in (restart(3), memory(1)):
        print_section(s)
