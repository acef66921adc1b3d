"""GET /api/v1/openapi.json: the document describes every /api/v1 route the daemon serves."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import API_TOKEN, Running, StartDaemon, base_config


@pytest.fixture
async def daemon(write_config: Callable[..., Path], start_daemon: StartDaemon) -> Running:
    return await start_daemon(write_config(base_config({})))


async def test_every_api_route_is_documented_and_nothing_else(daemon: Running) -> None:
    r = await daemon.client.get(
        "/api/v1/openapi.json", headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    assert r.status_code == 200
    document = r.json()
    assert document["openapi"].startswith("3.")
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    served = {
        (route.method, re.sub(r"\{(\w+)\}", r"{\1}", route.resource.canonical))
        for route in daemon.daemon.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/v1/")
        and route.method != "HEAD"
    }
    assert documented == served


async def test_the_document_needs_the_token_like_the_rest(daemon: Running) -> None:
    assert (await daemon.client.get("/api/v1/openapi.json")).status_code == 401
