"""Real HTTP servers on 127.0.0.1 standing in for the systems remediator drives.

Each answers on the same paths, with the same status codes and bodies as the real API, and records
every request it receives so tests can assert what a target saw, in order. Run directly for the
README's tour:  python tests/standins.py  (Kafka Connect on :8083, config on :8081, flags on :8082)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
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

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class StandIn:
    """An aiohttp server on a free loopback port that records what it receives."""

    app: web.Application
    seen: list[Seen] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> StandIn:
        self.app.middlewares.append(self._record)
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
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
    next N calls answer 409 as Connect does during a rebalance; `hang` makes calls never answer."""

    def __init__(self, connectors: dict[str, Connector] | None = None) -> None:
        self.connectors = connectors if connectors is not None else {}
        self.restart_outcome = "RUNNING"
        self.conflicts = 0
        self.failures = 0  # answer 500 this many times
        self.hang = asyncio.Event()  # set: every call hangs until released
        self.release = asyncio.Event()
        app = web.Application()
        app.router.add_get("/connectors", self.list)
        app.router.add_get("/connectors/{name}/status", self.status)
        app.router.add_put("/connectors/{name}/pause", self.pause)
        app.router.add_put("/connectors/{name}/resume", self.resume)
        app.router.add_post("/connectors/{name}/restart", self.restart)
        app.router.add_post("/connectors/{name}/tasks/{task}/restart", self.restart_task)
        self.server = StandIn(app)

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


def _connect_error(status: int, message: str) -> web.Response:
    return web.json_response({"error_code": status, "message": message}, status=status)


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


async def _tour() -> None:
    connect = KafkaConnect(
        {
            "postgres-sink-connector": Connector("FAILED", ["FAILED"]),
            "sqlserver-source-connector": Connector(),
        }
    )
    config, flags = Recorder(), Recorder()
    await connect.server.start(8083)
    await config.server.start(8081)
    await flags.server.start(8082)
    print("stand-ins: Kafka Connect :8083, ingestion config :8081, feature flags :8082")
    seen = 0
    while True:
        await asyncio.sleep(0.5)
        everything = sorted(
            [*connect.server.seen, *config.server.seen, *flags.server.seen], key=lambda s: s.at
        )
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
