"""The stand-ins the benchmarks run in their own processes.

* `sink`: the target every action is sent to. Answers 200 at once; for `/a2a/<seq>` it records
  the arrival time (CLOCK_MONOTONIC, the clock the load generator also reads) for GET /_arrivals.
* `bare`: the ingest baseline: an aiohttp handler that only reads and parses the same payload
  and answers 200 with the same shape of body as the daemon.
* `connect`: Kafka Connect for the fifty-connectors benchmark: every connector FAILED with one
  FAILED task (GET /connectors/<name>/status, Connect's body); a restart (POST
  /connectors/<name>/restart?includeTasks=true&onlyFailed=true) is noted on arrival
  (CLOCK_MONOTONIC, GET /_arrivals) and answered after `--delay` seconds with Connect's 202 and
  its parts RESTARTING, as a restart that takes a while.
* `relay`: the alert-to-action baseline: parses the payload, answers 200, and sends each alert's
  request to the sink with the same HTTP client as the executor's `http` kind (aiohttp). The
  floor for aiohttp in, aiohttp out, on this machine.

Usage: python -m bench.servers {sink,bare,relay,connect} --port N [--target URL] [--delay S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import aiohttp
from aiohttp import web


def sink_app() -> web.Application:
    arrivals: dict[str, int] = {}
    counts = {"requests": 0}

    async def record(request: web.Request) -> web.Response:
        now = time.monotonic_ns()
        counts["requests"] += 1
        path = request.path
        if path.startswith("/a2a/"):
            arrivals.setdefault(path[5:], now)
        await request.read()
        return web.json_response({})

    async def read_arrivals(request: web.Request) -> web.Response:
        return web.json_response({"arrivals": arrivals, "requests": counts["requests"]})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_get("/_arrivals", read_arrivals)
    app.router.add_get("/readyz", ready)
    app.router.add_route("*", "/{tail:.*}", record)
    return app


def bare_app() -> web.Application:
    counter = {"n": 0}

    async def alerts(request: web.Request) -> web.Response:
        data = json.loads(await request.read())
        counter["n"] += 1
        return web.json_response(
            {"status": "accepted", "journal_id": counter["n"], "alerts": len(data["alerts"])}
        )

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_post("/alerts", alerts)
    app.router.add_get("/readyz", ready)
    return app


def connect_app(delay: float) -> web.Application:
    arrivals: dict[str, int] = {}

    def status_body(name: str, state: str) -> dict[str, Any]:
        return {
            "name": name,
            "connector": {"state": state, "worker_id": "connect-0:8083"},
            "tasks": [{"id": 0, "state": state, "worker_id": "connect-0:8083"}],
            "type": "sink",
        }

    async def status(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        state = "RUNNING" if name in arrivals else "FAILED"
        return web.json_response(status_body(name, state))

    async def restart(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        arrivals.setdefault(name, time.monotonic_ns())
        await asyncio.sleep(delay)
        return web.json_response(status_body(name, "RESTARTING"), status=202)

    async def read_arrivals(request: web.Request) -> web.Response:
        return web.json_response({"arrivals": arrivals})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_get("/connectors/{name}/status", status)
    app.router.add_post("/connectors/{name}/restart", restart)
    app.router.add_get("/_arrivals", read_arrivals)
    app.router.add_get("/readyz", ready)
    return app


def relay_app(target: str) -> web.Application:
    sessions: list[aiohttp.ClientSession] = []
    tasks: set[asyncio.Task[Any]] = set()
    counter = {"n": 0}

    async def send(seq: str) -> None:
        if not sessions:
            sessions.append(aiohttp.ClientSession(trust_env=False))
        timeout = aiohttp.ClientTimeout(total=None, connect=10.0, sock_read=10.0)
        url = f"{target}/a2a/{seq}"
        async with sessions[0].post(url, data=b"{}", timeout=timeout, allow_redirects=False) as r:
            await r.read()

    async def alerts(request: web.Request) -> web.Response:
        data = json.loads(await request.read())
        for alert in data["alerts"]:
            task = asyncio.create_task(send(alert["labels"]["seq"]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        counter["n"] += 1
        return web.json_response(
            {"status": "accepted", "journal_id": counter["n"], "alerts": len(data["alerts"])}
        )

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    async def close(app: web.Application) -> None:
        for session in sessions:
            await session.close()

    app = web.Application()
    app.router.add_post("/alerts", alerts)
    app.router.add_get("/readyz", ready)
    app.on_cleanup.append(close)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["sink", "bare", "relay", "connect"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", default="")
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    if args.role == "sink":
        app = sink_app()
    elif args.role == "connect":
        app = connect_app(args.delay)
    elif args.role == "bare":
        app = bare_app()
    else:
        app = relay_app(args.target)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
