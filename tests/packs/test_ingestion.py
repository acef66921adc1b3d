"""rules/ingestion.yaml through the running daemon: the config service and the flag service are
key/value stand-ins, the workers' cluster the Kubernetes API stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import API_TOKEN, StartDaemon
from tests.packs.world import Pack, firing, resolved, start
from tests.standins import ConfigService, KubeApi, Workload

ENABLED = "/v1/config/ingestion.enabled"
FLAG = "/v1/flags/ingestion_v2_enabled"
WORKERS = "/apis/apps/v1/namespaces/ingestion/deployments"


@dataclass
class Targets:
    config: ConfigService
    flags: ConfigService
    kube: KubeApi


@pytest.fixture
async def targets() -> AsyncIterator[Targets]:
    found = Targets(
        ConfigService(),
        ConfigService(),
        KubeApi(
            {
                ("deployments", "ingestion", "parse-worker"): Workload(),
                ("deployments", "ingestion", "promotion-worker"): Workload(),
            }
        ),
    )
    servers = [found.config.server, found.flags.server, found.kube.server]
    for server in servers:
        await server.start()
    yield found
    for server in servers:
        await server.stop()


@pytest.fixture
async def ingestion(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    targets: Targets,
    tmp_path: Path,
) -> Pack:
    (tmp_path / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
        f"clusters: [{{name: c, cluster: {{server: '{targets.kube.server.url}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
    )
    urls = {
        "ingestion-config": targets.config.server.url,
        "feature-flags": targets.flags.server.url,
    }
    cluster = "  ingestion-cluster: {kubernetes: {kubeconfig: kubeconfig}}\n"
    return await start(write_config, start_daemon, "ingestion", urls, cluster)


def error_rate(rate: str, severity: str) -> dict[str, object]:
    """One rung of IngestionHighErrorRate (alerting/prometheus/rules/ingestion.yml)."""
    return firing("IngestionHighErrorRate", severity=severity, annotations={"error_rate": rate})


def calls(service: ConfigService | KubeApi) -> list[tuple[str, str, object]]:
    return [(s.method, s.path, s.json() if s.body else None) for s in service.server.seen]


# --- the error-rate ladder ------------------------------------------------------------------------


async def test_notify_then_pause_then_roll_back_with_approval_then_resume(
    ingestion: Pack, targets: Targets
) -> None:
    p2, p1, p0 = error_rate("0.07", "P2"), error_rate("0.12", "P1"), error_rate("0.23", "P0")

    await ingestion.fire(p2)
    assert (calls(targets.config), await ingestion.actions()) == ([], [])  # tell the team

    await ingestion.fire(p2, p1)
    await ingestion.later(10)  # the kill switch is verified
    assert targets.config.values[ENABLED]["value"] is False

    await ingestion.fire(p2, p1, p0)
    await ingestion.later(10)
    assert targets.flags.server.seen == []  # the rollback waits for a person
    await ingestion.approve("rollback_feature_flag")
    assert targets.flags.values[FLAG] == {"enabled": False, "allowlist": []}

    await ingestion.fire(resolved(p2), resolved(p1), resolved(p0))
    assert targets.config.values[ENABLED]["value"] is True

    reason = "remediator: IngestionHighErrorRate at {} (incident 1)"
    assert calls(targets.config) == [
        ("PUT", ENABLED, {"value": False, "reason": reason.format("0.12")}),
        ("GET", ENABLED, None),  # the switch holds: the rollback tier does not set it again
        (
            "PUT",
            ENABLED,
            {"value": True, "reason": "remediator: IngestionHighErrorRate resolved (incident 1)"},
        ),
    ]
    assert calls(targets.flags) == [("PATCH", FLAG, {"enabled": False, "allowlist": []})]
    assert await ingestion.outcomes() == [
        ("pause", "pause_ingestion", "succeeded", "passed"),
        ("rollback", "rollback_feature_flag", "succeeded", None),
        ("on_resolved", "resume_ingestion", "succeeded", None),
    ]
    assert await ingestion.decisions() == [
        ("opened", "notify"),
        ("escalated", "pause"),
        ("escalated", "rollback"),
        ("resolved", "rollback"),
    ]
    [approval] = (await ingestion.running.api("/api/v1/approvals?status=all"))["items"]
    assert (approval["action"], approval["status"], approval["decided_by"]) == (
        "rollback_feature_flag",
        "approved",
        "api:alice",
    )


async def test_a_pause_that_does_not_hold_climbs_to_the_rollback(
    ingestion: Pack, targets: Targets
) -> None:
    """The config service accepts the write but reads back enabled: not paused."""
    await ingestion.fire(error_rate("0.12", "P1"))
    targets.config.values[ENABLED] = {"value": True}  # somebody flipped it back
    for _ in range(6):
        await ingestion.later(10)
    assert await ingestion.decisions() == [("opened", "pause"), ("escalated", "rollback")]
    assert [(a, s) for _, a, s, _ in await ingestion.outcomes()] == [
        ("pause_ingestion", "succeeded"),
        ("pause_ingestion", "succeeded"),
        ("rollback_feature_flag", "awaiting_approval"),
    ]


# --- circuit breaker, staging backlog ---------------------------------------------------------


async def test_a_circuit_breaker_open_pages_and_the_third_in_an_hour_asks_to_roll_back(
    ingestion: Pack, targets: Targets
) -> None:
    for minute in ("00", "20", "40"):
        opened = firing(
            "IngestionCircuitOpen", f"2026-11-22T09:{minute}:00Z", breaker="db", severity="P0"
        )
        await ingestion.fire(opened)
        await ingestion.fire(resolved(opened))
        await ingestion.later(20 * 60)
    assert await ingestion.decisions() == [
        ("opened", "page"),
        ("resolved", "page"),
        ("opened", "page"),
        ("resolved", "page"),
        ("opened", "rollback"),
        ("resolved", "rollback"),
    ]
    # the breaker closed before anyone approved: a firing action never runs for a resolved
    # alert, so nobody is left an approval to click
    [rollback] = await ingestion.actions()
    assert (rollback["action"], rollback["status"]) == ("rollback_feature_flag", "skipped")
    assert "the incident resolved before anyone approved" in rollback["detail"]
    [approval] = (await ingestion.running.api("/api/v1/approvals?status=all"))["items"]
    assert (approval["status"], approval["decided_by"]) == ("cancelled", "remediator")
    assert (await ingestion.running.api("/api/v1/approvals"))["items"] == []
    cancelled = await ingestion.running.api("/api/v1/approvals?status=cancelled")
    assert [a["id"] for a in cancelled["items"]] == [approval["id"]]
    bad = await ingestion.running.client.get(
        "/api/v1/approvals?status=gone", headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    expected = "pending, approved, denied, expired, cancelled or all"
    assert (bad.status_code, bad.json()) == (
        400,
        {"error": f"status: expected {expected}, got 'gone'"},
    )
    assert targets.flags.server.seen == []


async def test_three_breakers_opening_in_one_notification_are_three_repeats(
    ingestion: Pack, targets: Targets
) -> None:
    """One Alertmanager group carrying three circuit-breaker alerts: the rule counts each."""
    await ingestion.fire(
        *(
            firing("IngestionCircuitOpen", f"2026-11-22T09:0{n}:00Z", breaker=name, severity="P0")
            for n, name in enumerate(("db", "cache", "queue"))
        )
    )
    assert await ingestion.decisions() == [("opened", "page"), ("escalated", "rollback")]
    [rollback] = await ingestion.actions()
    assert (rollback["action"], rollback["status"]) == (
        "rollback_feature_flag",
        "awaiting_approval",
    )


async def test_a_staging_backlog_is_told_not_acted_on(ingestion: Pack, targets: Targets) -> None:
    await ingestion.fire(firing("IngestionStagingBacklog", severity="P2"))
    assert await ingestion.decisions() == [("opened", "notify")]
    assert await ingestion.actions() == []


# --- stuck uploads: restart the worker that holds them -----------------------------------------


async def test_stuck_uploads_restart_their_worker_once(ingestion: Pack, targets: Targets) -> None:
    processing = firing("IngestionUploadsStuck", status="processing", severity="P2")
    promoting = firing("IngestionUploadsStuck", status="promoting", severity="P2")

    await ingestion.fire(processing)
    await ingestion.fire(processing, promoting)
    await ingestion.fire(resolved(processing), resolved(promoting))
    again = firing("IngestionUploadsStuck", "2026-11-22T09:10:00Z", status="processing")
    await ingestion.later(10 * 60)
    await ingestion.fire(again)  # within the hour's cooldown

    assert [(s.method, s.path, s.headers["Content-Type"]) for s in targets.kube.server.seen] == [
        ("PATCH", f"{WORKERS}/parse-worker", "application/strategic-merge-patch+json"),
        ("PATCH", f"{WORKERS}/promotion-worker", "application/strategic-merge-patch+json"),
    ]
    assert [w.rollouts for w in targets.kube.workloads.values()] == [1, 1]
    assert [(a, s) for _, a, s, _ in await ingestion.outcomes()] == [
        ("restart_parse_worker", "succeeded"),
        ("restart_promotion_worker", "succeeded"),
        ("restart_parse_worker", "refused"),
    ]
    assert (await ingestion.actions())[2]["detail"].startswith("cooldown: ")
