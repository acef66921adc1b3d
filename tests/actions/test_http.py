"""The `http` action kind against real servers on loopback, built through the real config path."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import httpx
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from remediator.actions.base import AttemptContext, AttemptResult, RenderContext, RetryPolicy
from remediator.actions.http import HttpAction, parse_retry_after
from remediator.errors import RenderError
from remediator.trust import default_tls
from tests.actions.kinds import config_problems, load
from tests.standins import KafkaConnect, Recorder, StandIn

MakeAction = Callable[..., HttpAction]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PLACEHOLDER_HELP = (
    "(use a label name, $incident_id, $rule, $tier, $value, $fingerprint, $annotations.<name> "
    "or $results.<action>[.<field>])"
)


@pytest.fixture
def make_action(write_config: Callable[..., Path]) -> MakeAction:
    """An HttpAction read from a real config file. A target's value may carry more keys after
    its URL, e.g. {"connect": f"{url}, bearer_token_env: TOKEN"}."""

    def make(definition: dict[str, Any], targets: dict[str, str]) -> HttpAction:
        action = load(write_config, targets, act=definition).actions["act"]
        assert isinstance(action, HttpAction)
        return action

    return make


@pytest.fixture
def problems(
    write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[dict[str, Any]], list[str]]:
    """The problems a config with one bad action reports (file shown as remediator.yaml)."""
    monkeypatch.chdir(tmp_path)

    def read(definition: dict[str, Any]) -> list[str]:
        return config_problems(write_config, {"connect": "http://127.0.0.1:9"}, act=definition)

    return read


@dataclass
class Clients:
    """The executor's two HTTP clients: the http kind sends with aiohttp's."""

    http: httpx.AsyncClient
    session: aiohttp.ClientSession


@pytest.fixture
async def client() -> AsyncIterator[Clients]:
    async with (
        httpx.AsyncClient(verify=default_tls(), trust_env=False) as c,
        aiohttp.ClientSession() as session,
    ):
        yield Clients(c, session)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[StandIn]]]:
    """A stand-in answering every path with one handler."""
    started: list[StandIn] = []

    async def start(handler: Handler) -> StandIn:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        server = await StandIn(app).start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


def connector_ctx(connector: str, **labels: str) -> RenderContext:
    return RenderContext({"alertname": "ConnectorDown", "connector": connector, **labels})


def attempt_ctx(client: Clients, timeout: float = 5.0, n: int = 1) -> AttemptContext:
    return AttemptContext(n, timeout, "idem-key", client.http, client.session)


RESTART = {"kind": "http", "target": "connect", "path": "/connectors/{connector}/restart"}


# --- label values in the path ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("../admin", "..%2Fadmin"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("/", "%2F"),
        ("?", "%3F"),
        ("#", "%23"),
        ("%2F", "%252F"),
        ("a b", "a%20b"),
        ("connecteur-é", "connecteur-%C3%A9"),
        ("日本", "%E6%97%A5%E6%9C%AC"),
        ("../../../etc/passwd", "..%2F..%2F..%2Fetc%2Fpasswd"),
        ("//evil.example/x", "%2F%2Fevil.example%2Fx"),
        ("@evil.example:80", "%40evil.example%3A80"),
        ("x?admin=true#top", "x%3Fadmin%3Dtrue%23top"),
        ("a;b,c&d=e+f", "a%3Bb%2Cc%26d%3De%2Bf"),
        ("...", "..."),
    ],
)
async def test_hostile_label_is_exactly_one_path_segment(
    make_action: MakeAction,
    recorder: Callable[..., Awaitable[Recorder]],
    client: Clients,
    value: str,
    segment: str,
) -> None:
    target = await recorder(204)
    action = make_action(RESTART, {"connect": target.server.url})

    prepared = action.prepare(connector_ctx(value))
    result = await action.attempt(prepared, attempt_ctx(client))

    assert prepared["url"] == f"{target.server.url}/connectors/{segment}/restart"
    assert result == AttemptResult(True, "HTTP 204", status_code=204)
    [seen] = target.server.seen
    assert (seen.method, seen.path, seen.query) == ("POST", f"/connectors/{segment}/restart", "")


async def test_label_fills_part_of_a_segment(
    make_action: MakeAction, recorder: Callable[..., Awaitable[Recorder]], client: Clients
) -> None:
    target = await recorder()
    action = make_action(
        {"kind": "http", "target": "connect", "method": "PATCH", "path": "/v1/flags/{flag}_v2"},
        {"connect": target.server.url + "/base/"},
    )

    prepared = action.prepare(RenderContext({"flag": "a/b"}))
    await action.attempt(prepared, attempt_ctx(client))

    assert prepared == {
        "method": "PATCH",
        "url": f"{target.server.url}/base/v1/flags/a%2Fb_v2",
        "headers": {},
        "body": None,
    }
    assert [(s.method, s.path) for s in target.server.seen] == [
        ("PATCH", "/base/v1/flags/a%2Fb_v2")
    ]


def test_empty_label_value_cannot_be_a_path_segment(make_action: MakeAction) -> None:
    action = make_action(RESTART, {"connect": "http://127.0.0.1:9"})
    with pytest.raises(RenderError, match=r"^an empty value cannot be a path segment$"):
        action.prepare(connector_ctx(""))


def test_missing_label_cannot_fill_a_placeholder(make_action: MakeAction) -> None:
    action = make_action(RESTART, {"connect": "http://127.0.0.1:9"})
    with pytest.raises(RenderError, match=r"^label 'connector' is missing$"):
        action.prepare(RenderContext({"alertname": "ConnectorDown"}))


# --- query and body -------------------------------------------------------------------------


async def test_query_values_are_encoded_and_stay_one_value(
    make_action: MakeAction, recorder: Callable[..., Awaitable[Recorder]], client: Clients
) -> None:
    target = await recorder()
    action = make_action(
        {
            **RESTART,
            "path": "/restart",
            "query": {"connector": "{connector}", "includeTasks": True},
        },
        {"connect": target.server.url},
    )

    prepared = action.prepare(connector_ctx("a&x=1 #b/c?d"))
    await action.attempt(prepared, attempt_ctx(client))

    assert prepared["url"] == (
        f"{target.server.url}/restart?connector=a%26x%3D1%20%23b%2Fc%3Fd&includeTasks=true"
    )
    [seen] = target.server.seen
    assert seen.path == "/restart"
    assert parse_qsl(seen.query) == [("connector", "a&x=1 #b/c?d"), ("includeTasks", "true")]


async def test_body_placeholders_are_filled_as_json_strings(
    make_action: MakeAction, recorder: Callable[..., Awaitable[Recorder]], client: Clients
) -> None:
    target = await recorder()
    body = {
        "value": False,
        "reason": "remediator: {connector} at {$value} (incident {$incident_id})",
        "tags": ["cdc", "{connector}"],
        "nested": {"count": 3, "ratio": 0.5, "none": None},
    }
    action = make_action(
        {"kind": "http", "target": "connect", "method": "PUT", "path": "/v1/config", "body": body},
        {"connect": target.server.url},
    )
    hostile = 'he said "stop" {{ 7*7 }} {$rule} \\ </script>'

    prepared = action.prepare(RenderContext({"connector": hostile}, incident_id=42, value=0.12))
    await action.attempt(prepared, attempt_ctx(client))

    expected = {
        "value": False,
        "reason": f"remediator: {hostile} at 0.12 (incident 42)",
        "tags": ["cdc", hostile],
        "nested": {"count": 3, "ratio": 0.5, "none": None},
    }
    assert prepared["body"] == expected
    [seen] = target.server.seen
    assert seen.json() == expected
    assert seen.headers["Content-Type"] == "application/json"


async def test_double_braces_are_literal(
    make_action: MakeAction, recorder: Callable[..., Awaitable[Recorder]], client: Clients
) -> None:
    target = await recorder()
    action = make_action(
        {
            "kind": "http",
            "target": "connect",
            "path": "/x",
            "query": {"q": "{{connector}}"},
            "body": {"text": "{{connector}} is {connector}; }}{{"},
        },
        {"connect": target.server.url},
    )

    prepared = action.prepare(connector_ctx("pg-sink"))
    await action.attempt(prepared, attempt_ctx(client))

    assert prepared["url"] == f"{target.server.url}/x?q=%7Bconnector%7D"
    assert target.server.seen[0].json() == {"text": "{connector} is pg-sink; }{"}


def test_special_placeholders(make_action: MakeAction) -> None:
    action = make_action(
        {
            "kind": "http",
            "target": "connect",
            "path": "/incidents/{$incident_id}/{$rule}/{$tier}",
            "body": {
                "incident": "{$incident_id}",
                "rule": "{$rule}",
                "tier": "{$tier}",
                "value": "{$value}",
                "fingerprint": "{$fingerprint}",
                "summary": "{$annotations.summary}",
                "runbook": "see {$annotations.runbook_url}",
            },
        },
        {"connect": "http://127.0.0.1:9"},
    )
    ctx = RenderContext(
        {"alertname": "IngestionHighErrorRate"},
        {"summary": "Error rate high", "runbook_url": "https://runbooks.example/i#pause"},
        incident_id=42,
        rule="ingestion-error-rate",
        tier="pause",
        value=12.0,
        fingerprint="c0ffee2b9d3a4f17",
    )

    prepared = action.prepare(ctx)

    assert prepared["url"] == "http://127.0.0.1:9/incidents/42/ingestion-error-rate/pause"
    assert prepared["body"] == {
        "incident": "42",
        "rule": "ingestion-error-rate",
        "tier": "pause",
        "value": "12",
        "fingerprint": "c0ffee2b9d3a4f17",
        "summary": "Error rate high",
        "runbook": "see https://runbooks.example/i#pause",
    }


@pytest.mark.parametrize(
    ("value", "text"), [(None, ""), (0.125, "0.125"), (12.0, "12"), (float("nan"), "nan")]
)
def test_value_placeholder(make_action: MakeAction, value: float | None, text: str) -> None:
    action = make_action(
        {"kind": "http", "target": "connect", "path": "/x", "body": {"v": "{$value}"}},
        {"connect": "http://127.0.0.1:9"},
    )
    assert action.prepare(RenderContext({}, value=value))["body"] == {"v": text}


def test_missing_annotation_cannot_fill_a_placeholder(make_action: MakeAction) -> None:
    action = make_action(
        {"kind": "http", "target": "connect", "path": "/x", "body": "{$annotations.summary}"},
        {"connect": "http://127.0.0.1:9"},
    )
    with pytest.raises(RenderError, match=r"^annotation 'summary' is missing$"):
        action.prepare(RenderContext({"summary": "a label, not an annotation"}))


# --- config-time errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"path": "connectors/{connector}"},
            "actions.act.path: path must start with '/', got 'connectors/{connector}'",
        ),
        (
            {"path": "/connectors?expand=status"},
            "actions.act.path: put query parameters under 'query', not in the path",
        ),
        (
            {"path": "/connectors/{connector}#top"},
            "actions.act.path: put query parameters under 'query', not in the path",
        ),
        (
            {"path": "/connectors/{bad-name}"},
            "actions.act.path: invalid placeholder {bad-name} in '/connectors/{bad-name}' "
            + PLACEHOLDER_HELP,
        ),
        (
            {"path": "/c/{$nope}"},
            f"actions.act.path: invalid placeholder {{$nope}} in '/c/{{$nope}}' {PLACEHOLDER_HELP}",
        ),
        (
            {"path": "/c/{}"},
            f"actions.act.path: invalid placeholder {{}} in '/c/{{}}' {PLACEHOLDER_HELP}",
        ),
        (
            {"path": "/c/{ connector }"},
            "actions.act.path: invalid placeholder { connector } in '/c/{ connector }' "
            + PLACEHOLDER_HELP,
        ),
        (
            {"path": "/c/{$annotations.}"},
            "actions.act.path: invalid placeholder {$annotations.} in '/c/{$annotations.}' "
            + PLACEHOLDER_HELP,
        ),
        (
            {"path": "/c/{connector"},
            "actions.act.path: unbalanced brace in '/c/{connector' (write {{ or }} for a literal "
            "one)",
        ),
        (
            {"path": "/c/connector}"},
            "actions.act.path: unbalanced brace in '/c/connector}' (write {{ or }} for a literal "
            "one)",
        ),
        (
            {"body": {"reason": ["ok", "{1abc}"]}},
            f"actions.act.body.reason[1]: invalid placeholder {{1abc}} in '{{1abc}}' "
            f"{PLACEHOLDER_HELP}",
        ),
        (
            {"query": {"name": "{a.b}"}},
            f"actions.act.query.name: invalid placeholder {{a.b}} in '{{a.b}}' {PLACEHOLDER_HELP}",
        ),
        ({"target": "nope"}, "actions.act.target: unknown target 'nope' (known: connect)"),
        (
            {"method": "FETCH"},
            "actions.act.method: invalid value 'FETCH' (expected one of: GET, POST, PUT, PATCH, "
            "DELETE)",
        ),
        (
            {"accept": [200, 600]},
            "actions.act.accept: HTTP status codes are 100-599, got [200, 600]",
        ),
        (
            {"backoff": {"multiplier": 0.5}},
            "actions.act.backoff.multiplier: must be at least 1",
        ),
    ],
)
def test_config_errors(
    problems: Callable[[dict[str, Any]], list[str]], change: dict[str, Any], problem: str
) -> None:
    assert problems({**RESTART, **change}) == [f"remediator.yaml: {problem}"]


# --- attempt outcomes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "status", "ok"),
    [
        (None, 200, True),
        (None, 201, True),
        (None, 204, True),
        (None, 299, True),
        (None, 300, False),
        ([202], 202, True),
        ([202], 200, False),
        ([200, 202, 204], 204, True),
        ([200, 202, 204], 201, False),
    ],
)
async def test_accepted_statuses(
    make_action: MakeAction,
    recorder: Callable[..., Awaitable[Recorder]],
    client: Clients,
    accept: list[int] | None,
    status: int,
    ok: bool,
) -> None:
    target = await recorder(status)
    definition: dict[str, Any] = {"kind": "http", "target": "connect", "path": "/v1/x"}
    if accept is not None:
        definition["accept"] = accept
    action = make_action(definition, {"connect": target.server.url})

    result = await action.attempt(action.prepare(RenderContext({})), attempt_ctx(client))

    output = "" if status == 204 else json.dumps({"ok": 200 <= status < 300, "path": "/v1/x"})
    detail = f"HTTP {status}" if ok or not output else f"HTTP {status}: {output}"
    assert result == AttemptResult(ok, detail, status_code=status, output=output)


async def test_connect_404_is_a_final_failure_with_connects_message(
    make_action: MakeAction, kafka_connect: KafkaConnect, client: Clients
) -> None:
    action = make_action(RESTART, {"connect": kafka_connect.server.url})

    result = await action.attempt(action.prepare(connector_ctx("ghost-sink")), attempt_ctx(client))

    assert (result.ok, result.retryable, result.status_code) == (False, False, 404)
    assert result.detail == "HTTP 404: Connector ghost-sink not found"
    assert json.loads(result.output) == {
        "error_code": 404,
        "message": "Connector ghost-sink not found",
    }


async def test_connect_409_is_retryable_and_the_same_request_then_succeeds(
    make_action: MakeAction, kafka_connect: KafkaConnect, client: Clients
) -> None:
    action = make_action(
        {**RESTART, "query": {"includeTasks": True, "onlyFailed": True}, "accept": [200, 202, 204]},
        {"connect": kafka_connect.server.url},
    )
    kafka_connect.conflicts = 1
    prepared = action.prepare(connector_ctx("postgres-sink-connector"))

    first = await action.attempt(prepared, attempt_ctx(client, n=1))
    second = await action.attempt(prepared, attempt_ctx(client, n=2))

    assert (first.ok, first.retryable, first.status_code) == (False, True, 409)
    assert first.detail == (
        "HTTP 409: Cannot complete request momentarily due to stale configuration "
        "(typically caused by a concurrent config change)"
    )
    assert (second.ok, second.retryable, second.status_code) == (True, False, 202)
    assert json.loads(second.output)["connector"]["state"] == "RESTARTING"
    assert kafka_connect.connectors["postgres-sink-connector"].state == "RUNNING"
    assert kafka_connect.connectors["postgres-sink-connector"].tasks == ["RUNNING", "RUNNING"]
    seen = [(s.path, s.query, s.headers["Idempotency-Key"]) for s in kafka_connect.server.seen]
    request = (
        "/connectors/postgres-sink-connector/restart",
        "includeTasks=true&onlyFailed=true",
        "idem-key",
    )
    assert seen == [request, request]


async def test_connect_500_is_retryable(
    make_action: MakeAction, kafka_connect: KafkaConnect, client: Clients
) -> None:
    action = make_action(RESTART, {"connect": kafka_connect.server.url})
    kafka_connect.failures = 1

    result = await action.attempt(
        action.prepare(connector_ctx("sqlserver-source-connector")), attempt_ctx(client)
    )

    assert (result.ok, result.retryable, result.status_code) == (False, True, 500)
    assert result.detail == "HTTP 500: Request timed out"


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (408, True),
        (409, True),
        (425, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (422, False),
        (501, False),
    ],
)
async def test_which_failures_are_retryable(
    make_action: MakeAction,
    recorder: Callable[..., Awaitable[Recorder]],
    client: Clients,
    status: int,
    retryable: bool,
) -> None:
    target = await recorder(status)
    action = make_action(
        {"kind": "http", "target": "connect", "path": "/x"}, {"connect": target.server.url}
    )

    result = await action.attempt(action.prepare(RenderContext({})), attempt_ctx(client))

    assert (result.ok, result.retryable, result.status_code) == (False, retryable, status)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        ("120", 120.0),
        ("0", 0.0),
        ("-3", None),
        ("inf", None),
        ("99999", 300.0),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),
        (None, None),
    ],
)
async def test_retry_after_is_parsed(
    make_action: MakeAction,
    serve: Callable[[Handler], Awaitable[StandIn]],
    client: Clients,
    header: str | None,
    expected: float | None,
) -> None:
    async def busy(request: web.Request) -> web.Response:
        headers = {} if header is None else {"Retry-After": header}
        return web.json_response({"message": "slow down"}, status=429, headers=headers)

    target = await serve(busy)
    action = make_action(
        {"kind": "http", "target": "connect", "path": "/x"}, {"connect": target.url}
    )

    result = await action.attempt(action.prepare(RenderContext({})), attempt_ctx(client))

    assert result == AttemptResult(
        False,
        "HTTP 429: slow down",
        retryable=True,
        status_code=429,
        output='{"message": "slow down"}',
        retry_after=expected,
    )


@pytest.mark.parametrize("header", ["\u00b2", "\u0663", " 7 ", "7.5"])
def test_retry_after_is_ascii_digits_or_nothing(header: str) -> None:
    """str.isdigit() is true of superscripts and other scripts' digits that float() refuses."""
    assert parse_retry_after(header) == (7.0 if header == " 7 " else None)


async def test_a_redirect_is_an_answer_not_followed(
    make_action: MakeAction, serve: Callable[[Handler], Awaitable[StandIn]], client: Clients
) -> None:
    async def moved(request: web.Request) -> web.Response:
        if request.path == "/elsewhere":
            return web.json_response({"followed": True})
        return web.Response(status=307, headers={"Location": "/elsewhere"})

    target = await serve(moved)
    action = make_action(
        {"kind": "http", "target": "connect", "path": "/x"}, {"connect": target.url}
    )

    result = await action.attempt(action.prepare(RenderContext({})), attempt_ctx(client))

    assert (result.ok, result.status_code, result.detail) == (False, 307, "HTTP 307")
    assert [seen.path for seen in target.seen] == ["/x"]


async def test_connection_refused_is_retryable(make_action: MakeAction, client: Clients) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    action = make_action(RESTART, {"connect": f"http://127.0.0.1:{port}"})

    result = await action.attempt(action.prepare(connector_ctx("pg")), attempt_ctx(client))

    assert (result.ok, result.retryable, result.status_code) == (False, True, None)
    assert result.detail.startswith("ConnectError: ")


async def test_timeout_is_retryable(
    make_action: MakeAction, recorder: Callable[..., Awaitable[Recorder]], client: Clients
) -> None:
    target = await recorder()
    target.delay = 1.0
    action = make_action(RESTART, {"connect": target.server.url})

    result = await action.attempt(action.prepare(connector_ctx("pg")), attempt_ctx(client, 0.1))

    assert result == AttemptResult(False, "timed out after 0.1s", retryable=True)


# --- headers and credentials ----------------------------------------------------------------


async def test_idempotency_key_and_configured_headers_are_sent(
    make_action: MakeAction, recorder: Callable[..., Awaitable[Recorder]], client: Clients
) -> None:
    target = await recorder()
    action = make_action(
        {**RESTART, "method": "DELETE", "headers": {"X-Requested-By": "remediator"}},
        {"connect": target.server.url},
    )

    await action.attempt(action.prepare(connector_ctx("pg")), attempt_ctx(client))

    [seen] = target.server.seen
    assert seen.method == "DELETE"
    assert seen.headers["Idempotency-Key"] == "idem-key"
    assert seen.headers["X-Requested-By"] == "remediator"
    assert "Content-Type" not in seen.headers
    assert "Authorization" not in seen.headers
    assert seen.body == b""


async def test_target_headers_are_sent_but_not_stored(
    make_action: MakeAction, recorder: Callable[..., Awaitable[Recorder]], client: Clients
) -> None:
    target = await recorder()
    action = make_action(
        {**RESTART, "headers": {"X-Team": "data"}},
        {"connect": f"{target.server.url}, headers: {{X-Api-Key: k-123, X-Team: platform}}"},
    )

    prepared = action.prepare(connector_ctx("pg"))
    await action.attempt(prepared, attempt_ctx(client))

    [seen] = target.server.seen
    assert (seen.headers["X-Api-Key"], seen.headers["X-Team"]) == ("k-123", "data")
    assert "k-123" not in json.dumps(prepared)


async def test_bearer_token_is_sent_and_never_stored(
    make_action: MakeAction,
    recorder: Callable[..., Awaitable[Recorder]],
    client: Clients,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONNECT_TOKEN", "s3cr3t-bearer")
    target = await recorder()
    action = make_action(
        RESTART, {"connect": f"{target.server.url}, bearer_token_env: CONNECT_TOKEN"}
    )

    prepared = action.prepare(connector_ctx("pg"))
    await action.attempt(prepared, attempt_ctx(client))

    assert target.server.seen[0].headers["Authorization"] == "Bearer s3cr3t-bearer"
    assert prepared["headers"] == {}
    assert "s3cr3t-bearer" not in json.dumps(prepared)


async def test_basic_auth_is_sent_and_never_stored(
    make_action: MakeAction,
    recorder: Callable[..., Awaitable[Recorder]],
    client: Clients,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONNECT_PASSWORD", "s3cr3t-pass")
    target = await recorder()
    action = make_action(
        {**RESTART, "headers": {"X-Requested-By": "remediator"}},
        {
            "connect": f"{target.server.url}, "
            "basic_auth: {username: svc-remediator, password_env: CONNECT_PASSWORD}"
        },
    )

    prepared = action.prepare(connector_ctx("pg"))
    await action.attempt(prepared, attempt_ctx(client))

    expected = "Basic " + base64.b64encode(b"svc-remediator:s3cr3t-pass").decode()
    assert target.server.seen[0].headers["Authorization"] == expected
    assert prepared["headers"] == {"X-Requested-By": "remediator"}
    stored = json.dumps(prepared)
    assert "s3cr3t-pass" not in stored
    assert expected.split()[1] not in stored


# --- retry policy ---------------------------------------------------------------------------


def test_delay_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(retries=8, initial=1.0, maximum=30.0, multiplier=2.0)

    assert [policy.delay(n, 0.0) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 15, 15]
    assert [policy.delay(n, 0.5) for n in range(1, 8)] == [0.75, 1.5, 3, 6, 12, 22.5, 22.5]


@given(
    attempt=st.integers(min_value=1, max_value=60),
    rand=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    initial=st.floats(min_value=0.01, max_value=10.0),
    maximum=st.floats(min_value=10.0, max_value=600.0),
    multiplier=st.floats(min_value=1.0, max_value=5.0),
)
def test_delay_is_jittered_within_half_and_all_of_the_ceiling(
    attempt: int, rand: float, initial: float, maximum: float, multiplier: float
) -> None:
    policy = RetryPolicy(retries=60, initial=initial, maximum=maximum, multiplier=multiplier)
    ceiling = min(maximum, initial * multiplier ** (attempt - 1))

    delay = policy.delay(attempt, rand)

    assert ceiling / 2 <= delay <= ceiling <= maximum


def test_retry_policy_from_config(make_action: MakeAction) -> None:
    url = {"connect": "http://127.0.0.1:9"}
    default = make_action(RESTART, url)
    tuned = make_action(
        {**RESTART, "retries": 3, "backoff": {"initial": "2s", "max": "1m", "multiplier": 3}}, url
    )

    assert (default.timeout, default.retry) == (10.0, RetryPolicy(2, 1.0, 30.0, 2.0))
    assert tuned.retry == RetryPolicy(retries=3, initial=2.0, maximum=60.0, multiplier=3.0)
