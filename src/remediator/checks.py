"""Conditions on the world: a precondition before an action, a verification after it.

Three kinds. `http`: GET a path on a target and compare a JSON field with a set of values (the
migration runbook pauses only in bulk_copy or dual_write). `kafka_connect`: a connector's state
and its tasks' states from Kafka Connect's status endpoint (the sink must become PAUSED; restart
only a FAILED connector, never a PAUSED one). `promql`: an instant query against Prometheus's
/api/v1/query and a condition on the result; an empty result is its own case (no series matched),
never read as zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from remediator.actions.base import Clients, RenderContext, Template
from remediator.actions.http import path_segment
from remediator.actions.kafka_connect import STATES, ConnectorStatus, connector_status
from remediator.errors import RenderError
from remediator.jsonpath import FIELD, extract
from remediator.rules import Condition
from remediator.schema import MissingTarget, Node
from remediator.targets import Target

HTTP_KEYS = frozenset({"target", "path", "field", "in", "not_in"})
PROMQL_KEYS = frozenset({"query", "condition", "on_empty"})
KAFKA_CONNECT_KEYS = frozenset({"cluster", "connector", "state", "tasks", "on_no_tasks"})
CHECK_KINDS = ("http", "kafka_connect", "promql")
PRECONDITION_KEYS = frozenset(CHECK_KINDS)
VERIFY_KEYS = frozenset({*CHECK_KINDS, "every", "within"})
PROMETHEUS = "prometheus"


@dataclass(frozen=True, slots=True)
class CheckResult:
    holds: bool
    detail: str


@dataclass(frozen=True, slots=True)
class HttpCheck:
    """GET `path` on `target`; the JSON `field` must be in `allowed` (or not in `denied`).
    `field` is dotted with list indices: `connector.state`, `tasks[0].state`, `tasks[*].state`
    (every element must satisfy it; an empty list does not)."""

    endpoint: Target
    path: Template
    field: str
    allowed: frozenset[str] | None
    denied: frozenset[str] | None

    def describe(self) -> str:
        wanted = (
            f"in {sorted(self.allowed)}"
            if self.allowed is not None
            else f"not in {sorted(self.denied or ())}"
        )
        return f"{self.field} of GET {self.endpoint.name}{self.path.text} {wanted}"

    async def evaluate(self, ctx: RenderContext, clients: Clients) -> CheckResult:
        try:
            url = self.endpoint.url + self.path.render(ctx, escape=path_segment)
        except RenderError as e:
            return CheckResult(False, f"cannot build the check: {e}")
        headers = self.endpoint.request_headers()
        try:
            response = await clients.http.get(url, headers=headers, timeout=10.0)
        except httpx.HTTPError as e:
            return CheckResult(False, f"GET {url}: {type(e).__name__}: {e}")
        if response.status_code != 200:
            return CheckResult(False, f"GET {url}: HTTP {response.status_code}")
        try:
            values = extract(response.json(), self.field)
        except (ValueError, KeyError, IndexError, TypeError) as e:
            return CheckResult(False, f"GET {url}: no field {self.field!r} ({e})")
        return self._judge(values)

    def _judge(self, values: list[str]) -> CheckResult:
        shown = values[0] if len(values) == 1 else values
        if not values:
            return CheckResult(False, f"{self.field} is empty")
        if self.allowed is not None and not all(v in self.allowed for v in values):
            return CheckResult(False, f"{self.field} is {shown!r}, not in {sorted(self.allowed)}")
        if self.denied is not None and any(v in self.denied for v in values):
            return CheckResult(False, f"{self.field} is {shown!r}, which is excluded")
        return CheckResult(True, f"{self.field} is {shown!r}")


@dataclass(frozen=True, slots=True)
class PromQLCheck:
    """An instant query; every returned sample must meet `condition`. With no series the check
    holds only if `on_empty` is "pass"."""

    prometheus: Target
    query: Template
    condition: Condition
    empty_passes: bool

    def describe(self) -> str:
        return f"{self.query.text} {self.condition}"

    async def evaluate(self, ctx: RenderContext, clients: Clients) -> CheckResult:
        try:
            query = self.query.render(ctx, escape=promql_string)
        except RenderError as e:
            return CheckResult(False, f"cannot build the query: {e}")
        headers = self.prometheus.request_headers()
        try:
            response = await clients.http.post(
                f"{self.prometheus.url}/api/v1/query",
                data={"query": query},
                headers=headers,
                timeout=10.0,
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as e:
            return CheckResult(False, f"query {query!r} failed: {type(e).__name__}: {e}")
        if not isinstance(body, dict):
            return CheckResult(False, f"query {query!r}: not a Prometheus answer: {body!r:.200}")
        if body.get("status") != "success":
            return CheckResult(
                False, f"query {query!r} failed: {body.get('errorType')}: {body.get('error')}"
            )
        try:
            values = sample_values(body.get("data", {}))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            return CheckResult(False, f"query {query!r}: not a Prometheus query result")
        return self._judge(query, values)

    def _judge(self, query: str, values: list[float]) -> CheckResult:
        if not values:
            verdict = "passes" if self.empty_passes else "does not hold"
            return CheckResult(self.empty_passes, f"{query}: no series matched ({verdict})")
        shown = ", ".join(f"{v:g}" for v in values)
        holds = all(self.condition.holds(v) for v in values)
        return CheckResult(holds, f"{query} = {shown} ({'' if holds else 'not '}{self.condition})")


@dataclass(frozen=True, slots=True)
class KafkaConnectCheck:
    """The connector's state is in `state`, and every task's state is in `tasks` (each optional,
    at least one given). A connector without tasks passes the task condition only with
    `on_no_tasks: pass`: right after a restart the task list can be empty for a moment, and
    "every task RUNNING" must not read as true then."""

    cluster: Target
    connector: Template
    state: frozenset[str] | None
    tasks: frozenset[str] | None
    no_tasks_pass: bool = False

    def describe(self) -> str:
        parts = [f"state in {sorted(self.state)}"] if self.state is not None else []
        if self.tasks is not None:
            parts.append(f"every task in {sorted(self.tasks)}")
        return f"connector {self.connector.text} on {self.cluster.name}: {' and '.join(parts)}"

    async def evaluate(self, ctx: RenderContext, clients: Clients) -> CheckResult:
        try:
            connector = self.connector.render(ctx)
        except RenderError as e:
            return CheckResult(False, f"cannot build the check: {e}")
        status = await connector_status(clients.session, self.cluster, connector)
        if isinstance(status, str):
            return CheckResult(False, status)
        return self._judge(connector, status)

    def _judge(self, connector: str, status: ConnectorStatus) -> CheckResult:
        shown = f"connector {connector!r} is {status.connector}, tasks {list(status.tasks)}"
        if self.state is not None and status.connector not in self.state:
            return CheckResult(False, f"{shown}: state not in {sorted(self.state)}")
        if self.tasks is not None:
            if not status.tasks and not self.no_tasks_pass:
                return CheckResult(False, f"{shown}: no tasks (on_no_tasks: fail)")
            if any(t not in self.tasks for t in status.tasks):
                return CheckResult(False, f"{shown}: not every task in {sorted(self.tasks)}")
        return CheckResult(True, shown)


class Check(Protocol):
    """A precondition or a verification: HttpCheck, KafkaConnectCheck, PromQLCheck (and
    replay's stand-in, which asks nothing)."""

    def describe(self) -> str: ...

    async def evaluate(self, ctx: RenderContext, clients: Clients) -> CheckResult: ...


@dataclass(frozen=True, slots=True)
class Verification:
    check: Check
    every: float
    within: float


def sample_values(data: Mapping[str, Any]) -> list[float]:
    """Values of an instant query result: vector samples or a scalar. Prometheus writes values
    as strings ("NaN", "+Inf" included)."""
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list):
        return [float(result[1])]
    if kind == "vector" and isinstance(result, list):
        return [float(sample["value"][1]) for sample in result]
    return []


def promql_string(value: str) -> str:
    """A label value inside a PromQL double-quoted string literal."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def parse_condition(node: Node) -> Condition:
    """`> 0.1`, `<= 5`...: a comparison with a number, as tiers' `when` and promql checks say."""
    try:
        return Condition.parse(node.string())
    except ValueError as e:
        raise node.fail(str(e)) from None


def parse_precondition(node: Node, targets: Mapping[str, Target]) -> Check:
    node.mapping(PRECONDITION_KEYS)
    return _one_check(node, targets)


def parse_verify(node: Node, targets: Mapping[str, Target]) -> Verification:
    node.mapping(VERIFY_KEYS)
    return Verification(
        check=_one_check(node, targets),
        every=node.opt("every", Node.duration, 5.0),
        within=node.opt("within", Node.duration, 120.0),
    )


def _one_check(node: Node, targets: Mapping[str, Target]) -> Check:
    given = [k for k in CHECK_KINDS if node.has(k)]
    if len(given) != 1:
        raise node.fail("give exactly one of 'http', 'kafka_connect' or 'promql'")
    if given[0] == "http":
        return _http_check(node.require("http"), targets)
    if given[0] == "kafka_connect":
        return _kafka_connect_check(node.require("kafka_connect"), targets)
    return _promql_check(node.require("promql"), targets)


def _url_target(node: Node, targets: Mapping[str, Target]) -> Target:
    name = node.string()
    if name not in targets or not targets[name].url:
        known = ", ".join(sorted(t for t in targets if targets[t].url)) or "none defined"
        problem = f"unknown target {name!r} (known: {known})"
        if name in targets:
            raise node.fail(problem)
        raise MissingTarget(node.where(), name, problem)
    return targets[name]


def _http_check(node: Node, targets: Mapping[str, Target]) -> HttpCheck:
    node.mapping(HTTP_KEYS)
    target = _url_target(node.require("target"), targets)
    path_node = node.require("path")
    path = Template.parse(path_node)
    if not path.text.startswith("/"):
        raise path_node.fail(f"path must start with '/', got {path.text!r}")
    field_node = node.require("field")
    field = field_node.string()
    if not FIELD.fullmatch(field):
        raise field_node.fail(
            f"invalid field path {field!r} (e.g. connector.state, tasks[*].state)"
        )
    allowed, denied = node.get("in"), node.get("not_in")
    if (allowed is None) == (denied is None):
        raise node.fail("give exactly one of 'in' or 'not_in'")
    return HttpCheck(
        target,
        path,
        field,
        None if allowed is None else frozenset(_values(allowed)),
        None if denied is None else frozenset(_values(denied)),
    )


def _kafka_connect_check(node: Node, targets: Mapping[str, Target]) -> KafkaConnectCheck:
    node.mapping(KAFKA_CONNECT_KEYS)
    state, tasks = node.get("state"), node.get("tasks")
    if state is None and tasks is None:
        raise node.fail("give 'state', 'tasks' or both")
    if tasks is None and node.has("on_no_tasks"):
        raise node.child("on_no_tasks").fail("only with 'tasks'")
    return KafkaConnectCheck(
        cluster=_url_target(node.require("cluster"), targets),
        connector=Template.parse(node.require("connector")),
        state=None if state is None else _states(state),
        tasks=None if tasks is None else _states(tasks),
        no_tasks_pass=node.opt("on_no_tasks", lambda n: n.choice(("fail", "pass")), "fail")
        == "pass",
    )


def _states(node: Node) -> frozenset[str]:
    states = [item.choice(STATES) for item in node.sequence()]
    if not states:
        raise node.fail(f"give at least one state ({', '.join(STATES)})")
    return frozenset(states)


def _values(node: Node) -> list[str]:
    items = node.sequence()
    return [
        "true" if i.value is True else "false" if i.value is False else str(i.value) for i in items
    ]


def _promql_check(node: Node, targets: Mapping[str, Target]) -> PromQLCheck:
    node.mapping(PROMQL_KEYS)
    if PROMETHEUS not in targets:
        raise MissingTarget(
            node.where(),
            PROMETHEUS,
            "promql checks need a target named 'prometheus' (targets: {prometheus: {url: ...}})",
        )
    condition = parse_condition(node.require("condition"))
    on_empty = node.opt("on_empty", lambda n: n.choice(("fail", "pass")), "fail")
    return PromQLCheck(
        targets[PROMETHEUS],
        Template.parse(node.require("query"), literal_braces=True),
        condition,
        on_empty == "pass",
    )
