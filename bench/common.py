"""What every benchmark shares: processes on loopback, CPU pinning, configs, statistics, results.

Every process a benchmark starts is started through `Proc`, a context manager that stops it
(SIGTERM, then SIGKILL) however the benchmark ends. The daemon under test and the bare baselines
run pinned to SERVER_CPU; load generators and stand-in targets run pinned to LOAD_CPU, so the
load generator never takes CPU from what it measures.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PYTHON = sys.executable
REMEDIATOR = str(Path(sys.executable).parent / "remediator")
SERVER_CPU = "0"
LOAD_CPU = "1"
WEBHOOK_TOKEN = "bench-webhook-token"
API_TOKEN = "bench-api-token"
TASKSET = shutil.which("taskset")


def pinned(cpu: str, argv: Sequence[str]) -> list[str]:
    """argv run on one CPU (when the machine has two or more and taskset exists)."""
    if TASKSET is None or (os.cpu_count() or 1) < 2:
        return list(argv)
    return [TASKSET, "-c", cpu, *argv]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A child process that is always stopped: SIGTERM, then SIGKILL after `grace` seconds."""

    def __init__(
        self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None, grace: float = 10
    ) -> None:
        self.argv = list(argv)
        self.log = log
        self.env = env
        self.grace = grace
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Proc:
        with self.log.open("ab") as out:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env={**os.environ, **(self.env or {})},
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop it (idempotent); the exit code, or None if it was never started."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def __enter__(self) -> Proc:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(proc: Proc, port: int, path: str = "/readyz", timeout: float = 60.0) -> float:
    """Poll until `path` answers 200; seconds since the process started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.argv[0]} exited early:\n{proc.tail()}")
        try:
            if http_get(port, path, timeout=1.0)[0] == 200:
                return time.monotonic() - proc.started_at
        except OSError:
            pass
        time.sleep(0.002)
    raise RuntimeError(f"not ready within {timeout}s:\n{proc.tail()}")


def metric(port: int, name: str) -> float | None:
    """One unlabelled sample from the daemon's /metrics."""
    status, body = http_get(port, "/metrics")
    if status != 200:
        return None
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


# -- the daemon under test ---------------------------------------------------------------------


@dataclass
class Workdir:
    """A temporary directory for one daemon: config, rule files, SQLite file, logs."""

    path: Path

    @classmethod
    @contextlib.contextmanager
    def make(cls, prefix: str) -> Iterator[Workdir]:
        OUT.mkdir(parents=True, exist_ok=True)
        # on the same disk as a real deployment's state (never tmpfs: fsync must cost)
        path = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=OUT))
        try:
            yield cls(path)
        finally:
            shutil.rmtree(path, ignore_errors=True)

    @property
    def db(self) -> Path:
        return self.path / "state" / "remediator.db"

    def config(self, sink_port: int, rules: str, executor: str = "") -> Path:
        """A main config with tokens from the environment, every target of the shipped rule packs
        on the sink (the Kubernetes cluster too, through a kubeconfig), the packs and `rules` (a
        rule file of our own)."""
        (self.path / "bench-rules.yaml").write_text(textwrap.dedent(rules))
        sink = f"http://127.0.0.1:{sink_port}"
        main = f"""\
            webhook_auth: {{bearer_token_env: BENCH_WEBHOOK_TOKEN}}
            api_auth: {{bearer_token_env: BENCH_API_TOKEN}}
            store: {{sqlite: {{path: state/remediator.db}}}}
            rule_files:
              - {ROOT / "rules"}/*.yaml
              - bench-rules.yaml
            targets:
              kafka-connect: {{url: "{sink}"}}
              ingestion-config: {{url: "{sink}"}}
              feature-flags: {{url: "{sink}"}}
              migration-api: {{url: "{sink}"}}
              alertmanager: {{url: "{sink}"}}
              ingestion-cluster: {{kubernetes: {{kubeconfig: kubeconfig.yaml}}}}
              sink: {{url: "{sink}"}}
            {executor}
            """
        (self.path / "kubeconfig.yaml").write_text(_KUBECONFIG.format(sink=sink))
        path = self.path / "remediator.yaml"
        path.write_text(textwrap.dedent(main))
        return path


_KUBECONFIG = """\
apiVersion: v1
kind: Config
current-context: bench
contexts: [{{name: bench, context: {{cluster: bench, user: bench}}}}]
clusters: [{{name: bench, cluster: {{server: "{sink}"}}}}]
users: [{{name: bench, user: {{token: bench-token}}}}]
"""


def daemon(work: Workdir, config: Path, port: int, name: str = "daemon") -> Proc:
    """`remediator serve` on SERVER_CPU (not started yet)."""
    argv = [REMEDIATOR, "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"]
    env = {"BENCH_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "BENCH_API_TOKEN": API_TOKEN}
    return Proc(pinned(SERVER_CPU, argv), work.path / f"{name}.log", env=env)


def helper(work: Workdir, role: str, port: int, *args: str, cpu: str = LOAD_CPU) -> Proc:
    """One of bench/servers.py's roles (sink, bare, relay) in its own process."""
    argv = [PYTHON, "-m", "bench.servers", role, "--port", str(port), *args]
    return Proc(pinned(cpu, argv), work.path / f"{role}-{port}.log")


@contextlib.contextmanager
def sink(work: Workdir) -> Iterator[int]:
    """bench/servers.py's sink (every action's target) in its own process, ready; its port.
    Stopped on leaving."""
    port = free_port()
    with helper(work, "sink", port) as proc:
        wait_ready(proc, port)
        yield port


# -- statistics --------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


# -- results -----------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured figure beside its target and its same-run baseline."""

    name: str
    value: float
    unit: str
    target: str  # e.g. "<= 20 ms", ">= 0.5x baseline"
    met: bool | None  # None: no target
    baseline: float | None = None
    baseline_name: str = ""
    runs: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0 or math.isnan(self.baseline):
            return None
        return self.value / self.baseline


@dataclass
class Section:
    key: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # markdown blocks
    seconds: float = 0.0

    def save(self) -> Path:
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{self.key}.json"
        path.write_text(json.dumps(_section_dict(self), indent=2))
        return path

    @classmethod
    def load(cls, key: str) -> Section | None:
        path = OUT / f"{key}.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        figures = [Figure(**f) for f in data.pop("figures")]
        return cls(figures=figures, **data)


def _section_dict(s: Section) -> dict[str, object]:
    return {
        "key": s.key,
        "title": s.title,
        "figures": [f.__dict__ for f in s.figures],
        "notes": s.notes,
        "details": s.details,
        "seconds": s.seconds,
    }


def fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 100 or value == int(value):
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def print_section(s: Section) -> None:
    print(f"\n== {s.title} ({s.seconds:.0f}s)")
    for f in s.figures:
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "-"
        met = {True: "MET", False: "NOT MET", None: ""}[f.met]
        base = f"{fmt(f.baseline, f.unit)} ({f.baseline_name})" if f.baseline_name else "-"
        print(
            f"  {f.name:<44} {fmt(f.value, f.unit):>14}  target {f.target:<18} "
            f"baseline {base:<32} ratio {ratio:<7} {met}"
        )
    for note in s.notes:
        print(f"  note: {note}")


def main_of(run: Callable[..., Section]) -> None:
    """A section's module run as a script: `--quick` for shorter runs; figures, then details."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    s = run(quick=parser.parse_args().quick)
    print_section(s)
    print("\n\n".join(s.details))
