"""rules/migration.yaml through the running daemon, against a stand-in of the migration service's
REST API that keeps the tenant-migration runbook's state rules."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.conftest import StartDaemon
from tests.packs.world import Pack, firing, resolved, start
from tests.standins import Migration, MigrationApi

ORDERS = "/v1/migrations/orders"


@pytest.fixture
async def api() -> AsyncIterator[MigrationApi]:
    server = MigrationApi({"orders": Migration("dual_write")})
    await server.server.start()
    yield server
    await server.server.stop()


@pytest.fixture
async def migration(
    write_config: Callable[..., Path], start_daemon: StartDaemon, api: MigrationApi
) -> Pack:
    return await start(write_config, start_daemon, "migration", {"migration-api": api.server.url})


def calls(api: MigrationApi) -> list[str]:
    return [
        f"{s.method} {s.path}"
        + (f"?{s.query}" if s.query else "")
        + (f" {s.body.decode()}" if s.body else "")
        for s in api.server.seen
    ]


# --- after cutover: roll back, with a person's approval ------------------------------------------


async def test_a_bad_cutover_stops_then_rolls_back_once_approved(
    migration: Pack, api: MigrationApi
) -> None:
    errors = firing(
        "MigrationHighErrorRate", migration="orders", annotations={"error_rate": "0.08"}
    )
    await migration.fire(errors)
    assert api.migrations["orders"].state == "stopped"  # stop does not wait
    assert [a["status"] for a in await migration.actions()] == ["succeeded", "awaiting_approval"]

    # latency follows: the same migration, the same incident, nothing new
    latency = firing("MigrationHighLatency", migration="orders", annotations={"latency_ratio": "3"})
    await migration.fire(errors, latency)
    assert len(await migration.actions()) == 2

    await migration.approve("rollback_migration")
    await migration.later(30)  # the rollback's verification

    assert calls(api) == [
        f"GET {ORDERS}",  # precondition: not migrated, not rolled back
        f"POST {ORDERS}/stop",
        f"GET {ORDERS}",
        f'POST {ORDERS}/rollback {{"strategy": "truncate"}}',
        f"GET {ORDERS}/rollback/status",
    ]
    assert api.migrations["orders"].state == "rolled_back"
    assert await migration.outcomes() == [
        ("rollback", "stop_migration", "succeeded", None),
        ("rollback", "rollback_migration", "succeeded", "passed"),
    ]
    assert await migration.decisions() == [("opened", "rollback")]


async def test_a_migrated_migration_is_never_rolled_back(
    migration: Pack, api: MigrationApi
) -> None:
    """Runbook 001: "Migration must NOT be in migrated state" to abort. Even approved, the
    rollback checks the state just before acting."""
    api.migrations["orders"].state = "migrated"
    await migration.fire(firing("MigrationHighLatency", migration="orders"))
    await migration.approve("rollback_migration")

    assert calls(api) == [f"GET {ORDERS}", f"GET {ORDERS}"]
    assert [(a["action"], a["status"]) for a in await migration.actions()] == [
        ("stop_migration", "precondition_failed"),
        ("rollback_migration", "precondition_failed"),
    ]
    assert "state is 'migrated', which is excluded" in (await migration.actions())[1]["detail"]
    assert api.migrations["orders"].state == "migrated"


# --- source or target unavailable: wait, then resume ----------------------------------------------


async def test_an_unreachable_endpoint_waits_and_resumes_when_it_is_back(
    migration: Pack, api: MigrationApi
) -> None:
    api.migrations["orders"] = Migration("paused", resume_to="bulk_copy")  # the service paused it
    down = firing("MigrationEndpointUnavailable", migration="orders", endpoint="source")
    await migration.fire(down)
    assert calls(api) == []  # the runbook: wait for auto-recovery
    await migration.later(30 * 60)
    await migration.fire(resolved(down))
    await migration.later(10)

    assert calls(api) == [f"GET {ORDERS}", f"POST {ORDERS}/resume", f"GET {ORDERS}"]
    assert api.migrations["orders"].state == "bulk_copy"
    assert await migration.decisions() == [
        ("opened", "wait-for-recovery"),
        ("escalated", "not-recovering"),
        ("resolved", "not-recovering"),
    ]
    assert await migration.outcomes() == [
        ("on_resolved", "resume_migration", "succeeded", "passed")
    ]


async def test_a_migration_that_resumed_by_itself_is_left_alone(
    migration: Pack, api: MigrationApi
) -> None:
    down = firing("MigrationEndpointUnavailable", migration="orders", endpoint="target")
    await migration.fire(down)
    await migration.fire(resolved(down))
    assert calls(api) == [f"GET {ORDERS}"]
    assert [a["status"] for a in await migration.actions()] == ["precondition_failed"]


# --- performance degradation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bottleneck", "patched"), [("source_read", True), ("target_write", False)]
)
async def test_slow_throughput_reduces_readers_only_for_a_source_read_bottleneck(
    migration: Pack, api: MigrationApi, bottleneck: str, patched: bool
) -> None:
    api.migrations["orders"].bottleneck = bottleneck
    await migration.fire(
        firing(
            "MigrationThroughputLow", migration="orders", annotations={"throughput_ratio": "0.4"}
        )
    )
    expected = [f"GET {ORDERS}/performance/bottleneck"]
    if patched:
        expected.append(f'PATCH {ORDERS}/config {{"source": {{"parallel_readers": 2}}}}')
    assert calls(api) == expected
    assert api.migrations["orders"].config == (
        {"source": {"parallel_readers": 2}} if patched else {}
    )


# --- an overloaded source: pause, or stop at once ------------------------------------------------


def overloaded(utilization: str, severity: str) -> dict[str, object]:
    return firing(
        "MigrationSourceOverloaded",
        migration="orders",
        severity=severity,
        annotations={"utilization": utilization},
    )


async def test_high_load_pauses_and_recovery_resumes(migration: Pack, api: MigrationApi) -> None:
    load = overloaded("0.85", "P2")
    await migration.fire(load)
    await migration.later(10)
    assert api.migrations["orders"].state == "paused"
    await migration.fire(resolved(load))
    await migration.later(10)

    assert calls(api) == [
        f"GET {ORDERS}",  # precondition: bulk_copy or dual_write
        f"POST {ORDERS}/pause",
        f"GET {ORDERS}",  # verification: paused
        f"GET {ORDERS}",  # precondition: paused
        f"POST {ORDERS}/resume",
        f"GET {ORDERS}",  # verification: running again
    ]
    assert api.migrations["orders"].state == "dual_write"
    assert await migration.outcomes() == [
        ("pause", "pause_migration", "succeeded", "passed"),
        ("on_resolved", "resume_migration", "succeeded", "passed"),
    ]


async def test_critical_load_stops_immediately_and_nothing_resumes_it(
    migration: Pack, api: MigrationApi
) -> None:
    p2, p1 = overloaded("0.9", "P2"), overloaded("0.97", "P1")
    await migration.fire(p2)
    await migration.later(10)
    await migration.fire(p2, p1)
    await migration.fire(resolved(p2), resolved(p1))

    assert [c for c in calls(api) if c.startswith("POST")] == [
        f"POST {ORDERS}/pause",
        f"POST {ORDERS}/stop?immediate=true",
    ]
    assert api.migrations["orders"].state == "stopped"
    assert await migration.outcomes() == [
        ("pause", "pause_migration", "succeeded", "passed"),
        ("emergency-stop", "emergency_stop_migration", "succeeded", None),
        ("on_resolved", "resume_migration", "precondition_failed", None),
    ]
    assert await migration.decisions() == [
        ("opened", "pause"),
        ("escalated", "emergency-stop"),
        ("resolved", "emergency-stop"),
    ]
