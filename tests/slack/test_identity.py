"""auth.test at start, against the Slack stand-in: the bot's identity in the log when the token
works; an error naming the fix and a /readyz warning when Slack refuses it; retries through an
outage. And the fix named in the log for the errors Slack answers most often at setup."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from remediator.slack.fixes import explain
from remediator.slack.identity import TokenCheck
from tests.conftest import Running, StartDaemon, base_config, slack_config
from tests.payloads import alert, notification
from tests.slack_standin import TOKEN, SlackAPI
from tests.standins import Recorder

RULES = """
actions:
  pause: {kind: http, target: t, method: PUT, path: /pause, retries: 0}
rules:
  - name: r
    match: '{alertname="X"}'
    tiers: [{actions: [pause]}]
"""


@pytest.fixture
async def config(
    write_config: Callable[..., Path],
    slack_api: SlackAPI,
    recorder: Callable[..., Awaitable[Recorder]],
) -> Path:
    target = await recorder()
    return write_config(
        base_config(
            {"t": target.server.url}, "rule_files: [rules.yaml]\n" + slack_config(slack_api)
        ),
        rules=RULES,
    )


async def checked(running: Running) -> TokenCheck:
    check = running.daemon.slack_token
    assert check is not None
    async with asyncio.timeout(5):
        while not (check.identity or check.problem):
            await asyncio.sleep(0.01)
    return check


async def test_a_working_token_logs_the_bots_identity(
    config: Path, start_daemon: StartDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "remediator.slack.identity")
    running = await start_daemon(config)
    check = await checked(running)
    assert check.identity["user_id"] == "U0BOT"
    assert check.problem == ""
    assert (
        "slack: bot token works: @remediator (user U0BOT, bot B0BOT) in workspace Example "
        "(T0TEAM, https://example.slack.com/)"
    ) in caplog.messages
    ready = await running.client.get("/readyz")
    assert (ready.status_code, ready.json()) == (
        200,
        {"status": "ready", "rules": 1, "dry_run": False, "killswitch": False},
    )


async def test_a_refused_token_is_logged_with_its_fix_and_shown_on_readyz(
    config: Path,
    start_daemon: StartDaemon,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_SLACK_TOKEN", "xoxb-revoked")
    running = await start_daemon(config)
    check = await checked(running)
    assert check.identity == {}
    problem = (
        "slack: auth.test refused the bot token: invalid_auth: the bot token is wrong or no "
        "longer valid: copy the Bot User OAuth Token (xoxb-...) from the app's OAuth & "
        "Permissions page into slack.bot_token_env or slack.bot_token_file (reinstalling the "
        "app issues a new one)"
    )
    assert check.problem == problem
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        f"{problem}; no message reaches Slack until it is fixed"
    ]
    assert "xoxb-revoked" not in caplog.text
    # Slack is delivery only: the daemon stays ready and says why messages will not arrive
    ready = await running.client.get("/readyz")
    assert (ready.status_code, ready.json()) == (
        200,
        {
            "status": "ready",
            "rules": 1,
            "warnings": [problem],
            "dry_run": False,
            "killswitch": False,
        },
    )


async def test_an_outage_is_retried_until_slack_answers(
    slack_api: SlackAPI, caplog: pytest.LogCaptureFixture
) -> None:
    base_url = slack_api.base_url  # the same port once it is back
    await slack_api.stop()
    check = TokenCheck(TOKEN, base_url, retry=0.05)
    check.start()
    try:
        async with asyncio.timeout(5):
            while not any("could not check the bot token" in m for m in caplog.messages):
                await asyncio.sleep(0.01)
        assert (check.identity, check.problem) == ({}, "")  # no verdict on the token itself
        slack_api.failures = 2  # back, but answering 500 at first: still an outage
        await slack_api.start()
        async with asyncio.timeout(5):
            while not check.identity:
                await asyncio.sleep(0.01)
    finally:
        await check.stop()
    assert check.identity["user"] == "remediator"
    assert check.problem == ""
    assert ("auth.test", 500) in slack_api.calls
    assert "HTTP 500" in caplog.text


async def test_stop_ends_the_retries(slack_api: SlackAPI) -> None:
    base_url = slack_api.base_url
    await slack_api.stop()
    check = TokenCheck(TOKEN, base_url, retry=60)
    check.start()
    await asyncio.sleep(0.1)
    async with asyncio.timeout(1):
        await check.stop()


# -- the fix, named in the log -------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "needed", "fix"),
    [
        ("not_in_channel", "", "/invite @remediator"),
        ("channel_not_found", "", "the ID, C..., is at the bottom of About"),
        ("missing_scope", "usergroups:read", "reinstall the app to the workspace (needed: "),
        ("invalid_auth", "", "copy the Bot User OAuth Token (xoxb-...)"),
        ("not_allowed_token_type", "", "the xapp- app-level token goes in slack.app_token_*"),
    ],
)
def test_explain_names_the_fix(error: str, needed: str, fix: str) -> None:
    assert explain(error, needed).startswith(f"{error}: ")
    assert fix in explain(error, needed)


def test_an_error_without_a_known_fix_is_itself() -> None:
    assert explain("msg_too_long") == "msg_too_long"


async def test_not_in_channel_is_logged_with_the_fix(
    config: Path,
    start_daemon: StartDaemon,
    slack_api: SlackAPI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slack_api.outside.add("C0ALERTS")
    running = await start_daemon(config)
    await running.post_alerts(notification(alert("X")))
    async with asyncio.timeout(10):
        while not any("not_in_channel" in m for m in caplog.messages):
            await running.settle()
            await running.daemon.outbox.drain()
            await asyncio.sleep(0.02)
    line = next(m for m in caplog.messages if "not_in_channel" in m)
    assert line.startswith("slack refused message ")
    assert line.endswith(
        "not_in_channel: the bot is not a member of the channel: in Slack, open the channel "
        "and type /invite @remediator (or the bot's display name)"
    )


async def test_missing_scope_names_the_scope_to_add(
    config: Path,
    start_daemon: StartDaemon,
    slack_api: SlackAPI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slack_api.scopes.discard("chat:write")
    running = await start_daemon(config)
    await running.post_alerts(notification(alert("X")))
    async with asyncio.timeout(10):
        while not any("missing_scope" in m for m in caplog.messages):
            await running.settle()
            await running.daemon.outbox.drain()
            await asyncio.sleep(0.02)
    line = next(m for m in caplog.messages if "missing_scope" in m)
    assert "OAuth & Permissions > Bot Token Scopes" in line
    assert line.endswith("(needed: chat:write)")
