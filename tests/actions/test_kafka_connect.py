"""The `kafka_connect` kind and check against the Kafka Connect stand-in (tests/standins.py, which
answers like ConnectorsResource), built through the real config path. Retries and timeouts run
through the daemon's executor."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web

from remediator.actions.base import AttemptContext, AttemptResult, Clients, RenderContext
from remediator.actions.kafka_connect import KafkaConnectAction
from remediator.config import load_config
from remediator.errors import ConfigError, RenderError
from remediator.trust import default_tls
from tests.actions.kinds import FAST_RETRIES, actions_yaml, load, run_once
from tests.conftest import StartDaemon, base_config
from tests.standins import KafkaConnect, StandIn

SINK = "postgres-sink-connector"
SOURCE = "sqlserver-source-connector"
Make = Callable[..., KafkaConnectAction]


@pytest.fixture
def make(write_config: Callable[..., Path], kafka_connect: KafkaConnect) -> Make:
    """An action `act` on cluster `cdc` (the stand-in), from keyword arguments."""

    def build(url: str | None = None, **definition: Any) -> KafkaConnectAction:
        targets = {"cdc": url or kafka_connect.server.url}
        spec = {"kind": "kafka_connect", "cluster": "cdc", "connector": "{connector}"}
        action = load(write_config, targets, act=spec | definition).actions["act"]
        assert isinstance(action, KafkaConnectAction)
        return action

    return build


@pytest.fixture
async def client() -> AsyncIterator[Clients]:
    async with (
        httpx.AsyncClient(verify=default_tls(), trust_env=False) as http,
        aiohttp.ClientSession(trust_env=False) as session,
    ):
        yield Clients(http, session)


def attempt_ctx(client: Clients, timeout: float = 5.0) -> AttemptContext:
    return AttemptContext(1, timeout, "idem-key", client.http, client.session)


def ctx(connector: str = SINK, **labels: str) -> RenderContext:
    return RenderContext({"alertname": "ConnectorDown", "connector": connector, **labels})


async def attempt(action: KafkaConnectAction, client: Clients, **labels: str) -> Any:
    return await action.attempt(action.prepare(ctx(**labels)), attempt_ctx(client))


def seen(connect: KafkaConnect) -> list[str]:
    return [
        f"{s.method} {s.path}" + (f"?{s.query}" if s.query else "") for s in connect.server.seen
    ]


# --- the requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("definition", "method", "path"),
    [
        ({"operation": "pause"}, "PUT", f"/connectors/{SINK}/pause"),
        ({"operation": "resume"}, "PUT", f"/connectors/{SINK}/resume"),
        ({"operation": "restart"}, "POST", f"/connectors/{SINK}/restart"),
        (
            {"operation": "restart", "include_tasks": True},
            "POST",
            f"/connectors/{SINK}/restart?includeTasks=true",
        ),
        (
            {"operation": "restart", "include_tasks": True, "only_failed": True},
            "POST",
            f"/connectors/{SINK}/restart?includeTasks=true&onlyFailed=true",
        ),
        (
            {"operation": "restart_task", "task": "{task}"},
            "POST",
            f"/connectors/{SINK}/tasks/1/restart",
        ),
    ],
)
def test_each_operation_is_connects_path_and_verb(
    make: Make, kafka_connect: KafkaConnect, definition: dict[str, Any], method: str, path: str
) -> None:
    action = make(**definition)
    prepared = action.prepare(ctx(task="1"))
    assert (prepared["method"], prepared["url"]) == (method, kafka_connect.server.url + path)
    assert prepared["connector"] == SINK
    assert action.describe(prepared) == f"{method} {kafka_connect.server.url}{path}"


@pytest.mark.parametrize(
    ("connector", "segment"),
    [("../admin", "..%2Fadmin"), ("..", "%2E%2E"), ("a/b?c#d", "a%2Fb%3Fc%23d"), ("é", "%C3%A9")],
)
async def test_a_hostile_connector_name_is_one_encoded_segment(
    make: Make,
    kafka_connect: KafkaConnect,
    client: Clients,
    connector: str,
    segment: str,
) -> None:
    result = await attempt(make(operation="pause"), client, connector=connector)
    assert seen(kafka_connect) == [f"PUT /connectors/{segment}/pause"]
    assert (result.ok, result.status_code) == (False, 404)  # Connect decoded it: no such name


@pytest.mark.parametrize("task", ["x", "-1", "1.0", "", "\u0661"])
def test_a_task_id_must_be_a_number(make: Make, task: str) -> None:
    action = make(operation="restart_task", task="{task}")
    with pytest.raises(RenderError, match="a task id is a non-negative integer"):
        action.prepare(ctx(task=task))


# --- outcomes against the stand-in -----------------------------------------------------------


async def test_pause_and_resume_change_the_connector_state(
    make: Make, kafka_connect: KafkaConnect, client: Clients
) -> None:
    paused = await attempt(make(operation="pause"), client, connector=SOURCE)
    assert kafka_connect.connectors[SOURCE].state == "PAUSED"
    resumed = await attempt(make(operation="resume"), client, connector=SOURCE)
    assert kafka_connect.connectors[SOURCE].state == "RUNNING"
    assert (paused.ok, paused.status_code) == (True, 202)
    assert paused.detail == (
        f"HTTP 202: pause of connector '{SOURCE}' accepted (it takes effect asynchronously)"
    )
    assert json.loads(paused.output) == {"connector": SOURCE, "status": 202}
    assert resumed.detail.startswith("HTTP 202: resume of connector")
    assert seen(kafka_connect) == [
        f"PUT /connectors/{SOURCE}/pause",
        f"PUT /connectors/{SOURCE}/resume",
    ]


async def test_restart_with_tasks_reports_what_restarts(
    make: Make, kafka_connect: KafkaConnect, client: Clients
) -> None:
    action = make(operation="restart", include_tasks=True, only_failed=True)
    result = await attempt(action, client)
    assert (result.ok, result.status_code) == (True, 202)
    assert result.detail == (
        f"HTTP 202: restart of connector '{SINK}' accepted: connector RESTARTING, "
        "1 of 2 tasks RESTARTING"
    )
    assert json.loads(result.output)["tasks"][0]["state"] == "RESTARTING"
    assert kafka_connect.connectors[SINK].tasks == ["RUNNING", "RUNNING"]


async def test_a_plain_restart_is_204(
    make: Make, kafka_connect: KafkaConnect, client: Clients
) -> None:
    result = await attempt(make(operation="restart"), client)
    assert result == AttemptResult(
        True,
        f"HTTP 204: connector '{SINK}' restarted",
        status_code=204,
        output=json.dumps({"connector": SINK, "status": 204}),
    )
    assert kafka_connect.connectors[SINK].tasks == ["FAILED", "RUNNING"]  # tasks untouched


async def test_restart_task(make: Make, kafka_connect: KafkaConnect, client: Clients) -> None:
    result = await attempt(make(operation="restart_task", task="{task}"), client, task="0")
    assert (result.ok, result.detail) == (True, f"HTTP 204: task 0 of connector '{SINK}' restarted")
    assert kafka_connect.connectors[SINK].tasks == ["RUNNING", "RUNNING"]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[int, str], Awaitable[StandIn]]]:
    """A server answering every request with one status and body (an older or odd Connect)."""
    started: list[StandIn] = []

    async def start(status: int, body: str) -> StandIn:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(status=status, text=body, content_type="application/json")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        started.append(await StandIn(app).start())
        return started[-1]

    yield start
    for server in started:
        await server.stop()


async def test_some_3x_releases_answer_200_to_a_plain_restart(
    make: Make, serve: Callable[[int, str], Awaitable[StandIn]], client: Clients
) -> None:
    server = await serve(200, "")
    result = await attempt(make(server.url, operation="restart"), client)
    assert (result.ok, result.detail) == (True, f"HTTP 200: connector '{SINK}' restarted")


async def test_connect_before_3_0_ignores_include_tasks_and_says_so(
    make: Make, serve: Callable[[int, str], Awaitable[StandIn]], client: Clients
) -> None:
    server = await serve(204, "")
    action = make(server.url, operation="restart", include_tasks=True)
    result = await attempt(action, client)
    assert result.ok
    assert result.detail == (
        f"HTTP 204: connector '{SINK}' restarted, but not its tasks: this Connect predates 3.0"
    )


async def test_an_unknown_connector_is_a_final_failure_naming_it(
    make: Make, client: Clients
) -> None:
    result = await attempt(make(operation="pause"), client, connector="ghost")
    assert (result.ok, result.retryable, result.status_code) == (False, False, 404)
    assert result.detail == (
        "HTTP 404: connector 'ghost' not found on cluster 'cdc' "
        "(Kafka Connect: Connector ghost not found)"
    )


async def test_an_unknown_task_is_a_final_failure_naming_it(make: Make, client: Clients) -> None:
    result = await attempt(make(operation="restart_task", task="7"), client)
    assert (result.ok, result.retryable) == (False, False)
    assert result.detail == (
        f"HTTP 404: task 7 of connector '{SINK}' not found on cluster 'cdc' "
        f"(Kafka Connect: Task {SINK}-7 not found)"
    )


async def test_a_404_that_is_not_connects_says_the_target_is_wrong(
    make: Make, serve: Callable[[int, str], Awaitable[StandIn]], client: Clients
) -> None:
    server = await serve(404, "<html>Not Found</html>")
    result = await attempt(make(server.url, operation="pause"), client)
    assert (result.ok, result.retryable) == (False, False)
    assert result.detail == (
        "HTTP 404 without Kafka Connect's error body: is target 'cdc' "
        f"({server.url}) a Kafka Connect REST API?"
    )


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(409, True), (500, True), (503, True), (429, True), (400, False), (401, False), (403, False)],
)
async def test_which_errors_are_retried(
    make: Make,
    serve: Callable[[int, str], Awaitable[StandIn]],
    client: Clients,
    status: int,
    retryable: bool,
) -> None:
    server = await serve(status, json.dumps({"error_code": status, "message": "no"}))
    result = await attempt(make(server.url, operation="resume"), client)
    assert (result.ok, result.retryable, result.status_code) == (False, retryable, status)


async def test_a_hanging_connect_times_out_and_may_be_retried(
    make: Make, kafka_connect: KafkaConnect, client: Clients
) -> None:
    kafka_connect.hang.set()
    action = make(operation="pause")
    result = await action.attempt(action.prepare(ctx()), attempt_ctx(client, timeout=0.2))
    assert result == AttemptResult(False, "timed out after 0.2s", retryable=True)


async def test_the_clusters_credentials_are_sent_and_never_stored(
    write_config: Callable[..., Path],
    kafka_connect: KafkaConnect,
    client: Clients,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONNECT_TOKEN", "s3cret-connect")
    main = base_config({}, "").replace(
        "targets:\n  {}",
        f"targets:\n  cdc: {{url: {kafka_connect.server.url}, bearer_token_env: CONNECT_TOKEN}}",
    )
    definition = {"kind": "kafka_connect", "cluster": "cdc", "operation": "pause"}
    config = load_config(
        write_config(main + "actions:\n  act: " + json.dumps(definition | {"connector": SINK}))
    )
    action = config.actions["act"]
    prepared = action.prepare(ctx())
    await action.attempt(prepared, attempt_ctx(client))
    [request] = kafka_connect.server.seen
    assert request.headers["Authorization"] == "Bearer s3cret-connect"
    assert request.headers["Idempotency-Key"] == "idem-key"
    assert "s3cret" not in json.dumps(prepared)


# --- retries and timeouts through the executor -------------------------------------------------


async def run(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    connect: KafkaConnect,
    **definition: Any,
) -> dict[str, Any]:
    spec = {"kind": "kafka_connect", "cluster": "cdc", "connector": "{connector}"} | FAST_RETRIES
    return await run_once(
        write_config,
        start_daemon,
        {"cdc": connect.server.url},
        spec | definition,
        connector=SINK,
    )


async def test_409_while_rebalancing_then_success(
    write_config: Callable[..., Path], start_daemon: StartDaemon, kafka_connect: KafkaConnect
) -> None:
    kafka_connect.conflicts = 2
    action = await run(write_config, start_daemon, kafka_connect, operation="pause", retries=3)
    assert (action["status"], action["attempts"]) == ("succeeded", 3)
    assert seen(kafka_connect) == [f"PUT /connectors/{SINK}/pause"] * 3
    assert {s.headers["Idempotency-Key"] for s in kafka_connect.server.seen} == {
        action["idempotency_key"]
    }
    assert kafka_connect.connectors[SINK].state == "PAUSED"


async def test_500s_until_the_retries_run_out(
    write_config: Callable[..., Path], start_daemon: StartDaemon, kafka_connect: KafkaConnect
) -> None:
    kafka_connect.failures = 5
    action = await run(write_config, start_daemon, kafka_connect, operation="pause", retries=2)
    assert (action["status"], action["attempts"]) == ("failed", 3)
    assert action["detail"].endswith(
        f"HTTP 500 for connector '{SINK}': Kafka Connect: Request timed out after 3 attempts"
    )
    assert kafka_connect.connectors[SINK].state == "FAILED"


async def test_a_404_is_not_retried(
    write_config: Callable[..., Path], start_daemon: StartDaemon, kafka_connect: KafkaConnect
) -> None:
    del kafka_connect.connectors[SINK]
    action = await run(write_config, start_daemon, kafka_connect, operation="restart", retries=3)
    assert (action["status"], action["attempts"]) == ("failed", 1)
    assert f"connector '{SINK}' not found on cluster 'cdc'" in action["detail"]
    assert len(kafka_connect.server.seen) == 1


async def test_timeouts_are_retried_then_fail(
    write_config: Callable[..., Path], start_daemon: StartDaemon, kafka_connect: KafkaConnect
) -> None:
    kafka_connect.hang.set()
    action = await run(
        write_config, start_daemon, kafka_connect, operation="pause", retries=1, timeout="200ms"
    )
    assert (action["status"], action["attempts"]) == ("failed", 2)
    assert action["detail"].endswith("timed out after 0.2s after 2 attempts")
    assert len(kafka_connect.server.seen) == 2


# --- config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"operation": "stop"}, "actions.act.operation: invalid value 'stop' (expected one of: "),
        (
            {"operation": "pause", "include_tasks": True},
            "actions.act.include_tasks: only for operation restart, not pause",
        ),
        ({"operation": "restart_task"}, "actions.act: give 'task' for operation restart_task"),
        ({"operation": "restart", "task": "1"}, "actions.act: give 'task' for operation restart"),
        ({"operation": "pause", "cluster": "nope"}, "actions.act.cluster: unknown target 'nope'"),
        (
            {"operation": "pause", "cluster": "bare"},
            "actions.act.cluster: target 'bare' has no url",
        ),
        (
            {"operation": "pause", "connector": "{a b}"},
            "actions.act.connector: invalid placeholder",
        ),
        (
            {"operation": "restart", "only_failed": "yes"},
            "actions.act.only_failed: expected true or false",
        ),
        ({"operation": "pause", "path": "/x"}, "actions.act.path: unknown key 'path'"),
    ],
)
def test_config_errors(
    write_config: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: dict[str, Any],
    problem: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    definition = {"kind": "kafka_connect", "cluster": "cdc", "connector": "{connector}"} | change
    extra = "  bare: {description: no url}\n"
    main = base_config({"cdc": "http://127.0.0.1:9"}) + extra
    with pytest.raises(ConfigError) as info:
        load_config(write_config(main + actions_yaml(act=definition)))
    [found] = info.value.problems
    assert found.startswith(f"remediator.yaml: {problem}"), found
