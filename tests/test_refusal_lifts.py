"""When a refusal lifts: the kill switch, a mute and a maintenance window each hold or drop the
action they stop, as configured. Held, it is judged again when the refusal lifts (if its incident
is still open) and runs once; dropped, it never runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from remediator.clock import FakeClock, iso
from tests.conftest import API_TOKEN, Running, StartDaemon, base_config
from tests.payloads import alert, notification
from tests.standins import Recorder

T0 = 1_795_000_000.0
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
RULES = """
actions:
  restart_worker: {{kind: http, target: svc, path: /restart, retries: 0}}
rules:
  - name: worker-stuck
    match: '{{alertname="WorkerStuck"}}'
    during_maintenance: {maintenance}
    tiers:
      - actions: [restart_worker]
"""


@dataclass
class World:
    running: Running
    clock: FakeClock
    svc: Recorder

    async def fire(self, status: str = "firing") -> None:
        body = notification(alert("WorkerStuck", status))
        assert (await self.running.post_alerts(body)).status_code == 200
        await self.settle()

    async def settle(self) -> None:
        await self.running.settle()

    async def later(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.running.daemon.timers.run_due()
        await self.settle()

    async def call(self, method: str, path: str, body: dict[str, Any]) -> Any:
        r = await self.running.client.request(method, path, json=body, headers=AUTH)
        assert r.status_code < 300, r.text
        await self.settle()
        return r.json()

    def restarts(self) -> int:
        return len(self.svc.server.seen)

    async def statuses(self) -> list[str]:
        return [a["status"] for a in (await self.running.api("/api/v1/actions"))["items"]]

    async def events(self) -> list[str]:
        return [h["event"] for h in (await self.running.api("/api/v1/history?limit=500"))["items"]]


Make = Callable[..., Awaitable[World]]


@pytest.fixture
def make(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    recorder: Callable[..., Awaitable[Recorder]],
) -> Make:
    async def build(
        killswitch: str = "drop", mute: str = "drop", maintenance: str = "hold"
    ) -> World:
        svc = await recorder()
        window = (
            "maintenance_windows:\n"
            f"  - {{name: upgrade, start: '{iso(T0 + 3600)}', end: '{iso(T0 + 7200)}'}}\n"
        )
        config = write_config(
            base_config(
                {"svc": svc.server.url},
                "rule_files: [rules.yaml]\n"
                f"guardrails: {{on_killswitch: {killswitch}, on_mute: {mute}}}\n" + window,
            ),
            rules=RULES.format(maintenance=maintenance),
        )
        clock = FakeClock(T0)
        return World(await start_daemon(config, clock), clock, svc)

    return build


async def test_kill_switch_hold_runs_the_action_once_when_it_is_turned_off(make: Make) -> None:
    world = await make(killswitch="hold")
    await world.call("PUT", "/api/v1/killswitch", {"on": True, "by": "ana"})
    await world.fire()
    assert await world.statuses() == ["held"]
    await world.later(3 * 3600)  # time alone releases nothing: only the switch does
    assert world.restarts() == 0
    await world.call("PUT", "/api/v1/killswitch", {"on": False, "by": "ana"})
    assert await world.statuses() == ["succeeded"]
    assert world.restarts() == 1
    assert "released" in await world.events()
    await world.call("PUT", "/api/v1/killswitch", {"on": True, "by": "ana"})
    await world.call("PUT", "/api/v1/killswitch", {"on": False, "by": "ana"})
    assert world.restarts() == 1


async def test_kill_switch_hold_skips_an_action_whose_incident_resolved(make: Make) -> None:
    world = await make(killswitch="hold")
    await world.call("PUT", "/api/v1/killswitch", {"on": True, "by": "ana"})
    await world.fire()
    await world.fire("resolved")
    await world.call("PUT", "/api/v1/killswitch", {"on": False, "by": "ana"})
    assert await world.statuses() == ["skipped"]
    assert world.restarts() == 0


async def test_kill_switch_drop_never_runs_the_action(make: Make) -> None:
    world = await make(killswitch="drop")
    await world.call("PUT", "/api/v1/killswitch", {"on": True, "by": "ana"})
    await world.fire()
    await world.call("PUT", "/api/v1/killswitch", {"on": False, "by": "ana"})
    await world.later(3600)
    assert await world.statuses() == ["refused"]
    assert world.restarts() == 0


async def test_mute_hold_runs_the_action_once_when_the_mute_is_ended(make: Make) -> None:
    world = await make(mute="hold")
    mute = await world.call(
        "POST", "/api/v1/mutes", {"rule": "worker-stuck", "duration": "2h", "reason": "deploy"}
    )
    await world.fire()
    assert await world.statuses() == ["held"]
    await world.call("DELETE", f"/api/v1/mutes/{mute['id']}", {"by": "ana"})
    assert await world.statuses() == ["succeeded"]
    assert world.restarts() == 1


async def test_mute_hold_runs_the_action_once_when_the_mute_expires(make: Make) -> None:
    world = await make(mute="hold")
    await world.call(
        "POST", "/api/v1/mutes", {"rule": "worker-stuck", "duration": "30m", "reason": "deploy"}
    )
    await world.fire()
    await world.later(29 * 60)
    assert world.restarts() == 0
    await world.later(2 * 60)
    assert await world.statuses() == ["succeeded"]
    assert world.restarts() == 1


async def test_mute_drop_never_runs_the_action(make: Make) -> None:
    world = await make(mute="drop")
    mute = await world.call(
        "POST", "/api/v1/mutes", {"rule": "worker-stuck", "duration": "30m", "reason": "deploy"}
    )
    await world.fire()
    await world.call("DELETE", f"/api/v1/mutes/{mute['id']}", {"by": "ana"})
    await world.later(3600)
    assert await world.statuses() == ["refused"]
    assert world.restarts() == 0


async def test_window_hold_runs_the_action_once_when_the_window_ends(make: Make) -> None:
    world = await make(maintenance="hold")
    world.clock.advance(3600 + 60)  # inside the window
    await world.fire()
    assert await world.statuses() == ["held"]
    await world.later(3600)
    assert await world.statuses() == ["succeeded"]
    assert world.restarts() == 1
    await world.later(3600)
    assert world.restarts() == 1


async def test_window_drop_never_runs_the_action(make: Make) -> None:
    world = await make(maintenance="drop")
    world.clock.advance(3600 + 60)
    await world.fire()
    await world.later(3600)
    assert await world.statuses() == ["refused"]
    assert world.restarts() == 0
