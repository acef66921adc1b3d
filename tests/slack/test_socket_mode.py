"""Socket Mode against a stand-in of Slack's socket-mode websocket on 127.0.0.1: the daemon opens
the connection with the app-level token (apps.connections.open), Slack says hello, and every
envelope (a slash command, a click) is acknowledged within Slack's three seconds, a command's
reply inside the acknowledgement; who may use a verb is checked as over HTTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from remediator.config import load_config
from remediator.errors import ConfigError
from tests.conftest import Running, StartDaemon, base_config
from tests.slack_standin import APP_TOKEN, SlackAPI, command
from tests.standins import Recorder

RULES = """
actions:
  pause: {kind: http, target: t, method: PUT, path: /pause, retries: 0}
rules:
  - name: r
    match: '{alertname="X"}'
    tiers: [{actions: [pause]}]
"""
ACK_WITHIN = 3.0  # seconds: Slack retries an envelope acknowledged later


def socket_slack(api: SlackAPI, extra: str = "") -> str:
    return (
        "slack:\n"
        "  bot_token_env: TEST_SLACK_TOKEN\n"
        "  app_token_env: TEST_SLACK_APP_TOKEN\n"
        "  socket_mode: true\n"
        f"  base_url: {api.base_url}\n"
        "  channel: '#alerts'\n"
        "  access: {killswitch: {users: [U0ADMIN]}, approve: {users: [U0ADMIN]}}\n" + extra
    )


@pytest.fixture(autouse=True)
def _app_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SLACK_APP_TOKEN", APP_TOKEN)


@pytest.fixture
async def config(
    write_config: Callable[..., Path],
    slack_api: SlackAPI,
    recorder: Callable[..., Awaitable[Recorder]],
) -> Path:
    target = await recorder()
    return write_config(
        base_config(
            {"t": target.server.url}, "rule_files: [rules.yaml]\n" + socket_slack(slack_api)
        ),
        rules=RULES,
    )


async def connected(config: Path, start_daemon: StartDaemon, slack_api: SlackAPI) -> Running:
    running = await start_daemon(config)
    async with asyncio.timeout(10):
        while not slack_api.sockets:
            await asyncio.sleep(0.01)
    return running


def slash(text: str, user: str = "U0ADMIN", response_url: str = "") -> dict[str, Any]:
    """A slash command's payload as Socket Mode carries it: the HTTP form's fields."""
    return dict(parse_qsl(command(text, user, response_url).decode()))


async def ack_of(slack_api: SlackAPI, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    envelope_id, sent = await slack_api.send_envelope(kind, payload)
    when, ack = await slack_api.acked(envelope_id, timeout=ACK_WITHIN)
    assert when - sent < ACK_WITHIN
    assert ack["envelope_id"] == envelope_id
    return ack


async def test_the_daemon_connects_with_the_app_token(
    config: Path,
    start_daemon: StartDaemon,
    slack_api: SlackAPI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "remediator.slack.socket_mode")
    await connected(config, start_daemon, slack_api)
    assert ("apps.connections.open", 200) in slack_api.calls
    async with asyncio.timeout(5):
        while not any("Socket Mode connected" in m for m in caplog.messages):
            await asyncio.sleep(0.01)
    assert APP_TOKEN not in caplog.text


async def test_a_slash_command_is_answered_in_the_acknowledgement(
    config: Path, start_daemon: StartDaemon, slack_api: SlackAPI
) -> None:
    await connected(config, start_daemon, slack_api)
    ack = await ack_of(slack_api, "slash_commands", slash("status"))
    assert ack["payload"]["response_type"] == "ephemeral"
    assert "kill switch" in ack["payload"]["text"].lower()


async def test_a_verb_the_user_may_not_use_is_refused_and_audited(
    config: Path, start_daemon: StartDaemon, slack_api: SlackAPI
) -> None:
    running = await connected(config, start_daemon, slack_api)
    ack = await ack_of(slack_api, "slash_commands", slash("killswitch on", user="U0STRANGER"))
    assert ack["payload"]["text"].startswith(":no_entry_sign: You are not allowed to `killswitch`")
    history = (await running.daemon.store.history(5, None)).items
    assert any(h["event"] == "slack_refused" for h in history)
    assert not (await running.daemon.control.killswitch()).on


async def test_an_allowed_verb_acts(
    config: Path, start_daemon: StartDaemon, slack_api: SlackAPI
) -> None:
    running = await connected(config, start_daemon, slack_api)
    ack = await ack_of(slack_api, "slash_commands", slash("killswitch on maintenance"))
    assert "on" in ack["payload"]["text"].lower()
    assert (await running.daemon.control.killswitch()).on


UNSTORABLE: list[tuple[dict[str, Any], str]] = [
    ({"text": "killswitch on \ud800"}, "text: contains a lone surrogate (not valid Unicode)"),
    ({"text": "killswitch on a\x00b"}, "text: contains a NUL character"),
    ({"user_id": 2**70}, "user_id: integer outside the signed 64-bit range"),
    ({"user_id": 42}, "user_id: expected a string, got int"),
    ({"text": ["killswitch", "on"]}, "text: expected a string, got list"),
    (
        {"channel_id": {"\ud800": "C0"}},
        "channel_id: a key contains a lone surrogate (not valid Unicode)",
    ),
    ({"team_id": 2**64}, "team_id: integer outside the signed 64-bit range"),
]


async def test_a_command_the_store_cannot_hold_is_refused_in_the_acknowledgement(
    config: Path, start_daemon: StartDaemon, slack_api: SlackAPI
) -> None:
    """Over the websocket a command is JSON, not a form: it is held to what an HTTP form may
    carry (the fields a command reads are strings, and nothing the store cannot hold). Before,
    a lone surrogate in a kill switch's reason failed its write and the envelope was never
    acknowledged."""
    running = await connected(config, start_daemon, slack_api)
    for change, problem in UNSTORABLE:
        ack = await ack_of(slack_api, "slash_commands", {**slash("killswitch on"), **change})
        assert ack["payload"] == {
            "response_type": "ephemeral",
            "text": f":warning: this command cannot be read: {problem}",
        }, change
    assert not (await running.daemon.control.killswitch()).on
    await ack_of(slack_api, "slash_commands", slash("killswitch on maintenance"))
    assert (await running.daemon.control.killswitch()).on


async def test_a_click_is_acknowledged_and_answered_through_its_response_url(
    config: Path, start_daemon: StartDaemon, slack_api: SlackAPI
) -> None:
    await connected(config, start_daemon, slack_api)
    click = {
        "type": "block_actions",
        "user": {"id": "U0ADMIN", "username": "u0admin"},
        "team": {"id": "T0TEAM"},
        "api_app_id": "A0APP",
        "response_url": slack_api.response_url("click"),
        "container": {"type": "message", "message_ts": "1.000001", "channel_id": "C0ALERTS"},
        "actions": [{"action_id": "approve", "value": "4242", "type": "button"}],
    }
    ack = await ack_of(slack_api, "interactive", click)
    assert "payload" not in ack  # a bare acknowledgement: the message is updated by the outbox
    async with asyncio.timeout(5):
        while not slack_api.responses.get("click"):
            await asyncio.sleep(0.01)
    (reply,) = slack_api.responses["click"]
    assert reply["text"].startswith(":warning:")
    assert "4242" in reply["text"]


async def test_other_envelopes_are_acknowledged_bare(
    config: Path, start_daemon: StartDaemon, slack_api: SlackAPI
) -> None:
    await connected(config, start_daemon, slack_api)
    ack = await ack_of(slack_api, "events_api", {"event": {"type": "app_mention"}})
    assert ack == {"envelope_id": ack["envelope_id"]}


async def test_without_a_signing_secret_there_are_no_http_endpoints(
    config: Path, start_daemon: StartDaemon, slack_api: SlackAPI
) -> None:
    running = await connected(config, start_daemon, slack_api)
    response = await running.client.post("/slack/commands", content=b"text=status")
    assert response.status_code == 404


async def test_a_start_does_not_wait_for_slack(
    config: Path, start_daemon: StartDaemon, slack_api: SlackAPI
) -> None:
    await slack_api.stop()
    async with asyncio.timeout(5):
        running = await start_daemon(config)
    ready = await running.client.get("/readyz")
    assert ready.status_code == 200


def test_socket_mode_needs_the_app_token(
    write_config: Callable[..., Path], slack_api: SlackAPI
) -> None:
    slack = socket_slack(slack_api).replace("  app_token_env: TEST_SLACK_APP_TOKEN\n", "")
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(base_config({}, slack)))
    (problem,) = caught.value.problems
    assert problem.endswith(
        "remediator.yaml: slack: socket_mode needs app_token_env or app_token_file (the xapp- "
        "app-level token, scope connections:write) and the bot token"
    )
