"""Hostile label values, end to end through a live daemon: each reaches a URL path, a query, a
JSON body, an argv element, an SQL bind parameter, a Slack message and a log line exactly as
itself (encoded for where it lands, never interpreted); a value no store can hold is a 400.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote

import pytest

from remediator.safetext import OneLine
from tests.conftest import WEBHOOK_TOKEN, Running, StartDaemon, base_config, slack_config
from tests.payloads import alert, notification
from tests.slack_standin import SlackAPI
from tests.standins import Recorder

HOSTILE = [
    "../../admin",
    "a%2Fb",
    "user@evil.example",
    "x?admin=1",
    "x#frag",
    "line\r\nX-Injected: 1",
    "; rm -rf /",
    "$(touch /tmp/pwned)",
    "' OR 1=1 --",
    "{{ 7*7 }}",
    "{$incident_id}",
    "<!channel> <https://evil.example|click>",
    "ingestión 🚀",
]
WRITER = "import json, sys\nopen(sys.argv[1], 'a').write(json.dumps(sys.argv[2]) + '\\n')\n"


@pytest.fixture
async def daemon(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    recorder: Callable[..., Awaitable[Recorder]],
    slack_api: SlackAPI,
    tmp_path: Path,
) -> tuple[Running, Recorder, Path]:
    target = await recorder()
    argv_file, writer = tmp_path / "argv.jsonl", tmp_path / "writer.py"
    writer.write_text(WRITER)
    rules = f"""
actions:
  call:
    kind: http
    target: api
    method: POST
    path: /things/{{value}}
    query: {{q: "{{value}}"}}
    body: {{value: "{{value}}"}}
    retries: 0
  run:
    kind: exec
    argv: [{sys.executable}, {writer}, {argv_file}, "{{value}}"]
rules:
  - name: hostile
    match: '{{alertname="Hostile"}}'
    incident_key: [alertname, value]
    tiers:
      - actions: [call, run]
"""
    extra = "rule_files: [rules.yaml]\n" + slack_config(slack_api)
    config = write_config(base_config({"api": target.server.url}, extra), rules=rules)
    return await start_daemon(config), target, argv_file


@pytest.mark.parametrize("value", HOSTILE)
async def test_a_hostile_label_lands_exactly_as_itself(
    daemon: tuple[Running, Recorder, Path],
    slack_api: SlackAPI,
    caplog: pytest.LogCaptureFixture,
    value: str,
) -> None:
    running, target, argv_file = daemon
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(OneLine())
    r = await running.post_alerts(notification(alert("Hostile", value=value)))
    assert r.status_code == 200
    await running.settle()
    [seen] = target.server.requests("POST")
    assert seen.path == "/things/" + quote(value, safe="")  # one segment, whatever it holds
    assert unquote(seen.path.removeprefix("/things/")) == value
    assert parse_qs(seen.raw_query, keep_blank_values=True) == {"q": [value]}  # one parameter
    assert json.loads(seen.body) == {"value": value}
    assert [json.loads(line) for line in argv_file.read_text().splitlines()] == [value]
    assert all("\n" not in m and "\r" not in m for m in caplog.messages)  # one line each
    [ran] = [m for m in caplog.messages if m.startswith("run: ")]
    assert ran.startswith(f"run: succeeded: {sys.executable} ")
    assert ran.endswith(": exit 0")
    [called] = [m for m in caplog.messages if m.startswith("call: ")]
    assert f"/things/{quote(value, safe='')}?" in called  # the path as sent, encoded
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    texts = json.dumps(
        [m.text for m in slack_api.messages] + [m.blocks for m in slack_api.messages]
    )
    if value != escaped:
        assert json.dumps(value)[1:-1] not in texts  # never raw in a message


@pytest.mark.parametrize("value", ["a\x00b", "\ud800"])
async def test_a_value_no_store_can_hold_is_refused_with_400(
    daemon: tuple[Running, Recorder, Path], value: str
) -> None:
    running, target, _ = daemon
    body = json.dumps(notification(alert("Hostile", value=value))).encode()  # \u escapes
    r = await running.client.post(
        "/alerts",
        content=body,
        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["error"].startswith("alerts[0].labels.value: contains")
    await running.settle()
    assert target.server.requests() == []
