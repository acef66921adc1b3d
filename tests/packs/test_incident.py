"""rules/incident.yaml through the running daemon: an incident per service climbing the incident
runbook's severity levels, telling people and touching nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import StartDaemon
from tests.packs.world import Pack, firing, resolved, start


@pytest.fixture
async def incident(write_config: Callable[..., Path], start_daemon: StartDaemon) -> Pack:
    return await start(write_config, start_daemon, "incident", {})


def rung(service: str, rate: str, severity: str) -> dict[str, object]:
    """One instance of ServiceHighErrorRate (alerting/prometheus/rules/incident.yml)."""
    return firing(
        "ServiceHighErrorRate", service=service, severity=severity, annotations={"error_rate": rate}
    )


async def test_the_severity_climbs_with_the_error_rate_and_never_acts(incident: Pack) -> None:
    p3, p2, p1 = (
        rung("checkout", "0.12", "P3"),
        rung("checkout", "0.12", "P2"),
        rung("checkout", "0.12", "P1"),
    )
    await incident.fire(rung("checkout", "0.03", "P3"))
    await incident.fire(p3, p2, p1)
    down = rung("checkout", "0.8", "P0")
    await incident.fire(p3, p2, p1, down)
    await incident.fire(rung("search", "0.02", "P3"))
    await incident.fire(resolved(p3), resolved(p2), resolved(p1), resolved(down))

    assert await incident.decisions() == [
        ("opened", "P3-issue-tracker"),
        ("escalated", "P1-page-on-call"),
        ("escalated", "P0-service-down"),
        ("opened", "P3-issue-tracker"),
        ("resolved", "P0-service-down"),
    ]
    assert await incident.actions() == []
    incidents = (await incident.running.api("/api/v1/incidents"))["items"]
    assert {(i["key"]["service"], i["status"]) for i in incidents} == {
        ("checkout", "resolved"),
        ("search", "open"),
    }


def test_the_rule_carries_the_severity_levels_and_the_escalation_path(incident: Pack) -> None:
    """The Slack messages quote the rule's description: the runbook's levels and path."""
    [rule] = incident.running.daemon.config.rules
    for text in ("P0 Critical", "15 minutes", "P1 High", "1 hour", "P2 Medium", "4 hours",
                 "P3 Low", "next business day", "@team-lead", "@senior-developer",
                 "@engineering-manager", "status page"):  # fmt: skip
        assert text in rule.description, text
