"""GET /api/v1/openapi.json: the document describes every /api/v1 route the daemon serves."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from remediator import openapi
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN, Running, StartDaemon, base_config
from tests.peers import free_port, start_serve


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


# -- schemathesis against a live daemon process --------------------------------------------------

SCHEMA = schemathesis.openapi.from_dict(openapi.document())
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("openapi")
    (workdir / "rules.yaml").write_text(
        "rules:\n  - name: r\n    match: '{alertname=\"A\"}'\n    tiers: [{name: notify}]\n"
    )
    config = workdir / "remediator.yaml"
    config.write_text(base_config({"t": "http://127.0.0.1:9"}, "rule_files: [rules.yaml]\n"))
    port = free_port()
    proc = start_serve(
        config, port, {"TEST_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "TEST_API_TOKEN": API_TOKEN}
    )
    yield f"http://127.0.0.1:{port}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@SCHEMA.parametrize()
@settings(
    max_examples=int(os.environ.get("REMEDIATOR_SCHEMATHESIS_EXAMPLES", "12")),
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_as_documented(case: schemathesis.Case[Any], live: str) -> None:
    """Every operation, with generated valid and invalid input: never a 5xx, a documented status,
    JSON as documented."""
    case.call_and_validate(
        base_url=live, headers={"Authorization": f"Bearer {API_TOKEN}"}, checks=CHECKS
    )
