"""A shipped rule pack (rules/<pack>.yaml) running in a daemon on a fake clock, its targets
stand-ins on 127.0.0.1: replay Alertmanager payloads, move time, read what was decided and done."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from remediator.alerts import parse_time
from remediator.clock import FakeClock
from tests.conftest import API_TOKEN, Running, StartDaemon, base_config
from tests.payloads import alert, fingerprint, notification

ROOT = Path(__file__).resolve().parents[2]
T0 = parse_time("2026-11-22T09:00:00Z")


class Pack:
    def __init__(self, running: Running, clock: FakeClock) -> None:
        self.running, self.clock = running, clock

    async def fire(self, *alerts: dict[str, Any]) -> None:
        response = await self.running.post_alerts(notification(*alerts))
        assert response.status_code == 200, response.text
        await self.running.settle()

    async def later(self, seconds: float) -> None:
        """Time passes: escalate-after, verification polls and expiries that came due run."""
        self.clock.advance(seconds)
        await self.running.daemon.timers.run_due()
        await self.running.settle()

    async def actions(self) -> list[dict[str, Any]]:
        """Every claim, oldest first."""
        return list(reversed((await self.running.api("/api/v1/actions?limit=500"))["items"]))

    async def outcomes(self) -> list[tuple[str, str, str, str | None]]:
        """(step, action, status, verification) of every claim, oldest first."""
        return [
            (a["step"], a["action"], a["status"], a["verify_status"]) for a in await self.actions()
        ]

    async def decisions(self, rule: str | None = None) -> list[tuple[str, str]]:
        """(event, tier) of every recorded decision, oldest first."""
        history = (await self.running.daemon.store.history(1000, None)).items
        return [
            (e["event"], e["tier"])
            for e in reversed(history)
            if e["kind"] == "decision" and (rule is None or e["rule"] == rule)
        ]

    async def approve(self, action: str) -> None:
        pending = (await self.running.api("/api/v1/approvals"))["items"]
        [approval] = [a for a in pending if a["action"] == action]
        response = await self.running.client.post(
            f"/api/v1/approvals/{approval['id']}",
            json={"decision": "approve", "by": "alice", "reason": "rollback agreed"},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        )
        assert response.status_code == 200, response.text
        await self.running.settle()


def config(pack: str, targets: dict[str, str], extra: str = "") -> str:
    """A main config loading rules/<pack>.yaml with these targets (plus raw target lines)."""
    return base_config(targets, extra + f"rule_files: [{ROOT / 'rules' / pack}.yaml]\n")


async def start(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    pack: str,
    targets: dict[str, str],
    extra: str = "",
) -> Pack:
    clock = FakeClock(T0)
    running = await start_daemon(write_config(config(pack, targets, extra)), clock)
    return Pack(running, clock)


def firing(
    name: str,
    starts_at: str = "2026-11-22T09:00:00Z",
    annotations: dict[str, str] | None = None,
    **labels: str,
) -> dict[str, Any]:
    """A firing alert; labels may include `status` (IngestionUploadsStuck has one)."""
    made = alert(name, "firing", starts_at=starts_at, annotations=annotations)
    made["labels"] = {"alertname": name, **labels}
    made["fingerprint"] = fingerprint(made["labels"])
    return made


def resolved(fired: dict[str, Any]) -> dict[str, Any]:
    return {**fired, "status": "resolved", "endsAt": "2026-11-22T12:00:00Z"}
