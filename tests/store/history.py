"""Simulated history, written through the store's own API: incidents that open on a firing
notification, run one action (an attempt, its output), and resolve on a resolved notification
five minutes later, each notification in the journal as Alertmanager sends it. For retention's
tests and bench/store_growth.py."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

from remediator.incidents import Incident
from remediator.store.records import (
    SUCCEEDED,
    Attempt,
    AuditEntry,
    Changes,
    IncidentWrite,
    InstanceWrite,
    NewClaim,
)
from remediator.types import Store

RULE = "cdc-connector-down"
DAY = 86400.0


def _labels(n: int) -> dict[str, str]:
    return {
        "alertname": "ConnectorDown",
        "connector": f"connector-{n:06d}",
        "severity": "critical",
        "cluster": f"prod-{n % 3}",
        "namespace": f"team-{n % 17}",
        "job": "kafka-connect-exporter",
        "instance": f"connect-{n % 5}:9404",
    }


def notification(n: int, status: str) -> str:
    labels = _labels(n)
    alert = {
        "status": status,
        "labels": labels,
        "annotations": {
            "summary": f"Connector {labels['connector']} is not running",
            "description": "Kafka Connect reports it in state FAILED for 2 minutes.",
            "runbook_url": "https://runbooks.example/cdc#check-connector-status",
        },
        "startsAt": "2026-11-22T09:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=kafka_connect_connector_status",
        "fingerprint": f"{n:016x}",
    }
    return json.dumps(
        {
            "version": "4",
            "groupKey": '{}:{alertname="ConnectorDown"}',
            "truncatedAlerts": 0,
            "status": status,
            "receiver": "remediator",
            "groupLabels": {"alertname": "ConnectorDown"},
            "commonLabels": labels,
            "commonAnnotations": alert["annotations"],
            "externalURL": "http://alertmanager:9093",
            "alerts": [alert],
        }
    )


async def incident(store: Store, n: int, at: float) -> None:
    """One incident's life: opened at `at`, its action run, resolved five minutes later."""
    labels = _labels(n)
    key = ("ConnectorDown", labels["connector"])
    opened = Incident(-1, RULE, key, "open", 0, None, at, at, at, instances={(f"{n}", at): None})
    firing = await store.append_journal(notification(n, "firing"), at)
    claim = NewClaim(-1, "restart", "restart_connector", "http", "kafka-connect", RULE,
                     f"key-{n}", {"labels": labels}, at)  # fmt: skip
    applied = await store.apply(
        Changes(
            at=at,
            journal_ids=[firing],
            incidents=[
                IncidentWrite(
                    opened, dict(zip(("alertname", "connector"), key, strict=True)), labels, {}
                )
            ],
            instances=[InstanceWrite(RULE, f"{n}", at, -1, "firing", None, at)],
            claims=[claim],
            audit=[AuditEntry("decision", "opened", f"Incident opened for {key[1]}", at, -1, RULE)],
        )
    )
    incident_id = applied.incident_ids[-1]
    [claimed] = applied.claims
    request = {"method": "POST", "url": f"http://connect:8083/connectors/{key[1]}/restart"}
    await store.start_claim(claimed.id, at + 1, request)
    attempt = Attempt(claimed.id, 1, at + 1, at + 2, True, "HTTP 202", status_code=202)
    done = AuditEntry("action", "succeeded", "restart_connector succeeded: HTTP 202", at + 2,
                      incident_id, RULE, "restart", "restart_connector")  # fmt: skip
    await store.finish_claim(claimed.id, SUCCEEDED, "HTTP 202", at + 2, done, last_attempt=attempt)
    resolved_at = at + 300
    resolving = await store.append_journal(notification(n, "resolved"), resolved_at)
    resolved = replace(opened, id=incident_id, status="resolved", resolved_at=resolved_at)
    await store.apply(
        Changes(
            at=resolved_at,
            journal_ids=[resolving],
            incidents=[IncidentWrite(resolved, {})],
            instances=[InstanceWrite(RULE, f"{n}", at, incident_id, "resolved", None, resolved_at)],
            audit=[AuditEntry("decision", "resolved", "Resolved", resolved_at, incident_id, RULE)],
        )
    )


async def fill(store: Store, days: int, per_day: int, now: float, first: int = 0) -> int:
    """`per_day` incidents a day over the `days` before `now`, spread evenly; how many."""
    total = days * per_day
    step = days * DAY / total
    for start in range(0, total, 50):  # 50 at a time: their writes share commits
        chunk = range(start, min(start + 50, total))
        await asyncio.gather(
            *(incident(store, first + n, now - days * DAY + n * step) for n in chunk)
        )
    return total
