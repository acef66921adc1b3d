"""`kafka_connect`: pause, resume or restart a connector, or restart one of its tasks, over the
Kafka Connect REST API (Apache Kafka's ConnectorsResource).

`cluster` names a target, so several Connect clusters are several targets, each with its own
cooldowns, budgets and circuit breaker. Connect acts asynchronously: pause and resume answer 202
and the connector changes state a moment later, so the way to know a pause took effect is a
`verify` with a `kafka_connect` check (checks.py), which reads `GET /connectors/{name}/status`
with `connector_status` below.

Connect's answers, and what they mean here:

- 2xx: done (pause/resume 202; restart 204, or 200 on some 3.x; restart with `includeTasks` or
  `onlyFailed` 202 with the connector's status, its restarting parts marked RESTARTING).
- 404 with `error_code`: the connector (or task) does not exist on this cluster. Final: retrying
  will not create it. A 404 without Connect's error body means the target is not Kafka Connect.
- 409: the cluster is rebalancing; retried with backoff. 5xx (Connect answers 500 "Request timed
  out" when a forwarded request times out) and transport errors: retried.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp

from remediator.actions import COMMON_KEYS, ActionCommon, ActionRegistry, ParseEnv
from remediator.actions.base import (
    AttemptContext,
    AttemptResult,
    Prepared,
    RenderContext,
    RetryPolicy,
    Template,
)
from remediator.actions.http import (
    MAX_OUTPUT,
    Answer,
    answer_failure,
    error_message,
    fetch,
    path_segment,
)
from remediator.errors import RenderError
from remediator.schema import Node, decimal
from remediator.targets import Target

KEYS = COMMON_KEYS | {"cluster", "operation", "connector", "include_tasks", "only_failed", "task"}
OPERATIONS = ("pause", "resume", "restart", "restart_task")
# Connector and task states (AbstractStatus.State); STOPPED arrived with Kafka 3.5 (KIP-875).
STATES = ("RUNNING", "PAUSED", "STOPPED", "FAILED", "UNASSIGNED", "RESTARTING")
STATUS_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class KafkaConnectAction:
    name: str
    timeout: float
    retry: RetryPolicy
    cluster: Target
    operation: str
    connector: Template
    include_tasks: bool = False
    only_failed: bool = False
    task: Template | None = None
    description: str = ""
    kind: str = "kafka_connect"

    @property
    def target(self) -> str:
        return self.cluster.name

    def prepare(self, ctx: RenderContext) -> Prepared:
        connector = self.connector.render(ctx)
        base = f"{self.cluster.url}/connectors/{path_segment(connector)}"
        request: dict[str, Any] = {"operation": self.operation, "connector": connector}
        if self.operation in ("pause", "resume"):
            return request | {"method": "PUT", "url": f"{base}/{self.operation}"}
        if self.operation == "restart_task":
            assert self.task is not None
            task = _task_id(self.task.render(ctx))
            return request | {"method": "POST", "url": f"{base}/tasks/{task}/restart", "task": task}
        flags = {"includeTasks": self.include_tasks, "onlyFailed": self.only_failed}
        query = urlencode({k: "true" for k, on in flags.items() if on})
        url = f"{base}/restart" + (f"?{query}" if query else "")
        return request | {"method": "POST", "url": url}

    def describe(self, prepared: Prepared) -> str:
        return f"{prepared['method']} {prepared['url']}"

    async def attempt(self, prepared: Prepared, ctx: AttemptContext) -> AttemptResult:
        headers = self.cluster.request_headers()
        headers["Idempotency-Key"] = ctx.idempotency_key
        session = ctx.aiohttp_session(self.kind)
        answer = await fetch(
            session, prepared["method"], prepared["url"], headers, None, ctx.timeout
        )
        if isinstance(answer, AttemptResult):
            return answer
        return self._outcome(prepared, answer)

    def _outcome(self, prepared: Prepared, answer: Answer) -> AttemptResult:
        status, body = answer.status, answer.text[:MAX_OUTPUT]
        what = _what(prepared)
        if 200 <= status < 300:
            return AttemptResult(
                True,
                f"HTTP {status}: {self._done(prepared, status, body)}",
                status_code=status,
                output=body or json.dumps({"connector": prepared["connector"], "status": status}),
            )
        if status == 404:
            detail = (
                f"HTTP 404: {what} not found on cluster {self.cluster.name!r} "
                f"(Kafka Connect: {error_message(body)})"
                if _is_connect_error(body)
                else f"HTTP 404 without Kafka Connect's error body: is target "
                f"{self.cluster.name!r} ({self.cluster.url}) a Kafka Connect REST API?"
            )
            return AttemptResult(False, detail, status_code=404, output=body)
        reason = (
            "the Connect cluster is rebalancing; retrying"
            if status == 409
            else f"Kafka Connect: {error_message(body)}"
            if body
            else "no body"
        )
        return answer_failure(answer, f"HTTP {status} for {what}: {reason}")

    def _done(self, prepared: Prepared, status: int, body: str) -> str:
        what = _what(prepared)
        if self.operation in ("pause", "resume"):
            return f"{self.operation} of {what} accepted (it takes effect asynchronously)"
        if self.operation == "restart_task" or status != 202:
            if self.include_tasks or self.only_failed:
                # Connect before 3.0 ignores both parameters and restarts the connector only
                return f"{what} restarted, but not its tasks: this Connect predates 3.0"
            return f"{what} restarted"
        return f"restart of {what} accepted: {_restarting(body)}"


def _what(prepared: Prepared) -> str:
    what = f"connector {prepared['connector']!r}"
    return f"task {prepared['task']} of {what}" if "task" in prepared else what


def _task_id(text: str) -> str:
    task = decimal(text)
    if task is None:
        raise RenderError(f"a task id is a non-negative integer, got {text!r}")
    return str(task)


def _is_connect_error(body: str) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and "error_code" in data


def _restarting(body: str) -> str:
    """`connector RESTARTING, 1 of 2 tasks RESTARTING` from the 202's status body."""
    try:
        data = json.loads(body)
        connector = data["connector"]["state"]
        tasks = [t["state"] for t in data.get("tasks", [])]
    except (ValueError, KeyError, TypeError):
        return "no status in the answer"
    restarting = sum(1 for t in tasks if t == "RESTARTING")
    return f"connector {connector}, {restarting} of {len(tasks)} tasks RESTARTING"


# -- reading status, for checks -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectorStatus:
    connector: str  # the connector's state
    tasks: tuple[str, ...]  # each task's state, in task order


async def connector_status(
    session: aiohttp.ClientSession, cluster: Target, connector: str
) -> ConnectorStatus | str:
    """`GET /connectors/{name}/status`: the states, or a sentence saying why there are none.
    With aiohttp, as the `http` kind sends: every ConnectorDown's precondition reads it, and
    with httpx it was 27 % of the daemon's main thread under the ingest load (bench/FINDINGS)."""
    url = f"{cluster.url}/connectors/{path_segment(connector)}/status"
    answer = await fetch(session, "GET", url, cluster.request_headers(), None, STATUS_TIMEOUT)
    if isinstance(answer, AttemptResult):
        return f"GET {url}: {answer.detail}"
    if answer.status == 404 and _is_connect_error(answer.text):
        return f"connector {connector!r} not found on cluster {cluster.name!r}"
    if answer.status != 200:
        return f"GET {url}: HTTP {answer.status}"
    try:
        return _status(json.loads(answer.text))
    except (ValueError, KeyError, TypeError):
        return f"GET {url}: not a connector status: {answer.text[:200]!r}"


def _status(data: Mapping[str, Any]) -> ConnectorStatus:
    tasks = sorted(data["tasks"], key=lambda t: int(t["id"]))
    return ConnectorStatus(str(data["connector"]["state"]), tuple(str(t["state"]) for t in tasks))


# -- config ----------------------------------------------------------------------------------


def build(node: Node, common: ActionCommon, env: ParseEnv) -> KafkaConnectAction:
    node.mapping(KEYS)
    operation = node.require("operation").choice(OPERATIONS)
    for key in ("include_tasks", "only_failed"):
        if node.has(key) and operation != "restart":
            raise node.child(key).fail(f"only for operation restart, not {operation}")
    task = node.get("task")
    if (task is None) == (operation == "restart_task"):
        raise node.fail("give 'task' for operation restart_task, and only for it")
    return KafkaConnectAction(
        name=common.name,
        timeout=common.timeout,
        retry=common.retry,
        cluster=env.url_target(node.require("cluster")),
        operation=operation,
        connector=Template.parse(node.require("connector")),
        include_tasks=node.opt("include_tasks", Node.boolean, False),
        only_failed=node.opt("only_failed", Node.boolean, False),
        task=None if task is None else Template.parse(task),
        description=common.description,
    )


def register(registry: ActionRegistry) -> None:
    registry.register("kafka_connect", build, timeout=10.0, retries=3)
