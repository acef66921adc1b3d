"""`remediator backtest`: what the rules would have done, from Prometheus's history, for someone
who has not run remediator yet.

The past alerts come from the `ALERTS` series (`alertstate="firing"`), their values from the
alerting rules' own expressions (`/api/v1/rules`, `query_range`); or, with alert rules given,
from those rules' expressions with `for:` (and `keep_firing_for:`) applied, so a changed alerting
rule shows the alerts it would have fired. Each alert becomes the notifications Alertmanager would
have sent, and they go through the config in the same sandbox as a replay (replay.decide).

What the history does not hold is approximated, and said (APPROXIMATIONS).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from remediator import replay
from remediator.alert_rules import AlertingRule, from_api
from remediator.clock import iso
from remediator.config import Config
from remediator.errors import RemediatorError
from remediator.prom_templates import render
from remediator.sandbox import ASSUMPTIONS

MAX_POINTS = 10_000  # per query_range (Prometheus refuses more than 11,000 points per series)
APPROXIMATIONS = (
    "labels are the alert's as stored in ALERTS (or its rule's expression plus the rule's "
    "labels); annotations are the rule's templates rendered again with the value when the "
    "alert started firing, not the text Prometheus rendered at the time",
    "alerts are evaluated at the backtest's step, not at the rule group's interval",
    "Alertmanager's group_wait, group_interval and grouping are unknown: each alert is sent "
    "when it starts firing and when it stops, with the other firing alerts of the same "
    "alertname",
    "alerts already firing at --from are taken as starting then",
)
Labels = tuple[tuple[str, str], ...]


class BacktestError(RemediatorError):
    """Prometheus could not answer, or answered something that is not its API."""


@dataclass(frozen=True, slots=True)
class Series:
    labels: Mapping[str, str]
    points: Mapping[float, float]  # time -> value


@dataclass(slots=True)
class Instance:
    """One alert instance: firing from `start` to `end` (None: still firing at the end)."""

    labels: dict[str, str]
    annotations: dict[str, str]
    start: float
    end: float | None


@dataclass(slots=True)
class Found:
    """The alerts found, and what could not be rendered."""

    instances: list[Instance] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Prometheus:
    """The two read endpoints a backtest needs."""

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url.rstrip("/")
        self.client = client

    async def alerting_rules(self) -> list[AlertingRule]:
        return from_api(await self._get("/api/v1/rules", {"type": "alert"}))

    async def query_range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        """The query over [start, end], in pieces of at most MAX_POINTS steps."""
        merged: dict[Labels, dict[float, float]] = defaultdict(dict)
        piece = start
        while piece <= end:
            last = min(end, piece + step * (MAX_POINTS - 1))
            data = await self._get(
                "/api/v1/query_range",
                {"query": query, "start": piece, "end": last, "step": step},
            )
            for s in data.get("result") or []:
                labels = tuple(sorted((str(k), str(v)) for k, v in s["metric"].items()))
                merged[labels].update((round(float(t), 3), float(v)) for t, v in s["values"])
            piece = last + step
        return [Series(dict(labels), points) for labels, points in merged.items()]

    async def _get(self, path: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
        try:
            r = await self.client.get(f"{self.url}{path}", params=params)
            body = r.json()
        except httpx.HTTPError as e:
            raise BacktestError(f"cannot reach Prometheus at {self.url}: {e}") from None
        except ValueError:
            raise BacktestError(f"{self.url}{path}: HTTP {r.status_code}, not JSON") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            raise BacktestError(f"{self.url}{path}: HTTP {r.status_code}: {error or body}")
        data = body.get("data")
        return data if isinstance(data, dict) else {"groups": data}


# -- alerts from ALERTS --------------------------------------------------------------------------


async def from_alerts_series(
    prometheus: Prometheus,
    rules: Sequence[AlertingRule],
    since: float,
    until: float,
    step: float,
) -> Found:
    """The alerts `ALERTS` recorded as firing, with values from their rules' expressions."""
    names = sorted({r.name for r in rules})
    if not names:
        return Found()
    selector = f'ALERTS{{alertstate="firing", alertname=~"{"|".join(names)}"}}'
    # a sample within the last step, not the last five minutes: backfilled or not, an alert
    # ends when its samples do (a millisecond short of the step: Prometheus 2's ranges include
    # both ends, and the sample a whole step back would count twice)
    alerts = await prometheus.query_range(
        f"last_over_time({selector}[{_window(step)}])", since, until, step
    )
    values = await _values(prometheus, rules, since, until, step)
    found = Found()
    for series in alerts:
        labels = {k: v for k, v in series.labels.items() if k not in ("alertstate", "__name__")}
        rule, points = values.get(_key(labels), (None, {}))
        for start, end in _intervals(sorted(series.points), step, until):
            found.instances.append(_instance(labels, rule, points, start, end, found.notes))
    return found


async def _values(
    prometheus: Prometheus, rules: Sequence[AlertingRule], since: float, until: float, step: float
) -> dict[Labels, tuple[AlertingRule, Mapping[float, float]]]:
    """alert labels -> (its rule, its expression's values)."""
    values = {}
    for rule in rules:
        for series in await prometheus.query_range(rule.expr, since, until, step):
            labels = _alert_labels(rule, series.labels)
            values[_key(labels)] = (rule, series.points)
    return values


# -- alerts from alerting rules -----------------------------------------------------------------


async def from_rules(
    prometheus: Prometheus,
    rules: Sequence[AlertingRule],
    since: float,
    until: float,
    step: float,
) -> Found:
    """The alerts these rules would have fired: their expressions, with `for:` applied."""
    found = Found()
    for rule in rules:
        lead = math.ceil(rule.for_ / step) * step  # to know what was pending at `since`
        for series in await prometheus.query_range(rule.expr, since - lead, until, step):
            labels = _alert_labels(rule, series.labels)
            for start, end in firing(rule, series.points, step, since, until):
                found.instances.append(
                    _instance(labels, rule, series.points, start, end, found.notes)
                )
    return found


def firing(
    rule: AlertingRule, points: Mapping[float, float], step: float, since: float, until: float
) -> list[tuple[float, float | None]]:
    """Prometheus's alert states over the expression's samples: pending from the first sample,
    firing once pending for `for`, resolved at the first evaluation without a sample (after
    `keep_firing_for` if set)."""
    spans: list[tuple[float, float | None]] = []
    active: float | None = None  # when it became pending
    fired: float | None = None
    last_seen = -math.inf
    for t in _steps(since - math.ceil(rule.for_ / step) * step, until, step):
        present = t in points
        if present:
            last_seen = t
            active = t if active is None else active
            if fired is None and t - active >= rule.for_:
                fired = t
        elif active is not None and t - last_seen > rule.keep_firing_for:
            if fired is not None and t > since:
                spans.append((max(fired, since), t))
            active = fired = None
    if fired is not None:
        spans.append((max(fired, since), None))
    return [(start, end) for start, end in spans if start <= until]


def _steps(start: float, end: float, step: float) -> Iterable[float]:
    count = math.floor((end - start) / step + 1e-9)
    return (round(start + i * step, 3) for i in range(count + 1))


# -- shared --------------------------------------------------------------------------------------


def _alert_labels(rule: AlertingRule, labels: Mapping[str, str]) -> dict[str, str]:
    found = {k: v for k, v in labels.items() if k != "__name__"}
    return {**found, **rule.labels, "alertname": rule.name}


def _key(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


def _intervals(
    times: Sequence[float], step: float, until: float
) -> list[tuple[float, float | None]]:
    """Runs of consecutive steps: (first, the step after the last), or None at the end."""
    spans: list[tuple[float, float | None]] = []
    for t in times:
        if spans and spans[-1][1] is not None and abs(t - spans[-1][1]) < step / 2:
            spans[-1] = (spans[-1][0], t + step)
        else:
            spans.append((t, t + step))
    return [(start, None if end is not None and end > until else end) for start, end in spans]


def _instance(
    labels: dict[str, str],
    rule: AlertingRule | None,
    points: Mapping[float, float],
    start: float,
    end: float | None,
    notes: list[str],
) -> Instance:
    value = points.get(start, math.nan)
    if rule is None:
        notes.append(
            f"{labels.get('alertname')}: no alerting rule has these labels: no annotations"
        )
    elif math.isnan(value):
        notes.append(f"{rule.name}: its expression has no value when an alert started: $value NaN")
    annotations = {}
    for name, template in (rule.annotations if rule else {}).items():
        text = render(template, labels, value)
        if text is None:
            notes.append(f"{rule.name if rule else '?'}: annotation {name!r} kept as written")
            text = template
        annotations[name] = text
    return Instance(labels, annotations, start, end)


def notifications(instances: Sequence[Instance], until: float) -> list[replay.Received]:
    """What Alertmanager would have sent: at each start and end, one notification per
    alertname with the alerts that changed and the others still firing."""
    moments: dict[float, list[Instance]] = defaultdict(list)
    for inst in instances:
        moments[inst.start].append(inst)
        if inst.end is not None and inst.end <= until:
            moments[inst.end].append(inst)
    sent: list[replay.Received] = []
    for at in sorted(moments):
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for inst in moments[at]:
            groups[inst.labels.get("alertname", "")].append(_alert(inst, at))
        for name in sorted(groups):
            body = json.dumps(_notification(name, groups[name]))
            sent.append((len(sent) + 1, at, body))
    return sent


def _alert(inst: Instance, at: float) -> dict[str, Any]:
    resolved = inst.end is not None and inst.end <= at
    return {
        "status": "resolved" if resolved else "firing",
        "labels": inst.labels,
        "annotations": inst.annotations,
        "startsAt": iso(inst.start),
        "endsAt": iso(inst.end) if resolved else "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": _fingerprint(inst.labels),
    }


def _notification(name: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    firing_ = any(a["status"] == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": "firing" if firing_ else "resolved",
        "receiver": "backtest",
        "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name},
        "commonAnnotations": {},
        "externalURL": "",
        "alerts": alerts,
    }


def _fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint: FNV-1a 64 over the sorted label names and values."""
    h = 0xCBF29CE484222325
    for name, value in sorted(labels.items()):
        for part in (name, value):
            for byte in part.encode():
                h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
            h = ((h ^ 0xFF) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def _window(step: float) -> str:
    return f"{max(1, round(step * 1000) - 1)}ms"


async def backtest(
    config: Config,
    prometheus: Prometheus,
    since: float,
    until: float,
    step: float = 60.0,
    alert_rules: Sequence[AlertingRule] | None = None,
) -> replay.Result:
    """The config's decisions on the alerts of [since, until]: from ALERTS, or, with
    `alert_rules`, from those rules' expressions."""
    given = alert_rules is not None
    rules = list(alert_rules) if alert_rules is not None else await prometheus.alerting_rules()
    relevant = [r for r in rules if any(r.could_feed(rule) for rule in config.rules)]
    if given:
        found = await from_rules(prometheus, relevant, since, until, step)
    else:
        found = await from_alerts_series(prometheus, relevant, since, until, step)
    journal = notifications(found.instances, until)
    result = await replay.decide(config, journal, since, until)
    result.assumptions = (*ASSUMPTIONS, *APPROXIMATIONS)
    source = "the alert rules given" if given else "ALERTS"
    result.notes = [
        f"{len(found.instances)} alerts from {source} ({len(relevant)} alerting rules feed "
        f"these rules), {len(journal)} notifications, step {step:g}s",
        *sorted(set(found.notes)),
        *result.notes,
    ]
    return result
