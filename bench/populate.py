"""Fill a store with open incidents, written by the daemon's own commit path.

Each incident is what the rule cdc-connector-down leaves behind for one failed connector: the
incident (labels, annotations, key), its one firing alert instance, its claim of
restart_connector, the audit lines `opened` and `claimed`: all written with SqliteStore.apply,
the function the engine commits with, in batches. Then, with plain SQL, each claim is finished
as the executor would have finished it (succeeded, one attempt, its request and an audit line),
so that the daemon starting on this store has nothing to run, only incidents to load.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

from bench.workload import fingerprint
from remediator.incidents import Incident
from remediator.store.records import AuditEntry, Changes, IncidentWrite, InstanceWrite, NewClaim
from remediator.store.sqlite import SqliteStore

RULE = "cdc-connector-down"
BATCH = 5_000
NOW = 1_795_338_000.0  # 2026-11-22T09:00:00Z


def _changes(first: int, count: int) -> Changes:
    changes = Changes(at=NOW)
    for i in range(first, first + count):
        connector = f"connector-{i:06d}"
        labels = {
            "alertname": "ConnectorDown",
            "connector": connector,
            "severity": "critical",
            "cluster": f"prod-{i % 3}",
            "namespace": f"team-{i % 17}",
            "job": "kafka-connect-exporter",
            "instance": f"connect-{i % 5}:9404",
        }
        annotations = {
            "summary": f"Connector {connector} is not running",
            "description": f"Kafka Connect reports {connector} in state FAILED for 2 minutes.",
            "runbook_url": "https://runbooks.example/cdc#check-connector-status",
        }
        fp = fingerprint(labels)
        placeholder = -(i + 1)
        key = ("ConnectorDown", connector)
        incident = Incident(
            id=placeholder,
            rule=RULE,
            key=key,
            status="open",
            tier=0,
            value=None,
            opened_at=NOW,
            tier_at=NOW,
            updated_at=NOW,
            instances={(fp, NOW): None},
        )
        key_labels = {"alertname": "ConnectorDown", "connector": connector}
        changes.incidents.append(IncidentWrite(incident, key_labels, labels, annotations))
        changes.instances.append(InstanceWrite(RULE, fp, NOW, placeholder, "firing", None, NOW))
        context = {
            "labels": labels,
            "annotations": annotations,
            "rule": RULE,
            "tier": "restart",
            "value": None,
            "fingerprint": fp,
        }
        changes.claims.append(
            NewClaim(
                placeholder,
                "restart",
                "restart_connector",
                "http",
                "kafka-connect",
                RULE,
                str(uuid.uuid4()),
                context,
                NOW,
            )
        )
        for event, message in (
            ("opened", f"Incident opened for alertname=ConnectorDown, connector={connector}"),
            ("claimed", "Claimed restart_connector (http on kafka-connect)"),
        ):
            changes.audit.append(
                AuditEntry(
                    kind="decision" if event == "opened" else "action",
                    event=event,
                    message=message,
                    at=NOW,
                    incident_id=placeholder,
                    rule=RULE,
                    tier="restart",
                    actor="alertmanager",
                )
            )
    return changes


async def _write(db: Path, incidents: int) -> None:
    store = SqliteStore(db)
    await store.open()
    try:
        for first in range(0, incidents, BATCH):
            await store.apply(_changes(first, min(BATCH, incidents - first)))
    finally:
        await store.close()


def _finish_claims(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute(
                "UPDATE claims SET status = 'succeeded', attempts = 1, started_at = claimed_at, "
                "finished_at = claimed_at + 0.05, detail = 'POST ...: HTTP 202', "
                "request = json_object('method', 'POST', 'url', 'http://connect:8083/connectors/'"
                " || json_extract(context, '$.labels.connector') || '/restart', 'headers', "
                "json('{}'), 'body', NULL)"
            )
            conn.execute(
                "INSERT INTO attempts (claim_id, attempt, started_at, finished_at, ok, "
                "status_code, detail, output) SELECT id, 1, claimed_at, claimed_at + 0.05, 1, "
                "202, 'HTTP 202', '' FROM claims"
            )
            conn.execute(
                "INSERT INTO audit (at, kind, event, incident_id, rule, tier, action, actor, "
                "message, detail) SELECT finished_at, 'action', 'succeeded', incident_id, rule, "
                "step, action, 'remediator', 'restart_connector: succeeded: HTTP 202', "
                "json_object('claim_id', id) FROM claims"
            )
    finally:
        conn.close()


def populate(db: Path, incidents: int) -> None:
    """A store at `db` (created with the migrations) holding `incidents` open incidents."""
    asyncio.run(_write(db, incidents))
    if incidents:
        _finish_claims(db)
