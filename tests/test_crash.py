"""The daemon as a separate process, killed at the worst moments.

SIGKILL after a notification was acknowledged but before its action ran: after the restart the
action runs exactly once. SIGKILL during an action: after the restart its claim is reported as
interrupted, neither forgotten nor silently repeated. SIGTERM: running actions get the grace
period; what does not finish in it is recorded as interrupted. Each test runs on both store
backends.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import base_config
from tests.payloads import alert, notification
from tests.peers import DaemonProcess as Process
from tests.standins import Connector, KafkaConnect

pytestmark = pytest.mark.usefixtures("store_backend")

CDC = """
actions:
  restart_connector:
    kind: http
    target: kafka-connect
    path: /connectors/{connector}/restart
    query: {includeTasks: true, onlyFailed: true}
    timeout: 60s
    retries: 0
rules:
  - name: cdc-connector-down
    match: '{alertname="ConnectorDown"}'
    incident_key: [alertname, connector]
    tiers:
      - actions: [restart_connector]
"""


@pytest.fixture
async def connect() -> AsyncIterator[KafkaConnect]:
    c = KafkaConnect({name: Connector("FAILED", ["FAILED"]) for name in ("a", "b")})
    await c.server.start()
    yield c
    c.release.set()
    await c.server.stop()


@pytest.fixture
async def daemons() -> AsyncIterator[Callable[[Path], Process]]:
    made: list[Process] = []

    def make(config: Path) -> Process:
        p = Process(config)
        made.append(p)
        return p

    yield make
    for p in made:
        await p.close()


def config_for(write_config: Callable[..., Path], connect: KafkaConnect, extra: str) -> Path:
    return write_config(
        base_config({"kafka-connect": connect.server.url}, "rule_files: [cdc.yaml]\n" + extra),
        cdc=CDC,
    )


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


FINAL = ("succeeded", "interrupted")


async def claim_status(daemon: Process, connector: str) -> str | None:
    action = (await daemon.actions()).get(connector)
    return None if action is None else str(action["status"])


def down(connector: str) -> dict[str, Any]:
    return notification(alert("ConnectorDown", connector=connector))


async def test_killed_during_one_action_and_before_another_each_claim_ends_right(
    write_config: Callable[..., Path],
    connect: KafkaConnect,
    daemons: Callable[[Path], Process],
) -> None:
    """One slot: `a` is mid-request when the daemon dies, `b` is acknowledged and waiting."""
    config = config_for(write_config, connect, "executor: {max_concurrency: 1}\n")
    first = daemons(config)
    await first.start()
    connect.hang.set()
    assert (await first.post(down("a"))).status_code == 200
    await until(lambda: connect.restarts("a") == 1)  # a is at the target, unanswered
    assert (await first.post(down("b"))).status_code == 200  # acknowledged: durable
    first.kill(signal.SIGKILL)
    assert connect.restarts("b") == 0  # b never ran before the crash

    connect.hang.clear()
    second = daemons(config)
    await second.start()
    await until(lambda: connect.restarts("b") == 1)
    await asyncio.sleep(0.3)  # time enough for a wrong second run to show up
    actions = await second.actions()
    assert actions["b"]["status"] == "succeeded"
    assert actions["a"]["status"] == "interrupted"
    assert "not repeated" in actions["a"]["detail"]
    assert (connect.restarts("a"), connect.restarts("b")) == (1, 1)

    second.kill(signal.SIGTERM)
    third = daemons(config)
    await third.start()
    await asyncio.sleep(0.3)
    assert (connect.restarts("a"), connect.restarts("b")) == (1, 1)


async def test_killed_right_after_the_acknowledgement_the_action_runs_once(
    write_config: Callable[..., Path],
    connect: KafkaConnect,
    daemons: Callable[[Path], Process],
) -> None:
    """Kill as soon as the 200 arrives, many times over; whenever the kill lands, the action
    ends up run exactly once, or, if the kill caught it started, reported interrupted: never
    run twice, never forgotten."""
    config = config_for(write_config, connect, "")
    for connector in ("a", "b"):
        first = daemons(config)
        await first.start()
        assert (await first.post(down(connector))).status_code == 200
        first.kill(signal.SIGKILL)
        second = daemons(config)
        await second.start()
        async with asyncio.timeout(20):
            while (status := await claim_status(second, connector)) not in FINAL:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # time enough for a wrong second run to show up
        # killed between the claim's start and its request (a loaded machine makes that window
        # wide), it is interrupted and, as designed today, not repeated: never run twice
        outcomes = [(1, "succeeded"), (1, "interrupted"), (0, "interrupted")]
        assert (connect.restarts(connector), status) in outcomes
        second.kill(signal.SIGTERM)


async def test_sigterm_gives_running_actions_the_grace_period_then_interrupts_them(
    write_config: Callable[..., Path],
    connect: KafkaConnect,
    daemons: Callable[[Path], Process],
) -> None:
    config = config_for(write_config, connect, "server: {shutdown_grace: 1s}\n")
    first = daemons(config)
    await first.start()
    connect.hang.set()
    await first.post(down("a"))
    await until(lambda: connect.restarts("a") == 1)
    assert first.kill(signal.SIGTERM) == 0  # a clean exit after the grace period
    assert "shutting down" in first.log()
    connect.hang.clear()
    second = daemons(config)
    await second.start()
    action = (await second.actions())["a"]
    assert action["status"] == "interrupted"
    assert "shut down during this action" in action["detail"]


async def test_sigterm_lets_a_quick_action_finish(
    write_config: Callable[..., Path],
    connect: KafkaConnect,
    daemons: Callable[[Path], Process],
) -> None:
    config = config_for(write_config, connect, "server: {shutdown_grace: 20s}\n")
    first = daemons(config)
    await first.start()
    connect.hang.set()
    await first.post(down("a"))
    await until(lambda: connect.restarts("a") == 1)
    loop = asyncio.get_running_loop()
    loop.call_later(0.5, connect.release.set)  # the target answers during the grace period
    assert await asyncio.to_thread(first.kill, signal.SIGTERM) == 0
    second = daemons(config)
    await second.start()
    assert (await second.actions())["a"]["status"] == "succeeded"
