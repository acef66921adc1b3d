"""Run every benchmark of issue 7 and write bench/RESULTS.md.

    python -m bench.run              # everything (what `make bench` runs), under 10 minutes
    python -m bench.run --quick      # shorter runs, for trying the harness
    python -m bench.run --only rules,restart

Each benchmark saves its section to bench/out/<key>.json; RESULTS.md is written from the
sections of this invocation (with --only, the others are taken from bench/out/ and marked as
from an earlier invocation).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import (
    a2a,
    backtest,
    connectors,
    failover,
    http_client,
    ingest,
    postgres_store,
    profiles,
    rule_scaling,
    slack_outbox,
    startup,
)
from bench.common import (
    LOAD_CPU,
    OUT,
    ROOT,
    SERVER_CPU,
    Figure,
    Section,
    fmt,
    print_section,
)

RESULTS = ROOT / "bench" / "RESULTS.md"
RERUN_ONLY = ".venv/bin/python -m bench.run --only {}"  # writes RESULTS.md with that section
RERUN = {  # the sections that also run alone, printing their figures
    "postgres": ".venv/bin/python -m bench.postgres_store",
    "connectors": ".venv/bin/python -m bench.connectors",
}
FINDINGS = ROOT / "bench" / "FINDINGS.md"
ORDER = (
    "ingest", "a2a", "postgres", "connectors", "rules", "memory", "restart", "slack", "http_client",
    "backtest", "failover", "profiles",
)  # fmt: skip


def profile_section(quick: bool) -> Section:
    started = time.monotonic()
    section = Section("profiles", "Profiles (py-spy)")
    seconds = 3.0 if quick else 5.0
    drain = 4.0 if quick else 8.0
    a2a_seconds = 10.0 if quick else 15.0
    one, _ = ingest.profile(1, seconds)
    fifty, fifty_drain = ingest.profile(50, seconds, drain_seconds=drain)
    assert fifty_drain is not None
    found = [
        ("ingest, 1-alert payloads, under load", one),
        ("ingest, 50-alert payloads, under load", fifty),
        ("ingest, 50-alert payloads, the engine deciding the backlog after the load", fifty_drain),
        (f"alert to action at {a2a.RATE:g}/s", a2a.profile(a2a_seconds)),
    ]
    for title, path in found:
        section.details.append(profiles.markdown(f"{title} ({path.name})", profiles.read(path)))
    section.notes.append(
        "py-spy record --rate 250 --threads --nonblocking on the daemon under the same load as "
        f"the benchmark ({seconds:g} s of ingest per payload size, then {drain:g} s of the "
        "engine catching up after the 50-alert load, the alert-to-action load for "
        f"{a2a_seconds:g} s); "
        "on-CPU samples only. The daemon's threads share one CPU, so the shares are of that "
        "CPU. Raw stacks are in bench/out/profile-*.txt (not committed)."
    )
    section.seconds = time.monotonic() - started
    return section


def machine() -> list[str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = " (with uncommitted changes)" if _git("status", "--porcelain", "--", "src") else ""
    wrk = subprocess.run([ingest.WRK, "--version"], capture_output=True, text=True)
    return [
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- CPU: {cpu}, {os.cpu_count()} cores",
        f"- RAM: {mem_kib / 1024 / 1024:.1f} GiB",
        f"- kernel: {platform.release()}",
        f"- Python: {platform.python_version()} ({sys.executable})",
        f"- remediator: commit {commit}{dirty}",
        f"- load generator: {(wrk.stdout or wrk.stderr).splitlines()[0]}",
        f"- fsync on the disk under bench/out/ (where the SQLite files live): {_fsync_ms()}",
        f"- pinning: the server under test (daemon, bare handler, relay) on CPU {SERVER_CPU} "
        f"with `taskset -c {SERVER_CPU}`, all its threads included; wrk, the alert-to-action "
        f"load generator, the sink and py-spy on CPU {LOAD_CPU}.",
    ]


def cpu_ticks() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[7], sum(fields)


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()


def _fsync_ms() -> str:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "fsync-probe"
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for _ in range(100):
            os.write(fd, b"x" * 4096)
            t = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - t) * 1e3)
    finally:
        os.close(fd)
        path.unlink()
    times.sort()
    return f"p50 {times[50]:.2f} ms, p99 {times[98]:.2f} ms (100 fsyncs of 4 KiB appends)"


def summary(sections: list[Section]) -> list[str]:
    lines = [
        "| benchmark | figure | measured | target | baseline (same run) | ratio | target met |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in sections:
        for f in s.figures:
            lines.append(_row(s, f))
    return lines


def _row(s: Section, f: Figure) -> str:
    base = f"{fmt(f.baseline, f.unit)} ({f.baseline_name})" if f.baseline_name else "-"
    ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "-"
    met = {True: "yes", False: "**NO**", None: "-"}[f.met]
    return (
        f"| {s.key} | {f.name} | {fmt(f.value, f.unit)} | {f.target} | {base} | {ratio} | {met} |"
    )


def rewrite() -> None:
    """RESULTS.md again from the saved sections of the last run (e.g. after editing FINDINGS)."""
    info = json.loads((OUT / "run.json").read_text())
    sections = []
    for key in ORDER:
        section = Section.load(key)
        if section is not None:
            sections.append(section)
    write(sections, set(info["fresh"]), info["seconds"], info["machine"])


def write(sections: list[Section], fresh: set[str], seconds: float, host: list[str]) -> None:
    out = ["# Benchmark results (issues 7, 11 and 17)", ""]
    out += [
        f"Written by `make bench` (`python -m bench.run`) in {seconds:.0f} s. Every figure is "
        "measured in this run, beside a baseline measured in the same run; ratio = measured / "
        "baseline. Medians of several runs where noted.",
        "",
    ]
    out += ["## Machine", "", *host, "", "## Summary", "", *summary(sections), ""]
    for s in sections:
        stale = "" if s.key in fresh else " (from an earlier invocation)"
        out += [
            f"## {s.title}{stale}",
            "",
            f"Rerun: `{RERUN.get(s.key, RERUN_ONLY.format(s.key))}`",
            "",
        ]
        for block in s.details:
            out += [block, ""]
        out += [f"- {note}" for note in s.notes]
        out.append("")
    if FINDINGS.exists():
        out += [FINDINGS.read_text().rstrip(), ""]
    RESULTS.write_text("\n".join(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {ORDER}")
    parser.add_argument(
        "--report",
        action="store_true",
        help="only rewrite RESULTS.md from the last full run's sections in bench/out/",
    )
    args = parser.parse_args()
    if args.report:
        rewrite()
        return
    wanted = set(args.only.split(",")) if args.only else set(ORDER)
    runners: dict[str, Callable[[], Section]] = {
        "ingest": lambda: ingest.run(args.quick),
        "a2a": lambda: a2a.run(args.quick),
        "postgres": lambda: postgres_store.run(args.quick),
        "connectors": lambda: connectors.run(args.quick),
        "rules": lambda: rule_scaling.run(args.quick),
        "memory": lambda: startup.memory(1 if args.quick else 3),
        "restart": lambda: startup.restart(3 if args.quick else 5),
        "slack": lambda: slack_outbox.run(args.quick),
        "http_client": lambda: http_client.run(args.quick),
        "backtest": lambda: backtest.run(args.quick),
        "failover": lambda: failover.run(args.quick),
        "profiles": lambda: profile_section(args.quick),
    }
    started = time.monotonic()
    steal_before = cpu_ticks()
    load_before = os.getloadavg()[0]
    sections: list[Section] = []
    loads: list[str] = []
    for key in ORDER:
        section = runners[key]() if key in wanted else Section.load(key)
        if section is None:
            continue
        if key in wanted:
            section.save()
            print_section(section)
            loads.append(f"{key} {os.getloadavg()[0]:.2f}")
        sections.append(section)
    seconds = time.monotonic() - started
    steal = cpu_ticks()
    stolen = (steal[0] - steal_before[0]) / max(1, steal[1] - steal_before[1])
    host = [
        *machine(),
        f"- CPU time stolen by the hypervisor during this run (/proc/stat steal): "
        f"{100 * stolen:.1f} %",
        f"- load average (1 min) at start {load_before:.2f}, at end {os.getloadavg()[0]:.2f}: "
        "the benchmarks alone keep it under ~2.2; more means other work shared the CPUs and the "
        "figures are not comparable with a quiet run",
        f"- load average (1 min) after each section: {', '.join(loads)}",
    ]
    run_info = {"seconds": seconds, "machine": host, "fresh": sorted(wanted)}
    (OUT / "run.json").write_text(json.dumps(run_info))
    write(sections, wanted, seconds, host)
    print(f"\nwrote {RESULTS.relative_to(ROOT)} in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
