"""`kubernetes`: restart the pods of a Deployment or StatefulSet, or scale it, through the
Kubernetes API of a cluster target (kubeconfig.py: in-cluster service account or kubeconfig).

`rollout_restart` does what `kubectl rollout restart` does: a strategic merge patch setting the
pod template's `kubectl.kubernetes.io/restartedAt` annotation to the time, so the controller
rolls every pod. The time is taken once per action: a retry sends the same patch, which changes
nothing if the first one got through (one rollout, never two).

The object is `workload: {kind: Deployment, namespace: ingestion, name: "{worker}"}` (the shape
of an HPA's scaleTargetRef; `kind` alone is taken, it names the action kind).

`scale` reads the `/scale` subresource, then patches `spec.replicas` with a merge patch that
carries the `resourceVersion` it read (someone scaling in between makes it a 409, retried). The
output records the count it replaced, `{"previous_replicas": 5, "replicas": 0}`, so an
on_resolved action can put it back: `replicas: "{$results.scale_down.previous_replicas}"`. The
count is the one seen by the first attempt: a retry after a scale that went through unanswered
still reports 5, not 0.

Namespace and name are label values or text, checked against Kubernetes' naming rules and sent
as encoded path segments. API errors are Status objects; their `reason` says what happened:
NotFound, Forbidden (RBAC), Unauthorized, Invalid and UnsupportedMediaType are final; Conflict,
TooManyRequests and 5xx are retried.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

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
    failure,
    path_segment,
    send,
)
from remediator.errors import RenderError
from remediator.kubeconfig import KubeAuthError, KubeCluster
from remediator.schema import Node, decimal
from remediator.targets import Target

KEYS = COMMON_KEYS | {"cluster", "operation", "workload", "replicas"}
WORKLOAD_KEYS = frozenset({"kind", "namespace", "name"})
OPERATIONS = ("rollout_restart", "scale")
RESOURCES = {"Deployment": "deployments", "StatefulSet": "statefulsets"}
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True, slots=True)
class KubernetesAction:
    name: str
    timeout: float
    retry: RetryPolicy
    cluster: Target
    operation: str
    workload: str  # Deployment or StatefulSet
    namespace: Template
    object_name: Template
    replicas: Template | None = None
    description: str = ""
    kind: str = "kubernetes"
    # what the first attempt of each claim saw or chose (restartedAt, previous_replicas), by
    # idempotency key, so that its retries send and report the same; dropped when it finishes
    _memo: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def target(self) -> str:
        return self.cluster.name

    @property
    def api(self) -> KubeCluster:
        assert self.cluster.kubernetes is not None
        return self.cluster.kubernetes

    def prepare(self, ctx: RenderContext) -> Prepared:
        namespace = _checked("namespace", self.namespace.render(ctx), _DNS_LABEL, 63)
        name = _checked("name", self.object_name.render(ctx), _DNS_SUBDOMAIN, 253)
        path = (
            f"/apis/apps/v1/namespaces/{path_segment(namespace)}/"
            f"{RESOURCES[self.workload]}/{path_segment(name)}"
        )
        request: dict[str, Any] = {
            "operation": self.operation,
            "kind": self.workload,
            "namespace": namespace,
            "name": name,
            "path": path,
        }
        if self.replicas is not None:
            request["replicas"] = _replicas(self.replicas.render(ctx))
        return request

    def describe(self, prepared: Prepared) -> str:
        what = f"{prepared['kind']} {prepared['namespace']}/{prepared['name']}"
        if prepared["operation"] == "scale":
            return f"scale {what} to {prepared['replicas']} on {self.cluster.name}"
        return f"rollout restart {what} on {self.cluster.name}"

    async def attempt(self, prepared: Prepared, ctx: AttemptContext) -> AttemptResult:
        memo = self._memo.setdefault(ctx.idempotency_key, {})
        try:
            connection = self.api.connect()
        except KubeAuthError as e:
            result = AttemptResult(False, f"cannot reach cluster {self.cluster.name!r}: {e}")
        else:
            headers = connection.headers | {"Accept": "application/json"}
            async with httpx.AsyncClient(
                base_url=connection.server,
                verify=connection.verify,
                headers=headers,
                trust_env=False,
                follow_redirects=False,
            ) as http:
                if prepared["operation"] == "scale":
                    result = await self._scale(http, prepared, memo, ctx.timeout)
                else:
                    result = await self._restart(http, prepared, memo, ctx.timeout)
        if result.ok or not result.retryable or ctx.attempt > self.retry.retries:
            self._memo.pop(ctx.idempotency_key, None)
        return result

    async def _restart(
        self, http: httpx.AsyncClient, prepared: Prepared, memo: dict[str, Any], seconds: float
    ) -> AttemptResult:
        if "restartedAt" not in memo:
            memo["restartedAt"] = _now()
        stamp = memo["restartedAt"]
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        response = await _patch(http, prepared["path"], STRATEGIC_MERGE, patch, seconds)
        if not isinstance(response, httpx.Response):
            return response
        if response.status_code != 200:
            return self._failure(prepared, response)
        output = {
            "kind": prepared["kind"],
            "namespace": prepared["namespace"],
            "name": prepared["name"],
            "restartedAt": stamp,
        }
        return AttemptResult(
            True,
            f"HTTP 200: pods of {_what(prepared)} restarting (restartedAt {stamp})",
            status_code=200,
            output=json.dumps(output),
        )

    async def _scale(
        self, http: httpx.AsyncClient, prepared: Prepared, memo: dict[str, Any], seconds: float
    ) -> AttemptResult:
        path = prepared["path"] + "/scale"
        response = await send(http, "GET", path, {}, None, seconds)
        if not isinstance(response, httpx.Response):
            return response
        if response.status_code != 200:
            return self._failure(prepared, response)
        try:
            scale = response.json()
            current = int(scale.get("spec", {}).get("replicas", 0))
            version = str(scale["metadata"]["resourceVersion"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return AttemptResult(False, f"GET {path}: not a Scale: {response.text[:200]!r}")
        previous = memo.setdefault("previous_replicas", current)
        wanted = prepared["replicas"]
        patch = {"metadata": {"resourceVersion": version}, "spec": {"replicas": wanted}}
        response = await _patch(http, path, MERGE, patch, seconds)
        if not isinstance(response, httpx.Response):
            return response
        if response.status_code != 200:
            return self._failure(prepared, response)
        return AttemptResult(
            True,
            f"HTTP 200: {_what(prepared)} scaled from {previous} to {wanted} replicas",
            status_code=200,
            output=json.dumps({"previous_replicas": previous, "replicas": wanted}),
        )

    def _failure(self, prepared: Prepared, response: httpx.Response) -> AttemptResult:
        status, body = response.status_code, response.text[:MAX_OUTPUT]
        reason, message = _status(body)
        what = _what(prepared)
        if reason is None:
            detail = (
                f"HTTP {status} without a Kubernetes Status: is cluster {self.cluster.name!r} "
                f"({self.api.source}) a Kubernetes API server?"
            )
        elif reason == "NotFound":
            detail = f"HTTP 404: {what} not found on cluster {self.cluster.name!r} ({message})"
        elif reason == "Unauthorized":
            detail = (
                f"HTTP 401: cluster {self.cluster.name!r} refused the credentials "
                f"({self.api.source})"
            )
        elif reason == "Conflict":
            detail = f"HTTP 409: {what} changed meanwhile; retrying ({message})"
        else:
            detail = f"HTTP {status} {reason}: {message}"
        return failure(response, detail)


async def _patch(
    http: httpx.AsyncClient, path: str, content_type: str, body: Any, seconds: float
) -> httpx.Response | AttemptResult:
    headers = {"Content-Type": content_type}
    return await send(http, "PATCH", path, headers, json.dumps(body).encode(), seconds)


def _status(body: str) -> tuple[str | None, str]:
    """A Kubernetes Status object's reason and message, or (None, "")."""
    try:
        data = json.loads(body)
    except ValueError:
        return None, ""
    if not isinstance(data, dict) or data.get("kind") != "Status":
        return None, ""
    return str(data.get("reason") or "Unknown"), str(data.get("message", ""))[:300]


def _what(prepared: Prepared) -> str:
    return f"{prepared['kind']} {prepared['namespace']}/{prepared['name']}"


def _now() -> str:
    """RFC 3339 in UTC, to the second, as kubectl writes restartedAt."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _checked(what: str, value: str, pattern: re.Pattern[str], limit: int) -> str:
    if len(value) > limit or not pattern.fullmatch(value):
        raise RenderError(f"{value!r} is not a valid Kubernetes {what}")
    return value


def _replicas(text: str) -> int:
    replicas = decimal(text)
    if replicas is None:
        raise RenderError(f"replicas must be a non-negative integer, got {text!r}")
    return replicas


# -- config ----------------------------------------------------------------------------------


def build(node: Node, common: ActionCommon, env: ParseEnv) -> KubernetesAction:
    node.mapping(KEYS)
    cluster_node = node.require("cluster")
    cluster = env.target(cluster_node)
    if cluster.kubernetes is None:
        raise cluster_node.fail(
            f"target {cluster.name!r} is not a Kubernetes cluster (give it a kubernetes block)"
        )
    operation = node.require("operation").choice(OPERATIONS)
    replicas = node.get("replicas")
    if (replicas is None) == (operation == "scale"):
        raise node.fail("give 'replicas' for operation scale, and only for it")
    workload = node.require("workload").mapping(WORKLOAD_KEYS)
    return KubernetesAction(
        name=common.name,
        timeout=common.timeout,
        retry=common.retry,
        cluster=cluster,
        operation=operation,
        workload=workload.require("kind").choice(tuple(RESOURCES)),
        namespace=Template.parse(workload.require("namespace")),
        object_name=Template.parse(workload.require("name")),
        replicas=None if replicas is None else Template.parse(replicas),
        description=common.description,
    )


def register(registry: ActionRegistry) -> None:
    registry.register("kubernetes", build, timeout=15.0, retries=3)
