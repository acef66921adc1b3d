"""No secret leaves remediator: a full scenario against a daemon process (alerts, actions that
fail and succeed, an SQL action whose database is down, Slack commands and clicks, API reads,
malformed and hostile requests), then every log line, audit row, stored byte, API answer, Slack
message and error body is searched for each secret.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import base_config, slack_config
from tests.payloads import alert, notification
from tests.peers import DaemonProcess
from tests.slack_standin import TOKEN as SLACK_TOKEN
from tests.slack_standin import SlackAPI, click, command, signed
from tests.standins import Recorder

WEBHOOK = "whk-0d1e5ec2e7-webhook"
BASIC = "bsc-59d1e5ec2e7-password"
API = "api-7e5ec2e7-token"
SIGNING = "sgn-3e5ec2e7-signing"
TARGET_TOKEN = "tgt-1e5ec2e7-bearer"
TARGET_PASSWORD = "tgp-2e5ec2e7-password"
SQL_PASSWORD = "sqp-4e5ec2e7-password"
SECRETS = [WEBHOOK, BASIC, API, SIGNING, SLACK_TOKEN, TARGET_TOKEN, TARGET_PASSWORD, SQL_PASSWORD]

RULES = """
actions:
  call_api: {kind: http, target: api, method: POST, path: "/restart/{job}", retries: 1}
  call_admin: {kind: http, target: admin, method: PUT, path: "/flag/{job}", retries: 0}
  pause_db:
    kind: sql
    dsn_env: SECRET_DSN
    statement: UPDATE settings SET paused = true WHERE job = $1
    params: ["{job}"]
    retries: 0
    timeout: 2s
rules:
  - name: leak
    match: '{alertname="Leak"}'
    incident_key: [alertname, job]
    tiers:
      - actions: [call_api, call_admin, pause_db]
"""


def _config(root: Path, api: Recorder, admin: Recorder, slack: SlackAPI) -> Path:
    (root / "rules.yaml").write_text(RULES)
    main = base_config({}, "rule_files: [rules.yaml]\n" + slack_config(slack, ACCESS)).replace(
        "targets:\n  {}\n",
        f"""targets:
  api: {{url: "{api.server.url}", bearer_token_env: SECRET_TARGET_TOKEN}}
  admin:
    url: "{admin.server.url}"
    basic_auth: {{username: ops, password_env: SECRET_TARGET_PASSWORD}}
""",
    )
    main = main.replace(
        "webhook_auth: {bearer_token_env: TEST_WEBHOOK_TOKEN}",
        "webhook_auth: {bearer_token_env: TEST_WEBHOOK_TOKEN, "
        "basic_auth: {username: am, password_env: SECRET_BASIC}}",
    )
    path = root / "remediator.yaml"
    path.write_text(main)
    return path


ACCESS = """
access:
  '*': {users: [U0ADMIN]}
verbs:
  pause: {api: call_api}
"""


class Capture:
    """Everything that left the daemon, as text."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.api: dict[str, object] = {}

    def answer(self, r: httpx.Response) -> httpx.Response:
        self.parts.append(f"{r.status_code} {dict(r.headers)} {r.text}")
        return r


@pytest.fixture
async def scenario(
    tmp_path: Path, recorder: Callable[..., Awaitable[Recorder]], slack_api: SlackAPI
) -> tuple[DaemonProcess, Capture, SlackAPI]:
    api, admin = await recorder(), await recorder()
    api.script = [503]  # one failure, then the retry succeeds
    daemon = DaemonProcess(_config(tmp_path, api, admin, slack_api))
    daemon.env |= {
        "TEST_WEBHOOK_TOKEN": WEBHOOK,
        "TEST_API_TOKEN": API,
        "TEST_SLACK_TOKEN": SLACK_TOKEN,
        "TEST_SLACK_SECRET": SIGNING,
        "SECRET_BASIC": BASIC,
        "SECRET_TARGET_TOKEN": TARGET_TOKEN,
        "SECRET_TARGET_PASSWORD": TARGET_PASSWORD,
        "SECRET_DSN": f"postgresql://ops:{SQL_PASSWORD}@127.0.0.1:9/ops",
    }
    await daemon.start()
    capture = Capture()
    try:
        await _run(daemon, capture)
    finally:
        await daemon.close()
    return daemon, capture, slack_api


async def _run(daemon: DaemonProcess, capture: Capture) -> None:
    c, keep = daemon.client, capture.answer
    json_type = {"Content-Type": "application/json"}
    bearer = {"Authorization": f"Bearer {WEBHOOK}", **json_type}
    basic = base64.b64encode(f"am:{BASIC}".encode()).decode()
    body = json.dumps(notification(alert("Leak", job="ingest"))).encode()
    keep(await c.post("/alerts", content=body, headers=bearer))
    keep(
        await c.post(
            "/alerts", content=body, headers={"Authorization": f"Basic {basic}", **json_type}
        )
    )
    # malformed and hostile requests, several carrying a secret where it does not belong
    keep(await c.post("/alerts", content=body, headers={"Authorization": f"Bearer {WEBHOOK}x"}))
    keep(
        await c.post(
            "/alerts", content=gzip.compress(body), headers={**bearer, "Content-Encoding": "gzip"}
        )
    )
    keep(await c.post("/alerts", content=b"{" + body, headers=bearer))
    keep(await c.post("/alerts", content=b"x" * (2 << 20), headers=bearer))
    keep(await c.get("/api/v1/incidents", headers={"Authorization": f"Bearer {API}x"}))
    keep(await c.get(f"/api/v1/nowhere/{API}", headers={"Authorization": f"Bearer {API}"}))
    await _raw(
        daemon, f"POST /alerts HTTP/1.1\r\nAuthorization: Bearer {WEBHOOK}\x01\r\n\r\n", capture
    )
    await _raw(
        daemon,
        f"GET /api/v1/incidents HTTP/1.1\r\nAuthorization: Bearer {API}\r\nX: \x00\r\n\r\n",
        capture,
    )
    # Slack: commands, a manual action, a click, a forged request
    for text in ("status", "history 50", "pause api", "killswitch status"):
        form = command(text)
        keep(await c.post("/slack/commands", content=form, headers=signed(form, secret=SIGNING)))
    form = click("approve", "1")
    keep(await c.post("/slack/interactions", content=form, headers=signed(form, secret=SIGNING)))
    keep(
        await c.post("/slack/commands", content=command("status"), headers=signed(b"", secret="x"))
    )
    await asyncio.sleep(3)  # actions, retries, the SQL attempt and Slack deliveries
    auth = {"Authorization": f"Bearer {API}"}
    for path in ("/incidents", "/incidents/1", "/actions", "/history", "/mutes?all=1",
                 "/approvals?status=all", "/circuits", "/killswitch", "/openapi.json"):  # fmt: skip
        capture.api[path] = keep(await c.get(f"/api/v1{path}", headers=auth)).json()
    keep(await c.get("/metrics"))
    keep(await c.get("/readyz"))


async def _raw(daemon: DaemonProcess, request: str, capture: Capture) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    writer.write(request.encode())
    await writer.drain()
    async with asyncio.timeout(5):
        capture.parts.append((await reader.read()).decode(errors="replace"))
    writer.close()


async def test_no_secret_appears_anywhere(
    scenario: tuple[DaemonProcess, Capture, SlackAPI],
) -> None:
    daemon, capture, slack = scenario
    actions = capture.api["/actions"]
    assert isinstance(actions, dict)
    assert actions["items"], "the scenario ran no action"
    assert any(m.text for m in slack.messages), "the scenario sent nothing to Slack"
    state = daemon.config.parent / "state"
    stored = b"".join(p.read_bytes() for p in state.iterdir())  # database, WAL: the audit too
    slack_text = json.dumps(
        [[m.text, m.blocks, m.attachments, m.updates] for m in slack.messages] + [slack.responses]
    )
    places = {
        "log": daemon.log(),
        "answers and error bodies": "\n".join(capture.parts),
        "Slack": slack_text,
    }
    for secret in SECRETS:
        for where, text in places.items():
            assert secret not in text, f"{secret} in the {where}"
        assert secret.encode() not in stored, f"{secret} in the store"
