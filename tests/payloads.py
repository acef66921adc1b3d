"""Alertmanager webhook bodies (version 4) for tests, shaped like Alertmanager sends them."""

from __future__ import annotations

import hashlib
from typing import Any

ZERO = "0001-01-01T00:00:00Z"


def fingerprint(labels: dict[str, str]) -> str:
    """A stable 16-hex-digit fingerprint of the label set (Alertmanager's is FNV-64a; tests only
    need stability and distinctness)."""
    text = "\xff".join(f"{k}\xff{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode(errors="surrogatepass")).hexdigest()[:16]


def alert(
    alertname: str,
    status: str = "firing",
    *,
    starts_at: str = "2026-11-22T09:00:00Z",
    ends_at: str | None = None,
    annotations: dict[str, str] | None = None,
    **labels: str,
) -> dict[str, Any]:
    all_labels = {"alertname": alertname, **labels}
    return {
        "status": status,
        "labels": all_labels,
        "annotations": annotations or {},
        "startsAt": starts_at,
        "endsAt": ends_at or (ZERO if status == "firing" else "2026-11-22T09:30:00Z"),
        "generatorURL": "http://prometheus.test:9090/graph?g0.expr=up",
        "fingerprint": fingerprint(all_labels),
    }


def notification(*alerts: dict[str, Any], receiver: str = "remediator") -> dict[str, Any]:
    firing = any(a["status"] == "firing" for a in alerts)
    common = dict(alerts[0]["labels"]) if alerts else {}
    for a in alerts[1:]:
        common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
    group = {"alertname": common["alertname"]} if "alertname" in common else {}
    return {
        "version": "4",
        "groupKey": "{}:{" + ",".join(f'{k}="{v}"' for k, v in group.items()) + "}",
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": receiver,
        "groupLabels": group,
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.test:9093",
        "alerts": list(alerts),
    }
