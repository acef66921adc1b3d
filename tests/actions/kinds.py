"""Helpers shared by the action-kind tests: actions read through the real config path, and a
daemon that runs one action when an alert fires."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from remediator.actions.base import AttemptContext
from remediator.config import Config, load_config
from remediator.errors import ConfigError
from tests.conftest import StartDaemon, base_config
from tests.payloads import alert, notification


def actions_yaml(**definitions: dict[str, Any]) -> str:
    """`actions:` with each definition as JSON (JSON is YAML, so no quoting surprises)."""
    lines = ["actions:"] + [f"  {name}: {json.dumps(d)}" for name, d in definitions.items()]
    return "\n".join(lines) + "\n"


def load(
    write_config: Callable[..., Path],
    targets: dict[str, str],
    extra: str = "",
    **definitions: dict[str, Any],
) -> Config:
    return load_config(write_config(base_config(targets, extra + actions_yaml(**definitions))))


def config_problems(
    write_config: Callable[..., Path],
    targets: dict[str, str],
    extra: str = "",
    **definitions: dict[str, Any],
) -> list[str]:
    """The problems a config with these actions reports; it must report some."""
    with pytest.raises(ConfigError) as info:
        load(write_config, targets, extra, **definitions)
    return info.value.problems


def attempt_ctx(client: httpx.AsyncClient, timeout: float = 5.0, n: int = 1) -> AttemptContext:
    return AttemptContext(n, timeout, "idem-key", client)


async def run_once(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    targets: dict[str, str],
    definition: dict[str, Any],
    extra: str = "",
    **labels: str,
) -> dict[str, Any]:
    """Start a daemon whose one rule runs `definition` when alert X fires; fire it; return the
    recorded action (status, detail, attempts, request) once it finished."""
    rule = "rules:\n  - {name: r, match: '{alertname=\"X\"}', tiers: [{actions: [act]}]}\n"
    config = write_config(base_config(targets, extra + actions_yaml(act=definition) + rule))
    running = await start_daemon(config)
    response = await running.post_alerts(
        notification(alert("X", "firing", ends_at=None, annotations=None, **labels))
    )
    assert response.status_code == 200, response.text
    await running.settle()
    [action] = (await running.api("/api/v1/actions"))["items"]
    return dict(action)


FAST_RETRIES = {"backoff": {"initial": "10ms", "max": "20ms"}}
