"""The alerts and rules the daemon benchmarks send and load.

The daemon runs the shipped rule packs (rules/cdc.yaml, rules/ingestion.yaml) plus BENCH_RULES:
50 rules for alertnames Bench00..Bench49 (each with a severity regex, an incident key of
alertname and instance, and one HTTP action) and one rule for the alert-to-action benchmark.
Every target points at the sink stand-in, which answers at once. Each rule's actions run one at
a time per alert instance (`one_at_a_time_by`), not per target: every instance stands for a
different thing behind the one sink, as connectors behind one Kafka Connect cluster.

The ingest mix, by alert label set (a group of a 50-alert notification shares one alertname, as
Alertmanager groups by alertname):
  30 % ConnectorDown{connector}          rule cdc-connector-down, one incident per connector
  10 % IngestionHighErrorRate{service}    rule ingestion-error-rate (a ladder on error_rate)
  40 % Bench00..Bench49{instance}         the 50 bench rules, one incident per instance
  20 % alertnames no rule matches         decided "unmatched"
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

ZERO = "0001-01-01T00:00:00Z"
UNMATCHED = ("NodeFilesystemAlmostFull", "KubePodCrashLooping", "HighRequestLatency")
BENCH_ALERTNAMES = tuple(f"Bench{i:02d}" for i in range(50))

_BENCH_RULE = """\
  - name: bench-{n:02d}
    match: '{{alertname="Bench{n:02d}", severity=~"critical|warning|page"}}'
    incident_key: [alertname, instance]
    one_at_a_time_by: [instance]
    tiers:
      - name: act
        actions: [bench_call]
"""

BENCH_RULES = """\
actions:
  bench_call:
    kind: http
    target: sink
    method: POST
    path: /ingest/{alertname}/{instance}
    body: {instance: "{instance}", incident: "{$incident_id}"}
  a2a_call:
    kind: http
    target: sink
    method: POST
    path: /a2a/{seq}
    body: {seq: "{seq}", incident: "{$incident_id}"}
    timeout: 5s
    retries: 0

rules:
  - name: bench-a2a
    match: '{alertname="BenchA2A"}'
    incident_key: [alertname, seq]
    one_at_a_time_by: [seq]
    tiers:
      - name: act
        actions: [a2a_call]
""" + "".join(_BENCH_RULE.format(n=n) for n in range(50))


def fingerprint(labels: dict[str, str]) -> str:
    text = "\xff".join(f"{k}\xff{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _label_set(alertname: str, i: int, rnd: random.Random) -> tuple[dict[str, str], dict[str, str]]:
    labels = {
        "alertname": alertname,
        "severity": rnd.choice(("critical", "warning", "page")),
        "cluster": f"prod-{i % 3}",
        "namespace": f"team-{i % 17}",
        "job": "bench",
    }
    annotations = {
        "summary": f"{alertname} on item {i}",
        "description": f"{alertname} has been firing for item {i} for more than 5 minutes.",
        "runbook_url": f"https://runbooks.example/{alertname.lower()}",
    }
    if alertname == "ConnectorDown":
        labels["connector"] = f"connector-{i:05d}"
    elif alertname == "IngestionHighErrorRate":
        labels["service"] = f"ingestion-{i:05d}"
        annotations["error_rate"] = f"{rnd.uniform(0.03, 0.3):.4f}"
    else:
        labels["instance"] = f"host-{i:05d}:9100"
    return labels, annotations


def _alertname(rnd: random.Random) -> str:
    roll = rnd.random()
    if roll < 0.3:
        return "ConnectorDown"
    if roll < 0.4:
        return "IngestionHighErrorRate"
    if roll < 0.8:
        return rnd.choice(BENCH_ALERTNAMES)
    return rnd.choice(UNMATCHED)


def write_pool(path: Path, group_size: int, groups: int, seed: int = 1) -> int:
    """The label-set pool for post_alerts.lua; returns the number of label sets."""
    rnd = random.Random(seed)
    lines = []
    n = 0
    for _ in range(groups):
        alertname = _alertname(rnd)
        for _ in range(group_size):
            labels, annotations = _label_set(alertname, n, rnd)
            n += 1
            lines.append(
                "\t".join(
                    (
                        fingerprint(labels),
                        json.dumps(labels, separators=(",", ":")),
                        json.dumps(annotations, separators=(",", ":")),
                        alertname,
                    )
                )
            )
    path.write_text("\n".join(lines) + "\n")
    return n


def a2a_notification(seq: int) -> dict[str, Any]:
    """One new alert instance (a new incident, so one action) for the alert-to-action benchmark."""
    labels = {
        "alertname": "BenchA2A",
        "seq": str(seq),
        "severity": "critical",
        "cluster": "prod-1",
        "namespace": "team-3",
    }
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": f"bench alert {seq}"},
        "startsAt": "2026-11-22T09:00:00Z",
        "endsAt": ZERO,
        "generatorURL": "http://prometheus.bench:9090/graph?g0.expr=up",
        "fingerprint": fingerprint(labels),
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="BenchA2A"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "remediator",
        "groupLabels": {"alertname": "BenchA2A"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.bench:9093",
        "alerts": [alert],
    }
