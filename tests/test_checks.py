"""Preconditions and verification checks against real peers: a Kafka Connect stand-in for the
HTTP checks, the real Prometheus binary for PromQL (an empty result is its own case)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import httpx
import pytest

from remediator.actions.base import Clients, RenderContext, Template
from remediator.checks import (
    HttpCheck,
    KafkaConnectCheck,
    PromQLCheck,
    parse_precondition,
    parse_verify,
    promql_string,
    sample_values,
)
from remediator.jsonpath import extract
from remediator.rules import Condition
from remediator.schema import Invalid, Node
from remediator.targets import Target
from remediator.trust import default_tls
from tests.peers import prometheus
from tests.standins import Connector, KafkaConnect


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    async with (
        httpx.AsyncClient(verify=default_tls()) as http,
        aiohttp.ClientSession(trust_env=False) as session,
    ):
        yield Clients(http, session)


@pytest.fixture
async def prom(tmp_path: Path) -> AsyncIterator[Target]:
    async with prometheus(tmp_path / "prometheus") as url:
        yield Target("prometheus", url)


def template(text: str, promql: bool = False) -> Template:
    return Template.parse(Node(text, "t.yaml", "x"), literal_braces=promql)


def ctx(**labels: str) -> RenderContext:
    return RenderContext(labels=labels)


# -- field paths -----------------------------------------------------------------------------

STATUS = {
    "name": "s",
    "connector": {"state": "PAUSED"},
    "tasks": [{"id": 0, "state": "PAUSED"}, {"id": 1, "state": "FAILED"}],
}


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("connector.state", ["PAUSED"]),
        ("tasks[1].state", ["FAILED"]),
        ("tasks[*].state", ["PAUSED", "FAILED"]),
        ("tasks[*].id", ["0", "1"]),
        ("name", ["s"]),
    ],
)
def test_extract_reads_dotted_paths(field: str, values: list[str]) -> None:
    assert extract(STATUS, field) == values


@pytest.mark.parametrize("field", ["missing", "tasks[5].state", "connector", "name[0]"])
def test_extract_refuses_what_is_not_there(field: str) -> None:
    with pytest.raises((KeyError, IndexError, TypeError)):
        extract(STATUS, field)


# -- HTTP checks against Kafka Connect -------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "allowed", "state", "tasks", "holds", "detail"),
    [
        ("connector.state", {"PAUSED"}, "PAUSED", ["PAUSED"], True, "connector.state is 'PAUSED'"),
        (
            "connector.state",
            {"PAUSED"},
            "RUNNING",
            ["RUNNING"],
            False,
            "connector.state is 'RUNNING', not in ['PAUSED']",
        ),
        (
            "tasks[*].state",
            {"RUNNING"},
            "RUNNING",
            ["RUNNING", "FAILED"],
            False,
            "tasks[*].state is ['RUNNING', 'FAILED'], not in ['RUNNING']",
        ),
        (
            "tasks[*].state",
            {"RUNNING"},
            "RUNNING",
            ["RUNNING", "RUNNING"],
            True,
            "tasks[*].state is ['RUNNING', 'RUNNING']",
        ),
        ("tasks[*].state", {"RUNNING"}, "RUNNING", [], False, "tasks[*].state is empty"),
    ],
)
async def test_http_check_on_the_connector_status(
    kafka_connect: KafkaConnect,
    clients: Clients,
    field: str,
    allowed: set[str],
    state: str,
    tasks: list[str],
    holds: bool,
    detail: str,
) -> None:
    kafka_connect.connectors["c/1"] = Connector(state, tasks)
    check = HttpCheck(
        Target("connect", kafka_connect.server.url),
        template("/connectors/{connector}/status"),
        field,
        frozenset(allowed),
        None,
    )
    result = await check.evaluate(ctx(connector="c/1"), clients)
    assert (result.holds, result.detail) == (holds, detail)
    assert kafka_connect.server.seen[-1].path == "/connectors/c%2F1/status"


async def test_http_check_not_in(kafka_connect: KafkaConnect, clients: Clients) -> None:
    """The migration runbook: never abort a migrated one."""
    kafka_connect.connectors["m"] = Connector("migrated")
    check = HttpCheck(
        Target("api", kafka_connect.server.url),
        template("/connectors/{connector}/status"),
        "connector.state",
        None,
        frozenset({"migrated", "rolled_back"}),
    )
    result = await check.evaluate(ctx(connector="m"), clients)
    assert (result.holds, result.detail) == (
        False,
        "connector.state is 'migrated', which is excluded",
    )


async def test_http_check_reports_errors_as_not_holding(
    kafka_connect: KafkaConnect, clients: Clients
) -> None:
    check = HttpCheck(
        Target("connect", kafka_connect.server.url),
        template("/connectors/{connector}/status"),
        "connector.state",
        frozenset({"RUNNING"}),
        None,
    )
    missing = await check.evaluate(ctx(connector="nope"), clients)
    assert (missing.holds, missing.detail.endswith(": HTTP 404")) == (False, True)
    no_label = await check.evaluate(ctx(), clients)
    assert no_label.detail == "cannot build the check: label 'connector' is missing"
    down = HttpCheck(
        Target("connect", "http://127.0.0.1:9"), template("/x"), "a", frozenset({"b"}), None
    )
    refused = await down.evaluate(ctx(), clients)
    assert refused.holds is False
    assert "ConnectError" in refused.detail


# -- PromQL against the real Prometheus ------------------------------------------------------


def test_promql_selectors_keep_their_braces() -> None:
    query = template('sum(rate(errors{connector="{connector}", job=~"a{2}"}[5m]))', promql=True)
    assert query.refs == ("connector",)
    assert (
        query.render(ctx(connector="sink"))
        == 'sum(rate(errors{connector="sink", job=~"a{2}"}[5m]))'
    )


def test_a_promql_check_from_config_keeps_its_selector_braces() -> None:
    """What the README promises for a rule file's query, read the way config reads it."""
    query = 'sum(rate(errors{connector="{connector}", job=~"a{2}"}[5m]))'
    check = parse_precondition(
        Node({"promql": {"query": query, "condition": "< 1"}}, "r.yaml", "actions.a.precondition"),
        {"prometheus": Target("prometheus", "http://127.0.0.1:9090")},
    )
    assert isinstance(check, PromQLCheck)
    assert check.query.render(ctx(connector="sink")) == (
        'sum(rate(errors{connector="sink", job=~"a{2}"}[5m]))'
    )


@pytest.mark.parametrize(
    ("query", "condition", "on_empty", "holds", "detail"),
    [
        ("vector(0.03)", "< 0.05", False, True, "vector(0.03) = 0.03 (< 0.05)"),
        ("vector(0.12)", "< 0.05", False, False, "vector(0.12) = 0.12 (not < 0.05)"),
        ("scalar(vector(7))", ">= 7", False, True, "scalar(vector(7)) = 7 (>= 7)"),
        (
            'up{job="nothing"}',
            "< 1",
            False,
            False,
            'up{job="nothing"}: no series matched (does not hold)',
        ),
        ('up{job="nothing"}', "< 1", True, True, 'up{job="nothing"}: no series matched (passes)'),
        ("vector(0) / 0", "< 1", False, False, "vector(0) / 0 = nan (not < 1)"),
    ],
)
async def test_promql_check(
    prom: Target,
    clients: Clients,
    query: str,
    condition: str,
    on_empty: bool,
    holds: bool,
    detail: str,
) -> None:
    check = PromQLCheck(prom, template(query, promql=True), Condition.parse(condition), on_empty)
    result = await check.evaluate(ctx(), clients)
    assert (result.holds, result.detail) == (holds, detail)


async def test_promql_errors_do_not_hold(prom: Target, clients: Clients) -> None:
    check = PromQLCheck(prom, template("sum(rate(", promql=True), Condition.parse("< 1"), False)
    result = await check.evaluate(ctx(), clients)
    assert result.holds is False
    assert result.detail.startswith("query 'sum(rate(' failed: bad_data: ")


async def test_promql_label_values_are_escaped_into_string_literals(
    prom: Target, clients: Clients
) -> None:
    query = template(
        'count(label_replace(vector(1), "v", "{name}", "", "") '
        '== on() group_left label_replace(vector(1), "v", "a\\"b\\\\c", "", ""))',
        promql=True,
    )
    check = PromQLCheck(prom, query, Condition.parse("== 1"), False)
    result = await check.evaluate(ctx(name='a"b\\c'), clients)
    assert result.holds is True, result.detail
    assert promql_string('a"b\\c') == 'a\\"b\\\\c'


def test_sample_values_reads_prometheus_number_strings() -> None:
    data = {
        "resultType": "vector",
        "result": [{"metric": {}, "value": [1, "NaN"]}, {"metric": {}, "value": [1, "+Inf"]}],
    }
    values = sample_values(data)
    assert values[0] != values[0]
    assert values[1] == float("inf")
    assert sample_values({"resultType": "matrix", "result": []}) == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"every": "5s"}, "give exactly one of 'http', 'kafka_connect' or 'promql'"),
        (
            {"promql": {"query": "up", "condition": "< 1"}},
            "promql checks need a target named 'prometheus'",
        ),
        (
            {"http": {"target": "nope", "path": "/x", "field": "a", "in": ["b"]}},
            "unknown target 'nope'",
        ),
        (
            {"http": {"target": "connect", "path": "/x", "field": "a..b", "in": ["b"]}},
            "invalid field path 'a..b'",
        ),
        (
            {"http": {"target": "connect", "path": "/x", "field": "a"}},
            "give exactly one of 'in' or 'not_in'",
        ),
    ],
)
def test_check_config_errors(spec: dict[str, object], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        parse_verify(
            Node(spec, "r.yaml", "actions.a.verify"),
            {"connect": Target("connect", "http://c:8083")},
        )


# -- kafka_connect checks ----------------------------------------------------------------------


def connect_check(connect: KafkaConnect, **spec: object) -> KafkaConnectCheck:
    check = parse_precondition(
        Node({"kafka_connect": {"cluster": "cdc", "connector": "{connector}", **spec}}, "r", "p"),
        {"cdc": Target("cdc", connect.server.url)},
    )
    assert isinstance(check, KafkaConnectCheck)
    return check


@pytest.mark.parametrize(
    ("connector", "spec", "holds", "detail"),
    [
        # the CDC rule's precondition: restart a FAILED connector, never a PAUSED one
        (Connector("FAILED", ["FAILED"]), {"state": ["FAILED", "UNASSIGNED"]}, True, ""),
        (Connector("UNASSIGNED", []), {"state": ["FAILED", "UNASSIGNED"]}, True, ""),
        (
            Connector("PAUSED", ["PAUSED"]),
            {"state": ["FAILED", "UNASSIGNED"]},
            False,
            ": state not in ['FAILED', 'UNASSIGNED']",
        ),
        # verification after a pause: the connector and every task
        (
            Connector("PAUSED", ["PAUSED", "PAUSED"]),
            {"state": ["PAUSED"], "tasks": ["PAUSED"]},
            True,
            "",
        ),
        (
            Connector("PAUSED", ["PAUSED", "RUNNING"]),
            {"state": ["PAUSED"], "tasks": ["PAUSED"]},
            False,
            ": not every task in ['PAUSED']",
        ),
        (
            Connector("RUNNING", ["FAILED"]),
            {"tasks": ["RUNNING"]},
            False,
            ": not every task in ['RUNNING']",
        ),
        # no tasks: "every task RUNNING" does not hold unless the rule says so
        (Connector("RUNNING", []), {"tasks": ["RUNNING"]}, False, ": no tasks (on_no_tasks: fail)"),
        (Connector("RUNNING", []), {"tasks": ["RUNNING"], "on_no_tasks": "pass"}, True, ""),
    ],
)
async def test_kafka_connect_check(
    kafka_connect: KafkaConnect,
    clients: Clients,
    connector: Connector,
    spec: dict[str, object],
    holds: bool,
    detail: str,
) -> None:
    kafka_connect.connectors["c"] = connector
    result = await connect_check(kafka_connect, **spec).evaluate(ctx(connector="c"), clients)
    shown = f"connector 'c' is {connector.state}, tasks {connector.tasks}"
    assert (result.holds, result.detail) == (holds, shown + detail)


async def test_kafka_connect_check_reads_tasks_in_id_order(
    kafka_connect: KafkaConnect, clients: Clients
) -> None:
    kafka_connect.connectors["c"] = Connector("RUNNING", ["RUNNING", "FAILED", "RUNNING"])
    result = await connect_check(kafka_connect, tasks=["RUNNING"]).evaluate(
        ctx(connector="c"), clients
    )
    assert result.detail.endswith(
        "tasks ['RUNNING', 'FAILED', 'RUNNING']: not every task in ['RUNNING']"
    )


@pytest.mark.parametrize(
    ("setup", "detail"),
    [
        ("missing", "connector 'c' not found on cluster 'cdc'"),
        ("conflict", "/connectors/c/status: HTTP 409"),
        ("down", "/connectors/c/status: ConnectError"),
    ],
)
async def test_kafka_connect_check_errors_do_not_hold(
    kafka_connect: KafkaConnect, clients: Clients, setup: str, detail: str
) -> None:
    kafka_connect.connectors["c"] = Connector()
    if setup == "missing":
        del kafka_connect.connectors["c"]
    elif setup == "conflict":
        kafka_connect.conflicts = 1
    check = connect_check(kafka_connect, state=["RUNNING"])
    if setup == "down":
        await kafka_connect.server.stop()
    result = await check.evaluate(ctx(connector="c"), clients)
    assert not result.holds
    assert detail in result.detail


def test_kafka_connect_check_describes_itself(kafka_connect: KafkaConnect) -> None:
    check = connect_check(kafka_connect, state=["PAUSED"], tasks=["PAUSED"])
    assert check.describe() == (
        "connector {connector} on cdc: state in ['PAUSED'] and every task in ['PAUSED']"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"cluster": "cdc", "connector": "c"}, "give 'state', 'tasks' or both"),
        ({"cluster": "cdc", "connector": "c", "state": ["PAUSE"]}, "invalid value 'PAUSE'"),
        ({"cluster": "cdc", "connector": "c", "state": []}, "give at least one state"),
        (
            {"cluster": "cdc", "connector": "c", "state": ["PAUSED"], "on_no_tasks": "pass"},
            "on_no_tasks: only with 'tasks'",
        ),
        ({"cluster": "nope", "connector": "c", "state": ["PAUSED"]}, "unknown target 'nope'"),
        ({"cluster": "cdc", "state": ["PAUSED"]}, "missing required key 'connector'"),
        (
            {"cluster": "cdc", "connector": "c", "tasks": ["RUNNING"], "on_no_tasks": "maybe"},
            "invalid value 'maybe'",
        ),
        ({"cluster": "cdc", "connector": "c", "field": "x"}, "unknown key 'field'"),
    ],
)
def test_kafka_connect_check_config_errors(spec: dict[str, object], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        parse_verify(
            Node({"kafka_connect": spec}, "r.yaml", "actions.a.verify"),
            {"cdc": Target("cdc", "http://c:8083")},
        )
