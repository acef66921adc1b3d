"""Interrupted work: the daemon killed while a claim is checking its precondition (no request can
have left: it runs after the restart, once) and while its request is in flight (its action's
on_interrupted policy: retry, verify, escalate). Separate processes, SIGKILL, both backends."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from remediator import interrupted
from tests.conftest import base_config, slack_config
from tests.peers import DaemonProcess as Process
from tests.slack_standin import SlackAPI
from tests.standins import KafkaConnect
from tests.test_crash import connect, daemons, down, until

__all__ = ["connect", "daemons"]  # fixtures
pytestmark = pytest.mark.usefixtures("store_backend")

RESTART = """
actions:
  restart_connector:
    kind: {kind}
    {how}
    timeout: 60s
    retries: 0
    {extra}
rules:
  - name: cdc-connector-down
    match: '{{alertname="ConnectorDown"}}'
    incident_key: [alertname, connector]
    tiers:
      - actions: [restart_connector]
"""
HTTP = (
    "target: kafka-connect\n    path: /connectors/{connector}/restart\n"
    "    query: {includeTasks: true, onlyFailed: true}"
)
KAFKA = "cluster: kafka-connect\n    connector: '{connector}'\n    operation: restart"
PRECONDITION = (
    "precondition:\n      kafka_connect: {cluster: kafka-connect, connector: '{connector}', "
    "state: [FAILED]}"
)
VERIFY = (
    "verify:\n      kafka_connect: {cluster: kafka-connect, connector: '{connector}', "
    "state: [RUNNING]}\n      every: 1s\n      within: 30s"
)


def config(
    write: Callable[..., Path],
    connect: KafkaConnect,
    kind: str,
    *extra: str,
    slack: SlackAPI | None = None,
) -> Path:
    how = HTTP if kind == "http" else KAFKA
    rules = RESTART.format(kind=kind, how=how, extra="\n    ".join(extra))
    main = "rule_files: [cdc.yaml]\n" + ("" if slack is None else slack_config(slack))
    return write(base_config({"kafka-connect": connect.server.url}, main), cdc=rules)


async def said_in_slack(slack: SlackAPI, headline: str, needle: str) -> str:
    """The whole text of the first thread reply starting with `headline` and saying `needle`,
    once it is there."""
    async with asyncio.timeout(20):
        while True:
            for parent in slack.parents():
                for reply in slack.thread(parent):
                    said = "\n".join(b["text"]["text"] for b in reply.blocks if "text" in b)
                    if reply.text.startswith(headline) and needle in said:
                        return said
            await asyncio.sleep(0.05)


def status_reads(connect: KafkaConnect, connector: str) -> int:
    path = f"/connectors/{connector}/status"
    return sum(1 for s in connect.server.seen if s.path == path)


async def action(daemon: Process, connector: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            found = (await daemon.actions()).get(connector)
            if found is not None and found["status"] not in ("claimed", "running"):
                return dict(found)
            await asyncio.sleep(0.05)


async def killed_mid_request(connect: KafkaConnect, first: Process, connector: str) -> None:
    """The restart request reached the target, unanswered, when the daemon dies."""
    await first.start()
    connect.hang_restarts.set()
    assert (await first.post(down(connector))).status_code == 200
    await until(lambda: connect.restarts(connector) == 1)
    assert (await first.actions())[connector]["phase"] == "sent"
    first.kill(signal.SIGKILL)
    connect.hang_restarts.clear()


async def test_killed_while_the_preconditions_are_in_flight_both_actions_run_once(
    write_config: Callable[..., Path],
    connect: KafkaConnect,
    daemons: Callable[[Path], Process],
) -> None:
    """Two connectors on one cluster failed together; the daemon dies while Connect is slow to
    answer the first one's precondition read (the second waits for the busy target): after the
    restart each connector is restarted, once."""
    path = config(write_config, connect, "http", PRECONDITION)
    first = daemons(path)
    await first.start()
    connect.hang.set()  # a slow Kafka Connect: the status reads hang
    assert (await first.post(down("a"))).status_code == 200
    assert (await first.post(down("b"))).status_code == 200
    await until(lambda: status_reads(connect, "a") == 1)
    async with asyncio.timeout(20):  # b's claim is made once its notification is decided
        while "b" not in (running := await first.actions()):
            await asyncio.sleep(0.05)
    assert (running["a"]["status"], running["a"]["phase"]) == ("running", "checking")
    assert running["b"]["status"] == "claimed"  # its target is busy with a
    first.kill(signal.SIGKILL)
    connect.hang.clear()
    assert (connect.restarts("a"), connect.restarts("b")) == (0, 0)

    second = daemons(path)
    await second.start()
    for connector in "ab":
        done = await action(second, connector)
        assert done["status"] == "succeeded", done
    assert (await second.actions())["a"]["interruptions"] == 1
    await asyncio.sleep(0.5)  # time enough for a wrong second run to show up
    assert (connect.restarts("a"), connect.restarts("b")) == (1, 1)
    assert "could leave" in second.log()


async def test_retry_runs_an_action_killed_mid_request_again_once(
    write_config: Callable[..., Path],
    connect: KafkaConnect,
    daemons: Callable[[Path], Process],
    slack_api: SlackAPI,
) -> None:
    path = config(write_config, connect, "http", "on_interrupted: retry", slack=slack_api)
    await killed_mid_request(connect, daemons(path), "a")
    second = daemons(path)
    await second.start()
    done = await action(second, "a")
    await asyncio.sleep(0.5)
    assert (done["status"], done["interruptions"], connect.restarts("a")) == ("succeeded", 1, 2)
    said = await said_in_slack(slack_api, ":bar_chart: *UPDATE", "on_interrupted: retry")
    assert "running restart_connector again" in said


async def test_kafka_connect_retries_by_default(
    write_config: Callable[..., Path],
    connect: KafkaConnect,
    daemons: Callable[[Path], Process],
) -> None:
    path = config(write_config, connect, "kafka_connect")
    await killed_mid_request(connect, daemons(path), "a")
    second = daemons(path)
    await second.start()
    done = await action(second, "a")
    await asyncio.sleep(0.5)
    assert (done["status"], connect.restarts("a")) == ("succeeded", 2)


async def test_escalate_reports_an_action_killed_mid_request_and_never_repeats_it(
    write_config: Callable[..., Path],
    connect: KafkaConnect,
    daemons: Callable[[Path], Process],
    slack_api: SlackAPI,
) -> None:
    """http escalates by default: the request may have reached the target."""
    path = config(write_config, connect, "http", slack=slack_api)
    await killed_mid_request(connect, daemons(path), "a")
    second = daemons(path)
    await second.start()
    done = await action(second, "a")
    await asyncio.sleep(0.5)
    assert (done["status"], connect.restarts("a")) == ("interrupted", 1)
    assert "a human must check kafka-connect" in done["detail"]
    assert "not repeated" in done["detail"]
    await said_in_slack(
        slack_api,
        ":warning: *INTERRUPTED: restart_connector*",
        "a human must check kafka-connect",
    )


@pytest.mark.parametrize(("took_effect", "restarts"), [(True, 1), (False, 2)])
async def test_verify_reads_the_target_and_reruns_only_if_the_effect_is_missing(
    write_config: Callable[..., Path],
    connect: KafkaConnect,
    daemons: Callable[[Path], Process],
    took_effect: bool,
    restarts: int,
) -> None:
    path = config(write_config, connect, "http", VERIFY, "on_interrupted: verify")
    await killed_mid_request(connect, daemons(path), "a")
    if took_effect:
        connect.connectors["a"].state = "RUNNING"  # the restart got through before the kill
    second = daemons(path)
    await second.start()
    done = await action(second, "a")
    await asyncio.sleep(0.5)
    assert connect.restarts("a") == restarts
    if took_effect:
        assert done["status"] == "interrupted"
        assert "took effect" in done["detail"]
    else:
        assert done["status"] == "succeeded"


@pytest.mark.parametrize(("still_failed", "restarts"), [(True, 2), (False, 1)])
async def test_verify_with_only_a_precondition_reruns_while_the_target_needs_it(
    write_config: Callable[..., Path],
    connect: KafkaConnect,
    daemons: Callable[[Path], Process],
    still_failed: bool,
    restarts: int,
) -> None:
    path = config(write_config, connect, "http", PRECONDITION, "on_interrupted: verify")
    await killed_mid_request(connect, daemons(path), "a")
    if not still_failed:
        connect.connectors["a"].state = "RUNNING"
    second = daemons(path)
    await second.start()
    done = await action(second, "a")
    await asyncio.sleep(0.5)
    assert connect.restarts("a") == restarts
    expected = "succeeded" if still_failed else "interrupted"
    assert done["status"] == expected, done


def test_each_kind_has_a_default_and_an_explicit_policy_wins() -> None:
    assert interrupted.policy_for("kafka_connect", None) == "retry"
    for kind in ("http", "exec", "sql", "kubernetes", "alertmanager_silence"):
        assert interrupted.policy_for(kind, None) == "escalate"
    assert interrupted.policy_for("http", "verify") == "verify"
