"""The `alertmanager_silence` kind against the real Alertmanager (Debian's
prometheus-alertmanager, started once for this module with clustering off): silences created,
seen through GET /api/v2/silences, expired; Alertmanager's own refusals; timeouts and retries."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from remediator.actions import alertmanager_silence as silence_kind
from remediator.actions.alertmanager_silence import SilenceAction
from remediator.actions.base import AttemptContext, AttemptResult, RenderContext
from remediator.errors import RenderError
from remediator.trust import default_tls
from tests.actions.kinds import actions_yaml, attempt_ctx, config_problems, load
from tests.conftest import StartDaemon, base_config
from tests.payloads import alert, notification
from tests.peers import alertmanager
from tests.standins import Recorder

pytestmark = pytest.mark.e2e

SINK_DOWN = ['alertname="ConnectorDown"', 'connector="{connector}"']
LAG = RenderContext(
    {"alertname": "HighReplicationLag", "connector": "postgres-sink-connector"},
    incident_id=7,
    rule="cdc-replication-lag",
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def am_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    async with alertmanager(tmp_path_factory.mktemp("alertmanager")) as url:
        yield url


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=default_tls()) as c:
        yield c


async def silences(client: httpx.AsyncClient, am_url: str) -> dict[str, dict[str, Any]]:
    response = await client.get(f"{am_url}/api/v2/silences")
    response.raise_for_status()
    return {s["id"]: s for s in response.json()}


Make = Callable[..., SilenceAction]


@pytest.fixture
def make(write_config: Callable[..., Path], am_url: str) -> Make:
    def build(url: str | None = None, **definition: Any) -> SilenceAction:
        spec = {"kind": "alertmanager_silence", "alertmanager": "am"} | definition
        action = load(write_config, {"am": url or am_url}, act=spec).actions["act"]
        assert isinstance(action, SilenceAction)
        return action

    return build


def create(make: Make, **more: Any) -> SilenceAction:
    return make(**{"operation": "create", "matchers": SINK_DOWN, "duration": "2h"} | more)


async def attempt(
    action: SilenceAction,
    client: httpx.AsyncClient,
    ctx: RenderContext = LAG,
    n: int = 1,
    key: str = "idem-key",
    timeout: float = 5.0,
) -> AttemptResult:
    return await action.attempt(action.prepare(ctx), AttemptContext(n, timeout, key, client))


# --- create -------------------------------------------------------------------------------------


async def test_create_a_silence_alertmanager_then_shows(
    make: Make, client: httpx.AsyncClient, am_url: str
) -> None:
    action = create(make)
    prepared = action.prepare(LAG)
    before = datetime.now(UTC)

    result = await action.attempt(prepared, attempt_ctx(client))

    assert result.ok, result.detail
    silence_id = json.loads(result.output)["silenceID"]
    found = (await silences(client, am_url))[silence_id]
    assert found["status"]["state"] == "active"
    assert found["matchers"] == [
        {"name": "alertname", "value": "ConnectorDown", "isRegex": False, "isEqual": True},
        {
            "name": "connector",
            "value": "postgres-sink-connector",
            "isRegex": False,
            "isEqual": True,
        },
    ]
    assert found["createdBy"] == "remediator"
    assert found["comment"] == (
        "remediator: rule cdc-replication-lag, incident 7 (idempotency key idem-key)"
    )
    ends = datetime.fromisoformat(found["endsAt"].replace("Z", "+00:00"))
    assert 7190 < (ends - before).total_seconds() < 7210
    assert result.detail == f"silence {silence_id} until {json.loads(result.output)['endsAt']}"
    assert action.describe(prepared) == (
        'silence {alertname="ConnectorDown", connector="postgres-sink-connector"} for 2h on am'
    )


async def test_regex_and_negative_matchers_and_an_escaped_label(
    make: Make, client: httpx.AsyncClient, am_url: str
) -> None:
    action = create(
        make,
        matchers=['alertname=~"ConnectorDown|HighReplicationLag"', 'connector=~"{connector}.*"',
                  'severity!="P3"', 'team!~"web|mobile"'],
    )  # fmt: skip
    ctx = RenderContext({"alertname": "DataMismatch", "connector": "sink.v2+(a)"})
    result = await attempt(action, client, ctx)
    found = (await silences(client, am_url))[json.loads(result.output)["silenceID"]]
    assert [(m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in found["matchers"]] == [
        ("alertname", "ConnectorDown|HighReplicationLag", True, True),
        ("connector", r"sink\.v2\+\(a\).*", True, True),  # the label matches only itself
        ("severity", "P3", False, False),
        ("team", "web|mobile", True, False),
    ]


async def test_a_custom_comment(make: Make, client: httpx.AsyncClient, am_url: str) -> None:
    action = create(make, comment="paused {connector} on lag; see incident {$incident_id}")
    result = await attempt(action, client)
    found = (await silences(client, am_url))[json.loads(result.output)["silenceID"]]
    assert found["comment"].startswith("paused postgres-sink-connector on lag; see incident 7 (")


async def test_a_retry_finds_the_silence_the_first_attempt_created(
    make: Make, client: httpx.AsyncClient, am_url: str
) -> None:
    """Alertmanager has no idempotency key: the first attempt's answer was lost, the retry finds
    its silence by the key in the comment instead of creating a second."""
    action = create(make)
    first = await attempt(action, client, n=1, key="retry-key")
    again = await attempt(action, client, n=2, key="retry-key")
    fresh = await attempt(action, client, n=1, key="other-key")
    assert json.loads(again.output)["silenceID"] == json.loads(first.output)["silenceID"]
    assert again.detail.endswith("exists: an earlier attempt created it")
    assert json.loads(fresh.output)["silenceID"] != json.loads(first.output)["silenceID"]
    mine = [s for s in (await silences(client, am_url)).values() if "retry-key" in s["comment"]]
    assert len(mine) == 1


# --- what is refused, by us and by Alertmanager ------------------------------------------------


async def test_alertmanager_refuses_a_silence_matching_the_empty_string(
    make: Make, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without our own check, Alertmanager answers 400, and that is final."""
    action = create(make, matchers=['connector="{connector}"'])
    monkeypatch.setattr(silence_kind, "_check_matchers", lambda *args: None)
    result = await attempt(action, client, RenderContext({"connector": ""}))
    assert (result.ok, result.retryable, result.status_code) == (False, False, 400)
    assert result.detail == (
        "HTTP 400: cannot create the silence on 'am': silence invalid: at least one matcher "
        "must not match the empty string"
    )


@pytest.mark.parametrize(
    ("matchers", "labels"),
    [
        (['connector="{connector}"'], {"connector": ""}),
        (['connector="{connector}"', 'team=~".*"'], {"connector": ""}),
        (['connector!="{connector}"'], {"connector": "sink"}),
    ],
)
def test_we_refuse_it_before_asking(
    make: Make, matchers: list[str], labels: dict[str, str]
) -> None:
    with pytest.raises(RenderError, match="matches the empty string"):
        create(make, matchers=matchers).prepare(RenderContext(labels))


def test_silencing_the_incidents_own_alert_is_refused_unless_meant(make: Make) -> None:
    own = ['alertname="HighReplicationLag"', 'connector="{connector}"']
    with pytest.raises(RenderError, match="would mute the incident's own alert"):
        create(make, matchers=own).prepare(LAG)
    prepared = create(make, matchers=own, silence_own_alert=True).prepare(LAG)
    assert len(prepared["matchers"]) == 2


# --- expire -------------------------------------------------------------------------------------


async def test_create_on_firing_expire_on_resolve_through_the_daemon(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    client: httpx.AsyncClient,
    am_url: str,
) -> None:
    actions = actions_yaml(
        silence={"kind": "alertmanager_silence", "alertmanager": "am", "operation": "create",
                 "matchers": SINK_DOWN, "duration": "1h"},
        unsilence={"kind": "alertmanager_silence", "alertmanager": "am", "operation": "expire",
                   "silence_id": "{$results.silence.silenceID}"},
    )  # fmt: skip
    rules = (
        "rules:\n  - {name: lag, match: '{alertname=\"HighReplicationLag\"}',\n"
        "     incident_key: [alertname, connector], tiers: [{actions: [silence]}],\n"
        "     on_resolved: [{action: unsilence, if_ran: [silence]}]}\n"
    )
    running = await start_daemon(write_config(base_config({"am": am_url}, actions + rules)))
    lag = alert("HighReplicationLag", connector="postgres-sink-connector")

    await running.post_alerts(notification(lag))
    await running.settle()
    [created] = (await running.api("/api/v1/actions"))["items"]
    silence_id = created["detail"].split("silence ", 2)[2].split(" ")[0]
    assert (await silences(client, am_url))[silence_id]["status"]["state"] == "active"

    await running.post_alerts(notification({**lag, "status": "resolved"}))
    await running.settle()
    expired, _ = (await running.api("/api/v1/actions"))["items"]
    assert (expired["action"], expired["status"]) == ("unsilence", "succeeded")
    assert expired["request"]["silence_id"] == silence_id
    assert (await silences(client, am_url))[silence_id]["status"]["state"] == "expired"


async def test_expiring_twice_is_fine(make: Make, client: httpx.AsyncClient, am_url: str) -> None:
    created = await attempt(create(make), client)
    silence_id = json.loads(created.output)["silenceID"]
    expire = make(operation="expire", silence_id=silence_id)
    first, second = await attempt(expire, client), await attempt(expire, client)
    assert (first.ok, second.ok) == (True, True)
    assert first.detail == f"silence {silence_id} expired"


@pytest.mark.parametrize(
    ("silence_id", "status", "detail"),
    [
        (
            "00000000-0000-4000-8000-000000000000",
            500,  # Alertmanager before 0.27; later ones answer 404
            "silence 00000000-0000-4000-8000-000000000000 not found on 'am'",
        ),
        ("not-a-uuid", 422, 'silenceID in path must be of type uuid: "not-a-uuid"'),
    ],
)
async def test_expiring_what_does_not_exist_is_final(
    make: Make, client: httpx.AsyncClient, silence_id: str, status: int, detail: str
) -> None:
    result = await attempt(make(operation="expire", silence_id=silence_id), client)
    assert (result.ok, result.retryable, result.status_code) == (False, False, status)
    assert result.detail.endswith(detail), result.detail


def test_expire_without_a_result_to_read_cannot_be_built(make: Make) -> None:
    expire = make(operation="expire", silence_id="{$results.silence.silenceID}")
    with pytest.raises(RenderError, match="no result from action 'silence'"):
        expire.prepare(LAG)


# --- transport ------------------------------------------------------------------------------------


async def test_a_silent_alertmanager_times_out_and_may_be_retried(
    make: Make, client: httpx.AsyncClient, recorder: Callable[..., Awaitable[Recorder]]
) -> None:
    slow = await recorder()
    slow.delay = 2.0
    result = await attempt(create(make, url=slow.server.url), client, timeout=0.2)
    assert result == AttemptResult(False, "timed out after 0.2s", retryable=True)


async def test_an_alertmanager_that_is_down_may_be_retried(
    make: Make, client: httpx.AsyncClient
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await attempt(create(make, url=f"http://127.0.0.1:{port}"), client)
    assert (result.ok, result.retryable) == (False, True)
    assert result.detail.startswith("ConnectError")


async def test_server_errors_are_retried(
    make: Make, client: httpx.AsyncClient, recorder: Callable[..., Awaitable[Recorder]]
) -> None:
    failing = await recorder(503)
    result = await attempt(create(make, url=failing.server.url), client)
    assert (result.ok, result.retryable, result.status_code) == (False, True, 503)


# --- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("definition", "problem"),
    [
        ({"operation": "mute"}, "actions.act.operation: invalid value 'mute'"),
        ({"operation": "create", "duration": "1h"}, "actions.act: missing required key 'matchers'"),
        (
            {"operation": "create", "matchers": SINK_DOWN},
            "actions.act: missing required key 'duration'",
        ),
        (
            {"operation": "create", "matchers": [], "duration": "1h"},
            "actions.act.matchers: give at least one matcher",
        ),
        (
            {"operation": "create", "matchers": ['{alertname="X"}'], "duration": "1h"},
            'actions.act.matchers[0]: expected one matcher like name="value"',
        ),
        (
            {"operation": "create", "matchers": ["a=b,c"], "duration": "1h"},
            "actions.act.matchers[0]: quote the value in 'a=b,c'",
        ),
        (
            {"operation": "create", "matchers": ['a=~".*"'], "duration": "1h"},
            'actions.act.matchers: every matcher of {a=~".*"} matches the empty string',
        ),
        (
            {"operation": "create", "matchers": ['a=~"("'], "duration": "1h"},
            "actions.act.matchers: ",
        ),
        (
            {"operation": "create", "matchers": SINK_DOWN, "duration": "0s"},
            "actions.act.duration: a silence needs a positive duration",
        ),
        (
            {"operation": "create", "matchers": SINK_DOWN, "duration": "1h", "silence_id": "x"},
            "actions.act.silence_id: only for operation expire",
        ),
        ({"operation": "expire"}, "actions.act: missing required key 'silence_id'"),
        (
            {"operation": "expire", "silence_id": "x", "duration": "1h"},
            "actions.act.duration: only for operation create",
        ),
        (
            {"operation": "expire", "silence_id": "x", "alertmanager": "nope"},
            "actions.act.alertmanager: unknown target 'nope'",
        ),
    ],
)
def test_config_errors(
    write_config: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    definition: dict[str, Any],
    problem: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = {"kind": "alertmanager_silence", "alertmanager": "am"} | definition
    [found] = config_problems(write_config, {"am": "http://127.0.0.1:9"}, act=spec)
    assert found.startswith(f"remediator.yaml: {problem}"), found
    assert re.search(r"\bact\b", found)
