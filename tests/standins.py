"""Real HTTP servers on 127.0.0.1 standing in for the systems remediator drives.

Each answers on the same paths, with the same status codes and bodies as the real API, and records
every request it receives so tests can assert what a target saw, in order. Run directly for the
README's tour:  python tests/standins.py  (config service on :8081, feature flags on :8082,
Kafka Connect on :8083, the Kubernetes API on :8084, the migration API on :8085)
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # raw, still percent-encoded
    query: str
    headers: dict[str, str]
    body: bytes
    at: float
    raw_query: str = ""  # as sent, still percent-encoded (`query` is decoded once)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class StandIn:
    """An aiohttp server on a free loopback port that records what it receives."""

    app: web.Application
    seen: list[Seen] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0
    tls: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def start(self, port: int = 0, tls: ssl.SSLContext | None = None) -> StandIn:
        self.tls = tls
        self.app.middlewares.append(self._record)
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port, ssl_context=tls)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(
                request.method,
                request.raw_path.split("?")[0],
                request.query_string,
                dict(request.headers),
                body,
                time.time(),
                request.raw_path.partition("?")[2],
            )
        )
        return await handler(request)  # type: ignore[no-any-return]

    def requests(self, method: str | None = None) -> list[Seen]:
        return [s for s in self.seen if method is None or s.method == method]


# -- Kafka Connect (org.apache.kafka.connect.runtime.rest.resources.ConnectorsResource) ----------


@dataclass
class Connector:
    state: str = "RUNNING"
    tasks: list[str] = field(default_factory=lambda: ["RUNNING"])
    worker: str = "connect-1:8083"


class KafkaConnect:
    """Connector state, the status/pause/resume/restart endpoints, and Connect's error bodies.

    `restart_outcome` sets what a restart leaves behind (RUNNING by default); `conflict` makes the
    next N calls answer 409 as Connect does during a rebalance; `hang` makes calls never answer
    (`hang_restarts` only restarts).

    GET /metrics is what the CDC runbook's exporter shows Prometheus: `connector_state` per
    connector, 1 while RUNNING and 0 otherwise (alerting/prometheus/rules/cdc.yml's ConnectorDown
    reads it). It is not part of Connect's REST API; the failure knobs above do not touch it."""

    def __init__(self, connectors: dict[str, Connector] | None = None) -> None:
        self.connectors = connectors if connectors is not None else {}
        self.restart_outcome = "RUNNING"
        self.conflicts = 0
        self.failures = 0  # answer 500 this many times
        self.hang = asyncio.Event()  # set: every call hangs until released
        self.hang_restarts = asyncio.Event()  # set: restarts hang until released, reads answer
        self.release = asyncio.Event()
        app = web.Application()
        app.router.add_get("/connectors", self.list)
        app.router.add_get("/connectors/{name}/status", self.status)
        app.router.add_put("/connectors/{name}/pause", self.pause)
        app.router.add_put("/connectors/{name}/resume", self.resume)
        app.router.add_post("/connectors/{name}/restart", self.restart)
        app.router.add_post("/connectors/{name}/tasks/{task}/restart", self.restart_task)
        app.router.add_get("/metrics", self.metrics)
        self.server = StandIn(app)

    def restarts(self, connector: str) -> int:
        """How many restart requests the connector received."""
        return sum(1 for s in self.server.seen if s.path == f"/connectors/{connector}/restart")

    def status_body(self, name: str) -> dict[str, Any]:
        c = self.connectors[name]
        return {
            "name": name,
            "connector": {"state": c.state, "worker_id": c.worker},
            "tasks": [{"id": i, "state": s, "worker_id": c.worker} for i, s in enumerate(c.tasks)],
            "type": "sink" if "sink" in name else "source",
        }

    async def _gate(self, name: str) -> web.Response | None:
        if self.hang.is_set():
            await self.release.wait()
        if self.conflicts > 0:
            self.conflicts -= 1
            return _connect_error(
                409,
                "Cannot complete request momentarily due to "
                "stale configuration (typically caused by a concurrent "
                "config change)",
            )
        if self.failures > 0:
            self.failures -= 1
            return _connect_error(500, "Request timed out")
        if name not in self.connectors:
            return _connect_error(404, f"Connector {name} not found")
        return None

    async def list(self, request: web.Request) -> web.Response:
        return web.json_response(sorted(self.connectors))

    async def metrics(self, request: web.Request) -> web.Response:
        lines = [
            "# HELP connector_state 1 while the connector is RUNNING, 0 otherwise.",
            "# TYPE connector_state gauge",
        ]
        for name, connector in sorted(self.connectors.items()):
            value = 1 if connector.state == "RUNNING" else 0
            lines.append(f'connector_state{{connector="{_label_value(name)}"}} {value}')
        return web.Response(
            text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8"
        )

    async def status(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return await self._gate(name) or web.json_response(self.status_body(name))

    async def pause(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if (err := await self._gate(name)) is not None:
            return err
        c = self.connectors[name]
        c.state, c.tasks = "PAUSED", ["PAUSED" for _ in c.tasks]
        return web.Response(status=202)

    async def resume(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if (err := await self._gate(name)) is not None:
            return err
        c = self.connectors[name]
        c.state, c.tasks = "RUNNING", ["RUNNING" for _ in c.tasks]
        return web.Response(status=202)

    async def restart(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if self.hang_restarts.is_set():
            await self.release.wait()
        if (err := await self._gate(name)) is not None:
            return err
        c = self.connectors[name]
        include_tasks = request.query.get("includeTasks") == "true"
        only_failed = request.query.get("onlyFailed") == "true"
        if not include_tasks and not only_failed:
            c.state = self.restart_outcome
            return web.Response(status=204)
        body = self.status_body(name)
        restart_connector = not only_failed or c.state == "FAILED"
        if restart_connector:
            body["connector"]["state"] = "RESTARTING"
            c.state = self.restart_outcome
        for i, state in enumerate(c.tasks):
            if include_tasks and (not only_failed or state == "FAILED"):
                body["tasks"][i]["state"] = "RESTARTING"
                c.tasks[i] = self.restart_outcome
        return web.json_response(body, status=202)

    async def restart_task(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if (err := await self._gate(name)) is not None:
            return err
        task = int(request.match_info["task"])
        c = self.connectors[name]
        if task >= len(c.tasks):
            return _connect_error(404, f"Task {name}-{task} not found")
        c.tasks[task] = self.restart_outcome
        return web.Response(status=204)


def _label_value(value: str) -> str:
    """Escaped as the Prometheus text format wants a label value."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _connect_error(status: int, message: str) -> web.Response:
    return web.json_response({"error_code": status, "message": message}, status=status)


# -- the Kubernetes API server (apps/v1 Deployments and StatefulSets, their /scale) ------------


@dataclass
class Workload:
    replicas: int = 3
    annotations: dict[str, str] = field(default_factory=dict)  # the pod template's
    resource_version: int = 1
    rollouts: int = 0  # how many times a changed pod template started a rollout


def kube_status(code: int, reason: str, message: str) -> web.Response:
    """A Kubernetes Status object, as the API server writes errors."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


class KubeApi:
    """The apps/v1 endpoints remediator uses, with the API server's status codes and Status
    bodies: GET and PATCH of deployments and statefulsets and of their /scale subresource.
    PATCH takes strategic merge and merge patches (JSON patch and apply are not implemented:
    415 like any unknown type). A `resourceVersion` in a patch is a precondition (409 if stale).

    `authorize(request)` returns None to allow, or the Status response to send (401, 403).
    `conflicts` and `failures` answer the next N calls 409 and 503; `lose_answers` applies the
    next N patches and then answers 504 (the write happened, the answer did not arrive);
    `hang` holds every call until `release`."""

    def __init__(self, workloads: dict[tuple[str, str, str], Workload] | None = None) -> None:
        self.workloads = workloads if workloads is not None else {}
        self.authorize: Callable[[web.Request], web.Response | None] = lambda request: None
        self.conflicts = 0
        self.failures = 0
        self.lose_answers = 0
        self.hang = asyncio.Event()
        self.release = asyncio.Event()
        base = "/apis/apps/v1/namespaces/{namespace}/{resource}/{name}"
        app = web.Application()
        app.router.add_get(base, self.get)
        app.router.add_patch(base, self.patch)
        app.router.add_get(base + "/scale", self.get_scale)
        app.router.add_patch(base + "/scale", self.patch_scale)
        self.server = StandIn(app)

    async def _find(self, request: web.Request) -> Workload | web.Response:
        if self.hang.is_set():
            await self.release.wait()
        denied = self.authorize(request)
        if denied is not None:
            return denied
        ns, resource, name = (request.match_info[k] for k in ("namespace", "resource", "name"))
        if resource not in ("deployments", "statefulsets"):
            return kube_status(404, "NotFound", "the server could not find the requested resource")
        if self.failures > 0:
            self.failures -= 1
            return kube_status(503, "ServiceUnavailable", "etcdserver: leader changed")
        workload = self.workloads.get((resource, ns, name))
        if workload is None:
            return kube_status(404, "NotFound", f'{resource}.apps "{name}" not found')
        return workload

    async def _patch_body(self, request: web.Request, workload: Workload) -> Any:
        kind = request.content_type
        if kind not in PATCH_TYPES[1:3]:
            return kube_status(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {', '.join(PATCH_TYPES)}",
            )
        body = json.loads(await request.read())
        wanted = body.get("metadata", {}).get("resourceVersion")
        name = request.match_info["name"]
        if self.conflicts > 0 or (wanted is not None and wanted != str(workload.resource_version)):
            self.conflicts = max(0, self.conflicts - 1)
            return kube_status(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {request.match_info["resource"]}.apps "{name}": '
                "the object has been modified; please apply your changes to the latest version "
                "and try again",
            )
        return body

    def _object(self, request: web.Request, w: Workload) -> dict[str, Any]:
        kind = "Deployment" if request.match_info["resource"] == "deployments" else "StatefulSet"
        return {
            "kind": kind,
            "apiVersion": "apps/v1",
            "metadata": {
                "name": request.match_info["name"],
                "namespace": request.match_info["namespace"],
                "resourceVersion": str(w.resource_version),
            },
            "spec": {
                "replicas": w.replicas,
                "template": {"metadata": {"annotations": w.annotations}},
            },
        }

    def _scale(self, request: web.Request, w: Workload) -> dict[str, Any]:
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": request.match_info["name"],
                "namespace": request.match_info["namespace"],
                "resourceVersion": str(w.resource_version),
            },
            "spec": {"replicas": w.replicas} if w.replicas else {},
            "status": {"replicas": w.replicas, "selector": "app=x"},
        }

    async def get(self, request: web.Request) -> web.Response:
        found = await self._find(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response(self._object(request, found))

    async def patch(self, request: web.Request) -> web.Response:
        found = await self._find(request)
        if isinstance(found, web.Response):
            return found
        body = await self._patch_body(request, found)
        if isinstance(body, web.Response):
            return body
        annotations = (
            body.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {})
        )
        merged = {**found.annotations, **annotations}
        if merged != found.annotations:
            found.annotations, found.rollouts = merged, found.rollouts + 1
            found.resource_version += 1
        return self._answer(web.json_response(self._object(request, found)))

    def _answer(self, response: web.Response) -> web.Response:
        if self.lose_answers > 0:
            self.lose_answers -= 1
            return kube_status(
                504, "Timeout", "Timeout: request did not complete within requested timeout"
            )
        return response

    async def get_scale(self, request: web.Request) -> web.Response:
        found = await self._find(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response(self._scale(request, found))

    async def patch_scale(self, request: web.Request) -> web.Response:
        found = await self._find(request)
        if isinstance(found, web.Response):
            return found
        body = await self._patch_body(request, found)
        if isinstance(body, web.Response):
            return body
        replicas = body.get("spec", {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            return kube_status(422, "Invalid", f'Scale.autoscaling "x" is invalid: {replicas!r}')
        if replicas != found.replicas:
            found.replicas, found.resource_version = replicas, found.resource_version + 1
        return self._answer(web.json_response(self._scale(request, found)))


# -- a generic JSON service (config service, feature flags, migration API) ---------------------


class Recorder:
    """Answers every request with a fixed status (default 200 and a small JSON body). `script`
    holds statuses to answer first, in order, e.g. [503, 503] then the default."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.script: list[int] = []
        self.delay = 0.0
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = StandIn(app)

    async def handle(self, request: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.script.pop(0) if self.script else self.status
        if status == 204:
            return web.Response(status=204)
        return web.json_response({"ok": 200 <= status < 300, "path": request.path}, status=status)


# -- services the runbooks name but do not specify: a key/value config service, a migration API --


class ConfigService:
    """Stores a JSON body at any path: PUT replaces it, PATCH merges into it, GET returns it (404
    before the first write). The ingestion config service (`PUT /v1/config/ingestion.enabled`
    `{"value": false}`) and the feature-flag service (`PATCH /v1/flags/ingestion_v2_enabled`)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = StandIn(app)

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path
        if request.method == "GET":
            if path not in self.values:
                return web.json_response({"error": f"{path} is not set"}, status=404)
            return web.json_response(self.values[path])
        if request.method not in ("PUT", "PATCH"):
            return web.json_response({"error": "method not allowed"}, status=405)
        body = await request.json()
        if request.method == "PATCH" and isinstance(self.values.get(path), dict):
            body = {**self.values[path], **body}
        self.values[path] = body
        return web.json_response(body)


@dataclass
class Migration:
    state: str = "bulk_copy"  # bulk_copy, dual_write, paused, stopped, rolled_back, migrated
    resume_to: str = "bulk_copy"
    config: dict[str, Any] = field(default_factory=dict)
    bottleneck: str = "source_read"
    rollback: str = "none"  # the rollback's status: none, completed


class MigrationApi:
    """The data-migration service of the migration runbooks: GET a migration's state, pause,
    resume, stop (`?immediate=true`), rollback with a strategy, PATCH its config, its rollback
    status and bottleneck. State rules as in the tenant-migration runbook: pause from bulk_copy
    or dual_write, resume from paused, never roll back a migrated one (409 otherwise)."""

    def __init__(self, migrations: dict[str, Migration] | None = None) -> None:
        self.migrations = migrations if migrations is not None else {}
        base = "/v1/migrations/{id}"
        app = web.Application()
        app.router.add_get(base, self.get)
        app.router.add_post(base + "/pause", self.pause)
        app.router.add_post(base + "/resume", self.resume)
        app.router.add_post(base + "/stop", self.stop)
        app.router.add_post(base + "/rollback", self.start_rollback)
        app.router.add_get(base + "/rollback/status", self.rollback_status)
        app.router.add_patch(base + "/config", self.patch_config)
        app.router.add_get(base + "/performance/bottleneck", self.bottleneck)
        self.server = StandIn(app)

    def _find(self, request: web.Request) -> Migration | web.Response:
        found = self.migrations.get(request.match_info["id"])
        if found is None:
            return web.json_response({"error": "migration not found"}, status=404)
        return found

    def _view(self, request: web.Request, m: Migration) -> web.Response:
        return web.json_response({"id": request.match_info["id"], "state": m.state})

    async def get(self, request: web.Request) -> web.Response:
        m = self._find(request)
        return m if isinstance(m, web.Response) else self._view(request, m)

    async def _move(self, request: web.Request, allowed: tuple[str, ...], to: str) -> web.Response:
        m = self._find(request)
        if isinstance(m, web.Response):
            return m
        if m.state not in allowed:
            return web.json_response({"error": f"not allowed in state {m.state}"}, status=409)
        if to == "paused":
            m.resume_to = m.state
        m.state = m.resume_to if to == "resumed" else to
        return self._view(request, m)

    async def pause(self, request: web.Request) -> web.Response:
        return await self._move(request, ("bulk_copy", "dual_write"), "paused")

    async def resume(self, request: web.Request) -> web.Response:
        return await self._move(request, ("paused",), "resumed")

    async def stop(self, request: web.Request) -> web.Response:
        active = ("bulk_copy", "dual_write", "paused", "stopped")
        return await self._move(request, active, "stopped")

    async def start_rollback(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("strategy") not in ("truncate", "point_in_time"):
            return web.json_response({"error": "unknown strategy"}, status=400)
        response = await self._move(request, ("bulk_copy", "dual_write", "paused", "stopped"),
                                    "rolled_back")  # fmt: skip
        if response.status == 200:
            self.migrations[request.match_info["id"]].rollback = "completed"
        return response

    async def rollback_status(self, request: web.Request) -> web.Response:
        m = self._find(request)
        return m if isinstance(m, web.Response) else web.json_response({"status": m.rollback})

    async def patch_config(self, request: web.Request) -> web.Response:
        m = self._find(request)
        if isinstance(m, web.Response):
            return m
        m.config = _merge(m.config, await request.json())
        return web.json_response(m.config)

    async def bottleneck(self, request: web.Request) -> web.Response:
        m = self._find(request)
        return m if isinstance(m, web.Response) else web.json_response({"bottleneck": m.bottleneck})


def _merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = dict(old)
    for key, value in new.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if both else value
    return merged


async def _tour() -> None:
    connect = KafkaConnect(
        {
            "postgres-sink-connector": Connector("FAILED", ["FAILED"]),
            "sqlserver-source-connector": Connector(),
        }
    )
    config, flags = ConfigService(), ConfigService()
    kube = KubeApi(
        {
            ("deployments", "ingestion", "parse-worker"): Workload(),
            ("deployments", "ingestion", "promotion-worker"): Workload(),
        }
    )
    migrations = MigrationApi({"orders": Migration("dual_write")})
    servers = [config.server, flags.server, connect.server, kube.server, migrations.server]
    for server, port in zip(servers, (8081, 8082, 8083, 8084, 8085), strict=True):
        await server.start(port)
    print(
        "stand-ins: ingestion config :8081, feature flags :8082, Kafka Connect :8083, "
        "Kubernetes API :8084, migration API :8085"
    )
    seen = 0
    while True:
        await asyncio.sleep(0.5)
        everything = sorted((s for server in servers for s in server.seen), key=lambda s: s.at)
        for s in everything[seen:]:
            print(
                f"received {s.method} {s.path}{'?' + s.query if s.query else ''} "
                f"{s.body.decode()[:120]}",
                flush=True,
            )
        seen = len(everything)


if __name__ == "__main__":
    try:
        asyncio.run(_tour())
    except KeyboardInterrupt:
        sys.exit(0)
