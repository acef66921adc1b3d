"""Reload: SIGHUP to a daemon in its own process and POST /-/reload. A good edit takes effect for
the next notification; a broken one is refused as a whole, its problems logged, the metric at 0,
and the old rules keep acting."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartDaemon, base_config
from tests.payloads import alert, notification
from tests.peers import DaemonProcess
from tests.standins import Recorder

RULES = """
actions:
  warn: {kind: http, target: svc, path: /warn, retries: 0}
  page: {kind: http, target: svc, path: /page, retries: 0}
rules:
  - name: error-rate
    match: '{alertname="ErrorRate"}'
    incident_key: [alertname, service]
    value: {annotation: rate}
    tiers:
      - {name: warn, when: "> 10", actions: [warn]}
      - {name: page, when: "> 50", actions: [page]}
"""


@pytest.fixture
async def svc(recorder: Callable[..., Awaitable[Recorder]]) -> Recorder:
    return await recorder()


@pytest.fixture
def config(write_config: Callable[..., Path], svc: Recorder) -> Path:
    return write_config(
        base_config({"svc": svc.server.url}, "rule_files: [rules.yaml]\n"), rules=RULES
    )


@pytest.fixture
async def daemon(config: Path) -> AsyncIterator[DaemonProcess]:
    d = DaemonProcess(config)
    await d.start()
    yield d
    await d.close()


def rate(service: str, value: str, starts_at: str = "2026-11-22T09:00:00Z") -> dict[str, Any]:
    return notification(
        alert("ErrorRate", service=service, starts_at=starts_at, annotations={"rate": value})
    )


def paths(svc: Recorder) -> list[str]:
    return [s.path for s in svc.server.seen]


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def until_metric(
    d: DaemonProcess, name: str, holds: Callable[[float], bool], timeout: float = 20.0
) -> None:
    async with asyncio.timeout(timeout):
        while not holds(await metric(d, name)):
            await asyncio.sleep(0.05)


async def metric(d: DaemonProcess, name: str) -> float:
    for line in (await d.client.get("/metrics")).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


LOADED_AT = "remediator_config_last_reload_success_timestamp_seconds"
RELOAD_OK = "remediator_config_last_reload_successful"


async def test_sighup_takes_a_new_threshold_and_refuses_a_broken_edit(
    config: Path, daemon: DaemonProcess, svc: Recorder
) -> None:
    assert (await daemon.post(rate("api", "30"))).status_code == 200
    await until(lambda: paths(svc) == ["/warn"])
    loaded_at = await metric(daemon, LOADED_AT)

    rules = config.parent / "rules.yaml"
    rules.write_text(rules.read_text().replace('"> 50"', '"> 20"'))
    daemon.send(signal.SIGHUP)
    await until_metric(daemon, LOADED_AT, lambda t: t > loaded_at)
    assert "changed error-rate" in daemon.log()
    # the same incident, a new value under the old threshold: the new ladder puts it on page
    assert (await daemon.post(rate("api", "31"))).status_code == 200
    await until(lambda: paths(svc) == ["/warn", "/page"])

    rules.write_text(rules.read_text().replace("[page]", "[no_such_action]"))
    daemon.send(signal.SIGHUP)
    await until_metric(daemon, RELOAD_OK, lambda v: v == 0.0)
    log = daemon.log()
    assert "reload refused" in log
    assert "no_such_action" in log
    assert "rules.yaml" in log
    # the rules in force keep acting: 25 opens another service's incident on page (> 20)
    assert (await daemon.post(rate("db", "25"))).status_code == 200
    await until(lambda: paths(svc) == ["/warn", "/page", "/page"])
    assert daemon.proc is not None
    assert daemon.proc.poll() is None


async def test_a_reload_logs_the_rules_it_skips(
    config: Path, start_daemon: StartDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    """A rule whose target is not configured is skipped on reload as at start, with its
    warning in the log; the rest of the edit takes effect."""
    running = await start_daemon(config)
    edited = RULES.replace(
        "actions:\n", "actions:\n  restart: {kind: http, target: connect, path: /r}\n", 1
    ) + (  # `connect` is not a target of this config
        "  - {name: cdc, match: '{alertname=\"ConnectorDown\"}', tiers: [{actions: [restart]}]}\n"
        "  - {name: also-warn, match: '{alertname=\"Other\"}', tiers: [{actions: [warn]}]}\n"
    )
    (config.parent / "rules.yaml").write_text(edited, encoding="utf-8")

    outcome = await running.daemon.reload("test")

    assert outcome.ok
    assert {r.name for r in running.daemon.config.rules} == {"error-rate", "also-warn"}
    (line,) = [m for m in caplog.messages if m.startswith("reload: ")]
    assert "unknown target 'connect'" in line
    assert "skipped rule(s) 'cdc'" in line
