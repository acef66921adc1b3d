"""rules/cdc.yaml through the running daemon: Kafka Connect is the stand-in (ConnectorsResource's
answers), Alertmanager the real binary (silences)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from remediator.trust import default_tls
from tests.conftest import StartDaemon
from tests.packs.world import Pack, firing, resolved, start
from tests.peers import alertmanager
from tests.standins import Connector, KafkaConnect

pytestmark = pytest.mark.e2e

SINK, SOURCE = "postgres-sink-connector", "sqlserver-source-connector"
STATUS = "GET /connectors/{}/status"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_alertmanager(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    async with alertmanager(tmp_path_factory.mktemp("alertmanager")) as url:
        yield url


EARLIER_SILENCES: set[str] = set()


@pytest.fixture
async def am_url(shared_alertmanager: str) -> str:
    """The module's Alertmanager. Its silences outlive a test, and each backend numbers its
    incidents from 1: a test sees only the silences made during it (silences_for)."""
    async with httpx.AsyncClient(verify=default_tls()) as client:
        found = (await client.get(f"{shared_alertmanager}/api/v2/silences")).json()
    EARLIER_SILENCES.update(s["id"] for s in found)
    return shared_alertmanager


@pytest.fixture
async def cdc(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    kafka_connect: KafkaConnect,
    am_url: str,
) -> Pack:
    targets = {"kafka-connect": kafka_connect.server.url, "alertmanager": am_url}
    return await start(write_config, start_daemon, "cdc", targets)


def calls(connect: KafkaConnect) -> list[str]:
    return [
        f"{s.method} {s.path}" + (f"?{s.query}" if s.query else "") for s in connect.server.seen
    ]


async def silences_for(am_url: str, incident: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(verify=default_tls()) as client:
        found = (await client.get(f"{am_url}/api/v2/silences")).json()
    return [
        s
        for s in found
        if f"incident {incident})" in s["comment"].replace("\n", " ")
        and s["id"] not in EARLIER_SILENCES
    ]


# --- ConnectorDown --------------------------------------------------------------------------


async def test_a_failed_connector_is_restarted_and_checked(
    cdc: Pack, kafka_connect: KafkaConnect
) -> None:
    down = firing("ConnectorDown", connector=SINK, severity="P1")
    await cdc.fire(down)
    await cdc.later(10)  # the verification poll
    await cdc.fire(resolved(down))

    assert calls(kafka_connect) == [
        STATUS.format(SINK),  # precondition: FAILED
        f"POST /connectors/{SINK}/restart?includeTasks=true&onlyFailed=true",
        STATUS.format(SINK),  # verification: RUNNING, every task RUNNING
    ]
    assert await cdc.outcomes() == [("restart", "restart_connector", "succeeded", "passed")]
    assert await cdc.decisions() == [("opened", "restart"), ("resolved", "restart")]
    assert kafka_connect.connectors[SINK] == Connector("RUNNING", ["RUNNING", "RUNNING"])


async def test_a_paused_connector_is_never_restarted(
    cdc: Pack, kafka_connect: KafkaConnect
) -> None:
    """connector_state is 0 for PAUSED too: the precondition keeps a deliberate pause."""
    kafka_connect.connectors[SINK] = Connector("PAUSED", ["PAUSED", "PAUSED"])
    await cdc.fire(firing("ConnectorDown", connector=SINK))
    await cdc.later(30 * 60)  # the runbook's "escalate if not resolved in 30 minutes"

    assert calls(kafka_connect) == [STATUS.format(SINK)]
    [action] = await cdc.actions()
    assert action["status"] == "precondition_failed"
    assert action["detail"] == (
        f"precondition failed, not acting: connector '{SINK}' is PAUSED, tasks ['PAUSED', "
        "'PAUSED']: state not in ['FAILED', 'UNASSIGNED']"
    )
    assert await cdc.decisions() == [("opened", "restart"), ("escalated", "escalate-on-call")]
    assert kafka_connect.connectors[SINK].state == "PAUSED"


async def test_a_restart_that_does_not_help_escalates(
    cdc: Pack, kafka_connect: KafkaConnect
) -> None:
    kafka_connect.restart_outcome = "FAILED"
    await cdc.fire(firing("ConnectorDown", connector=SINK))
    for _ in range(12):
        await cdc.later(10)

    assert await cdc.outcomes() == [("restart", "restart_connector", "succeeded", "failed")]
    assert await cdc.decisions() == [("opened", "restart"), ("escalated", "escalate-on-call")]
    [escalation] = [
        e
        for e in (await cdc.running.daemon.store.history(100, None)).items
        if e["event"] == "escalated"
    ]
    assert escalation["detail"]["reason"].startswith("verification failed at tier 'restart'")


# --- HighReplicationLag -----------------------------------------------------------------------


async def test_lag_notifies_then_pauses_the_sink_and_silences_its_connector_down(
    cdc: Pack, kafka_connect: KafkaConnect, am_url: str
) -> None:
    kafka_connect.connectors[SINK] = Connector("RUNNING", ["RUNNING"])
    lag = firing("HighReplicationLag", connector=SOURCE, annotations={"lag": "25000"})

    await cdc.fire(lag)
    assert (calls(kafka_connect), await cdc.actions()) == ([], [])  # notify only

    await cdc.later(30 * 60)  # the lag persists
    await cdc.later(5)  # the pause's verification
    incident = str((await cdc.actions())[0]["incident_id"])
    [silence] = await silences_for(am_url, incident)
    assert silence["status"]["state"] == "active"
    assert silence["createdBy"] == "remediator"
    assert [(m["name"], m["value"]) for m in silence["matchers"]] == [
        ("alertname", "ConnectorDown"),
        ("connector", SINK),
    ]

    await cdc.fire(resolved(lag))
    await cdc.later(5)  # the resume's verification

    assert calls(kafka_connect) == [
        f"PUT /connectors/{SINK}/pause",
        STATUS.format(SINK),
        f"PUT /connectors/{SINK}/resume",
        STATUS.format(SINK),
    ]
    assert await cdc.outcomes() == [
        ("pause-sink", "pause_sink_connector", "succeeded", "passed"),
        ("pause-sink", "silence_sink_connector_down", "succeeded", None),
        ("on_resolved", "resume_sink_connector", "succeeded", "passed"),
        ("on_resolved", "unsilence_sink_connector_down", "succeeded", None),
    ]
    assert await cdc.decisions() == [
        ("opened", "notify"),
        ("escalated", "pause-sink"),
        ("resolved", "pause-sink"),
    ]
    [silence] = await silences_for(am_url, incident)
    assert silence["status"]["state"] == "expired"


async def test_lag_that_clears_in_time_changes_nothing(
    cdc: Pack, kafka_connect: KafkaConnect
) -> None:
    lag = firing("HighReplicationLag", connector=SOURCE)
    await cdc.fire(lag)
    await cdc.later(20 * 60)
    await cdc.fire(resolved(lag))
    await cdc.later(20 * 60)
    assert (calls(kafka_connect), await cdc.actions()) == ([], [])
    assert await cdc.decisions() == [("opened", "notify"), ("resolved", "notify")]


# --- DataMismatch -----------------------------------------------------------------------------


async def test_data_loss_suspected_pauses_both_connectors_and_escalates(
    cdc: Pack, kafka_connect: KafkaConnect
) -> None:
    kafka_connect.connectors[SINK] = Connector("RUNNING", ["RUNNING"])
    orders = firing("DataMismatch", table="orders", severity="P1")
    customers = firing("DataMismatch", table="customers", severity="P1")

    await cdc.fire(orders, customers)
    await cdc.later(5)
    assert sorted(calls(kafka_connect)[:2]) == [
        f"PUT /connectors/{SINK}/pause",
        f"PUT /connectors/{SOURCE}/pause",
    ]
    assert (kafka_connect.connectors[SINK].state, kafka_connect.connectors[SOURCE].state) == (
        "PAUSED",
        "PAUSED",
    )

    # five minutes later connector_state is 0 for both: ConnectorDown must not undo the pause
    await cdc.fire(
        firing("ConnectorDown", "2026-11-22T09:05:00Z", connector=SINK),
        firing("ConnectorDown", "2026-11-22T09:05:00Z", connector=SOURCE),
    )
    pauses_and_checks = len(calls(kafka_connect))
    assert not any("restart" in c for c in calls(kafka_connect))

    await cdc.later(30 * 60)
    await cdc.later(30 * 60)
    await cdc.fire(resolved(orders), resolved(customers))

    outcomes = await cdc.outcomes()
    assert sorted(outcomes[:2]) == [
        ("pause-replication", "pause_sink_connector", "succeeded", "passed"),
        ("pause-replication", "pause_source_connector", "succeeded", "passed"),
    ]
    assert outcomes[2:] == [("restart", "restart_connector", "precondition_failed", None)] * 2
    assert await cdc.decisions("cdc-data-mismatch") == [
        ("opened", "pause-replication"),
        ("escalated", "escalate-team-lead"),
        ("escalated", "escalate-infrastructure-manager"),
        ("resolved", "escalate-infrastructure-manager"),
    ]
    # "do not make changes until approved by senior team": nothing resumed on resolve
    assert len(calls(kafka_connect)) == pauses_and_checks
    assert kafka_connect.connectors[SINK].state == "PAUSED"
