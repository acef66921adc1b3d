"""A week of Prometheus history, written as OpenMetrics for `promtool tsdb create-blocks-from
openmetrics`: an ingestion error rate, connector states and a replication lag at one-minute
resolution, with a few incidents in it, and the ALERTS series Prometheus would have recorded for
them under the alerting rules below (evaluated here minute by minute, as Prometheus does).

Used by tests/test_backtest.py and bench/backtest.py."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.binaries import require_binary

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
WEEK = 7 * DAY


@dataclass(frozen=True)
class Rule:
    """An alerting rule of the test's rule file, on one gauge: value `op` threshold."""

    alert: str
    metric: str
    op: str
    threshold: float
    for_: float
    labels: dict[str, str]
    annotation: tuple[str, str] | None = None  # (name, template)

    def holds(self, value: float) -> bool:
        return value > self.threshold if self.op == ">" else value == self.threshold

    def yaml(self) -> str:
        lines = [
            f"      - alert: {self.alert}",
            f"        expr: {self.metric} {self.op} {self.threshold:g}",
            f"        for: {int(self.for_ // 60)}m",
            "        labels: {" + ", ".join(f"{k}: {v}" for k, v in self.labels.items()) + "}",
        ]
        if self.annotation:
            lines.append(f'        annotations: {{{self.annotation[0]}: "{self.annotation[1]}"}}')
        return "\n".join(lines)


def rules(lag_threshold: float = 10_000) -> list[Rule]:
    rate = ("error_rate", "{{ $value }}")
    return [
        Rule(
            "IngestionHighErrorRate",
            "ingestion_error_ratio",
            ">",
            0.05,
            300,
            {"severity": "P2"},
            rate,
        ),
        Rule(
            "IngestionHighErrorRate",
            "ingestion_error_ratio",
            ">",
            0.10,
            300,
            {"severity": "P1"},
            rate,
        ),
        Rule(
            "IngestionHighErrorRate",
            "ingestion_error_ratio",
            ">",
            0.20,
            300,
            {"severity": "P0"},
            rate,
        ),
        Rule("ConnectorDown", "connector_state", "==", 0, 300, {"severity": "P1"}),
        Rule(
            "HighReplicationLag",
            "kafka_connect_source_connector_lag",
            ">",
            lag_threshold,
            600,
            {"severity": "P2"},
            ("lag", "{{ $value }}"),
        ),
    ]


def rules_file(found: list[Rule]) -> str:
    return "groups:\n  - name: backtest\n    rules:\n" + "\n".join(r.yaml() for r in found) + "\n"


@dataclass(frozen=True)
class Week:
    """Seven days from `start` (a multiple of a day), with the incidents described below, and
    `fleet` more connectors (fleet-00, ...) that each fail once a day for 15 minutes."""

    start: float
    fleet: int = 0

    @property
    def end(self) -> float:
        return self.start + WEEK

    def minutes(self) -> Iterator[float]:
        t = self.start
        while t <= self.end:
            yield t
            t += MINUTE

    def at(self, day: int, hour: int, minute: int = 0) -> float:
        return self.start + day * DAY + hour * HOUR + minute * MINUTE

    def error_ratio(self, t: float) -> float:
        """1 % but for two ladders (day 0 02:00 and day 4 14:00: 7 %, 12 %, 23 %, 40 minutes)
        and a plateau at 9 % (day 2, 10:00-10:30)."""
        for day, hour in ((0, 2), (4, 14)):
            begin = self.at(day, hour)
            for until, ratio in ((10, 0.07), (20, 0.12), (40, 0.23)):
                if begin <= t < begin + until * MINUTE:
                    return ratio
        if self.at(2, 10) <= t < self.at(2, 10, 30):
            return 0.09
        return 0.01

    def connector_state(self, connector: str, t: float) -> float:
        """orders-sink fails twice on day 1 (06:00-06:20, 06:25-06:45); billing-sink never;
        fleet-i every day d at (i + d) o'clock and i * 7 minutes."""
        if connector.startswith("fleet-"):
            i = int(connector[6:])
            day = int((t - self.start) // DAY)
            begin = self.at(day, (i + day) % 24, (i * 7) % 60)
            return 0.0 if begin <= t < begin + 15 * MINUTE else 1.0
        if connector != "orders-sink":
            return 1.0
        spans = ((self.at(1, 6), self.at(1, 6, 20)), (self.at(1, 6, 25), self.at(1, 6, 45)))
        return 0.0 if any(a <= t < b for a, b in spans) else 1.0

    def lag(self, t: float) -> float:
        """8,000 records behind on day 3 (08:00-08:50), 15,000 on day 5 (09:00-09:20)."""
        if self.at(3, 8) <= t < self.at(3, 8, 50):
            return 8_000.0
        if self.at(5, 9) <= t < self.at(5, 9, 20):
            return 15_000.0
        return 100.0

    def series(self) -> list[tuple[str, dict[str, str], Callable[[float], float]]]:
        return [
            ("ingestion_error_ratio", {}, self.error_ratio),
            (
                "connector_state",
                {"connector": "orders-sink"},
                lambda t: self.connector_state("orders-sink", t),
            ),
            (
                "connector_state",
                {"connector": "billing-sink"},
                lambda t: self.connector_state("billing-sink", t),
            ),
            ("kafka_connect_source_connector_lag", {"connector": "orders-source"}, self.lag),
            *(
                ("connector_state", {"connector": name}, self._state_of(name))
                for name in (f"fleet-{i:02d}" for i in range(self.fleet))
            ),
        ]

    def _state_of(self, connector: str) -> Callable[[float], float]:
        return lambda t: self.connector_state(connector, t)


@dataclass(frozen=True)
class Fired:
    """An alert as Prometheus fired it: labels, its value when it started, [start, end)."""

    labels: dict[str, str]
    annotations: dict[str, str]
    start: float
    end: float


def fired(week: Week, found: list[Rule]) -> list[Fired]:
    """Each rule evaluated every minute: pending while the expression holds, firing once it has
    held for `for`, resolved at the first evaluation where it does not."""
    alerts = []
    for rule in found:
        for metric, labels, value in week.series():
            if metric != rule.metric:
                continue
            active: float | None = None
            began: float | None = None
            for t in week.minutes():
                if rule.holds(value(t)):
                    active = t if active is None else active
                    if began is None and t - active >= rule.for_:
                        began = t
                    continue
                if began is not None:
                    alerts.append(_fired(rule, labels, value(began), began, t))
                active = began = None
    return sorted(alerts, key=lambda a: (a.start, sorted(a.labels.items())))


def _fired(rule: Rule, labels: dict[str, str], value: float, start: float, end: float) -> Fired:
    all_labels = {**labels, **rule.labels, "alertname": rule.alert}
    annotations = {}
    if rule.annotation:
        annotations[rule.annotation[0]] = f"{value:g}"
    return Fired(all_labels, annotations, start, end)


def openmetrics(week: Week, alerts: list[Fired]) -> str:
    """The series and, for every minute an alert fired, its ALERTS sample."""
    lines: list[str] = []
    by_metric: dict[str, list[tuple[dict[str, str], Callable[[float], float]]]] = {}
    for metric, labels, value in week.series():
        by_metric.setdefault(metric, []).append((labels, value))
    for metric, series in by_metric.items():
        lines.append(f"# TYPE {metric} gauge")
        for labels, value in series:
            lines += (f"{metric}{_labels(labels)} {value(t):g} {t:.0f}" for t in week.minutes())
    lines.append("# TYPE ALERTS gauge")
    for a in alerts:
        selector = _labels({**a.labels, "alertstate": "firing"})
        t = a.start
        while t < a.end:
            lines.append(f"ALERTS{selector} 1 {t:.0f}")
            t += MINUTE
    return "\n".join(lines) + "\n# EOF\n"


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def backfill(text: str, workdir: Path) -> Path:
    """promtool tsdb create-blocks-from openmetrics into workdir/data (Prometheus's TSDB)."""
    promtool = require_binary("promtool")
    source = workdir / "history.om"
    source.write_text(text)
    data = workdir / "data"
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return data


def recent_week(now: float, fleet: int = 0) -> Week:
    """The last whole week that ended at least a day ago: inside Prometheus's default retention
    (15 days), and older than its head block."""
    return Week(math.floor(now / DAY) * DAY - 8 * DAY, fleet)
