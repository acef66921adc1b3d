"""The Slack app manifests in deploy/slack/: valid against Slack's own app-manifest JSON schema,
and saying what remediator needs, field by field.

manifest.schema.1.0.0.json is slackapi/manifest-schema's schemas/manifest.schema.1.0.0.json
(MIT, manifest.schema.LICENSE), at commit c50cfa8508ff1017344550a5e5fb29a1416e5b98: the schema
Slack's CLI validates manifests with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from remediator.config import Config, SlackConfig
from remediator.schema import Secret
from remediator.server import Daemon

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "slack"
SCHEMA = json.loads((Path(__file__).parent / "manifest.schema.1.0.0.json").read_text("utf-8"))
HTTP = "manifest.yaml"
SOCKET = "manifest-socket-mode.yaml"
# what the code calls: chat.postMessage and chat.update (chat:write), usergroups.users.list
# (usergroups:read), and the slash command (commands); auth.test needs no scope
SCOPES = ["chat:write", "channels:history", "usergroups:read", "commands"]


def manifest(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((MANIFESTS / name).read_text(encoding="utf-8"))
    return loaded


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


@pytest.mark.parametrize("name", [HTTP, SOCKET])
def test_the_manifest_is_valid_for_slack(name: str) -> None:
    assert schema_errors(manifest(name)) == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"display_information": {"name": "x" * 36}}, "display_information.name"),
        ({"features": {"slash_commands": [{"command": "remediate"}]}}, "features.slash_commands.0"),
        ({"settings": {"interactivity": {"request_url": "https://x"}}}, "settings.interactivity"),
        ({"oauth_config": {"scopes": {"bots": ["chat:write"]}}}, "oauth_config.scopes"),
    ],
)
def test_the_schema_has_teeth(change: dict[str, Any], where: str) -> None:
    broken = manifest(HTTP) | change
    assert any(e.startswith(where) for e in schema_errors(broken)), schema_errors(broken)


@pytest.mark.parametrize("name", [HTTP, SOCKET])
def test_the_bot_has_the_scopes_remediator_uses_and_no_more(name: str) -> None:
    assert manifest(name)["oauth_config"]["scopes"] == {"bot": SCOPES}
    assert manifest(name)["features"]["bot_user"]["display_name"] == "remediator"


@pytest.mark.parametrize("name", [HTTP, SOCKET])
def test_each_scope_says_why(name: str) -> None:
    """A comment on the line before each scope, in the file people paste."""
    lines = (MANIFESTS / name).read_text(encoding="utf-8").splitlines()
    for scope in SCOPES:
        at = lines.index(f"      - {scope}")
        assert lines[at - 1].strip().startswith("# "), scope


@pytest.mark.parametrize("name", [HTTP, SOCKET])
def test_the_slash_command_is_the_configs_default(name: str) -> None:
    (command,) = manifest(name)["features"]["slash_commands"]
    assert command["command"] == SlackConfig().command == "/remediate"
    assert command["should_escape"] is False  # remediator reads raw user IDs in the text


async def served_routes(tmp_path: Path) -> set[str]:
    """The paths a daemon with Slack configured serves."""
    slack = SlackConfig(signing_secret=Secret("test-signing-secret", "test"))
    daemon = Daemon(Config(tmp_path / "remediator.yaml", store_path=tmp_path / "db", slack=slack))
    assert daemon.slack_app is not None
    await daemon.slack_app.close()
    return {r.resource.canonical for r in daemon.app.router.routes() if r.resource is not None}


async def test_http_mode_points_slack_at_remediators_slack_routes(tmp_path: Path) -> None:
    document = manifest(HTTP)
    (command,) = document["features"]["slash_commands"]
    interactivity = document["settings"]["interactivity"]
    assert document["settings"]["socket_mode_enabled"] is False
    assert interactivity["is_enabled"] is True
    served = await served_routes(tmp_path)
    for url in (command["url"], interactivity["request_url"]):
        assert url.startswith("https://remediator.example.com/slack/"), url
        assert url.removeprefix("https://remediator.example.com") in served, url


def test_socket_mode_needs_no_request_url() -> None:
    document = manifest(SOCKET)
    (command,) = document["features"]["slash_commands"]
    assert document["settings"]["socket_mode_enabled"] is True
    assert document["settings"]["interactivity"] == {"is_enabled": True}
    assert "url" not in command


def test_the_two_manifests_differ_only_in_how_slack_reaches_remediator() -> None:
    http, socket = manifest(HTTP), manifest(SOCKET)
    del http["features"]["slash_commands"][0]["url"], http["settings"]["interactivity"]
    del socket["settings"]["interactivity"]
    http["settings"]["socket_mode_enabled"] = True
    assert http == socket
