"""Paging through the running daemon: the shipped rule packs, Slack's Web API stand-in and the
PagerDuty and Opsgenie stand-ins (tests/pager_standins.py) on 127.0.0.1, on a fake clock."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from remediator.clock import FakeClock
from tests.conftest import API_TOKEN, StartDaemon, base_config, slack_config
from tests.packs.test_ingestion import Targets, error_rate
from tests.packs.test_ingestion import targets as targets
from tests.packs.world import T0, Pack, firing, resolved, start
from tests.pager_standins import GENIE_KEY, ROUTING_KEY, OpsgenieAPI, PagerDutyAPI
from tests.payloads import notification
from tests.slack_standin import SlackAPI, command, signed
from tests.standins import KafkaConnect, Recorder

KEY = "remediator-incident-1"
SINK = "postgres-sink-connector"


@pytest.fixture
async def pagerduty() -> AsyncIterator[PagerDutyAPI]:
    api = PagerDutyAPI()
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
async def opsgenie() -> AsyncIterator[OpsgenieAPI]:
    api = OpsgenieAPI()
    await api.start()
    yield api
    await api.stop()


@pytest.fixture(autouse=True)
def _pager_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PD_KEY", ROUTING_KEY)
    monkeypatch.setenv("TEST_GENIE_KEY", GENIE_KEY)


def paging(pagerduty: PagerDutyAPI, opsgenie: OpsgenieAPI, levels: str) -> str:
    return textwrap.dedent(
        f"""\
        paging:
          pagers:
            pd: {{kind: pagerduty, url: '{pagerduty.url}', routing_key_env: TEST_PD_KEY}}
            og: {{kind: opsgenie, url: '{opsgenie.url}', api_key_env: TEST_GENIE_KEY}}
          retry: {{initial: 1s, max: 10s}}
          policies:
            on-call:
              levels:
        """
    ) + textwrap.indent(textwrap.dedent(levels), "        ")


ACCESS = "access: {'*': {users: [U0ADMIN]}}\n"
INGESTION_LEVELS = """\
- {mention: S0ONCALL, pagers: [pd]}
- {after: 30m, mention: S0LEAD, pagers: [og]}
"""


class Desk:
    """A pack running with Slack and pagers, and shortcuts to drive and read them."""

    def __init__(self, pack: Pack, slack: SlackAPI) -> None:
        self.pack, self.slack = pack, slack
        self.daemon = pack.running.daemon

    async def settle(self) -> None:
        await self.pack.running.settle()
        await self.daemon.pager_desk.drain()
        await self.daemon.outbox.drain()

    async def fire(self, *alerts: dict[str, Any]) -> None:
        await self.pack.fire(*alerts)
        await self.settle()

    async def later(self, seconds: float) -> None:
        await self.pack.later(seconds)
        await self.settle()

    async def slash(self, text: str) -> str:
        body = command(text)
        headers = signed(body, int(self.pack.clock.now()))
        r = await self.pack.running.client.post("/slack/commands", content=body, headers=headers)
        assert r.status_code == 200, r.text
        await self.settle()
        return str(r.json()["text"])

    def thread(self) -> list[str]:
        [parent] = self.slack.parents()
        return [m.text for m in self.slack.thread(parent)]

    def parent(self) -> str:
        [parent] = self.slack.parents()
        return parent.current_text

    async def audit(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        history = (await self.daemon.store.history(1000, None)).items
        return [(e["event"], e["detail"]) for e in reversed(history) if e["kind"] == kind]


async def desk_for(
    pack_name: str,
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    urls: dict[str, str],
    slack: SlackAPI,
    extra: str,
) -> Desk:
    pack = await start(write_config, start_daemon, pack_name, urls, extra)
    return Desk(pack, slack)


async def make_ingestion(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    targets: Targets,
    slack_api: SlackAPI,
    pagerduty: PagerDutyAPI,
    opsgenie: OpsgenieAPI,
    tmp_path: Path,
) -> Desk:
    (tmp_path / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
        f"clusters: [{{name: c, cluster: {{server: '{targets.kube.server.url}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
    )
    urls = {
        "ingestion-config": targets.config.server.url,
        "feature-flags": targets.flags.server.url,
    }
    extra = (
        "  ingestion-cluster: {kubernetes: {kubeconfig: kubeconfig}}\n"
        + slack_config(slack_api, ACCESS)
        + paging(pagerduty, opsgenie, INGESTION_LEVELS)
    )
    return await desk_for("ingestion", write_config, start_daemon, urls, slack_api, extra)


@pytest.fixture
async def ingestion(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    targets: Targets,
    slack_api: SlackAPI,
    pagerduty: PagerDutyAPI,
    opsgenie: OpsgenieAPI,
    tmp_path: Path,
) -> Desk:
    return await make_ingestion(
        write_config, start_daemon, targets, slack_api, pagerduty, opsgenie, tmp_path
    )


@pytest.fixture
async def ingestion_any(
    store_backend: str,
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    targets: Targets,
    slack_api: SlackAPI,
    pagerduty: PagerDutyAPI,
    opsgenie: OpsgenieAPI,
    tmp_path: Path,
) -> Desk:
    """The ingestion desk on each store backend (SQLite, then PostgreSQL)."""
    return await make_ingestion(
        write_config, start_daemon, targets, slack_api, pagerduty, opsgenie, tmp_path
    )


# --- the ingestion ladder -------------------------------------------------------------------------


async def test_the_ingestion_ladder_pages_once_and_the_page_follows_the_incident(
    ingestion_any: Desk, pagerduty: PagerDutyAPI, opsgenie: OpsgenieAPI
) -> None:
    ingestion = ingestion_any
    p2, p1, p0 = error_rate("0.07", "P2"), error_rate("0.12", "P1"), error_rate("0.25", "P0")

    await ingestion.fire(p2)  # 7 %: the team is told, nobody is paged
    assert pagerduty.events == []
    assert not any("<!subteam^S0ONCALL>" in text for text in ingestion.thread())

    await ingestion.fire(p2, p1)  # 12 %: the kill switch, and one page
    assert pagerduty.events == [("trigger", KEY)]
    [paged] = [t for t in ingestion.thread() if t.startswith(":pager:")]
    assert "<!subteam^S0ONCALL>" in paged
    assert "PAGED" in paged
    [alert] = pagerduty.alerts
    payload = alert.events[0]["payload"]
    assert (payload["severity"], payload["summary"][:3]) == ("error", "P1 ")

    await ingestion.fire(p2, p1, p0)  # 25 %: the same page, updated
    assert pagerduty.events == [("trigger", KEY), ("trigger", KEY)]
    assert len(pagerduty.alerts) == 1
    assert pagerduty.alerts[0].events[1]["payload"]["severity"] == "critical"

    answer = await ingestion.slash("ack 1")  # Slack's ack acknowledges the page
    assert "1" in answer
    assert pagerduty.events[-1] == ("acknowledge", KEY)
    assert pagerduty.alerts[0].status == "acknowledged"

    await ingestion.later(3600)  # acknowledged: the next level is never called
    assert opsgenie.events == []

    await ingestion.fire(resolved(p2), resolved(p1), resolved(p0))  # the page resolves
    assert pagerduty.events == [
        ("trigger", KEY),
        ("trigger", KEY),
        ("acknowledge", KEY),
        ("resolve", KEY),
    ]
    assert [a.status for a in pagerduty.alerts] == ["resolved"]
    assert [event for event, _ in await ingestion.audit("page")] == ["paged", "paged"]


async def test_the_kill_switch_runs_once_on_the_climb_to_rollback(
    ingestion: Desk,
    targets: Targets,
) -> None:
    """The shipped pack's rollback tier lists pause_ingestion again (runbook 4.2); the switch,
    set at 12 %, is not called a second time at 25 %, and Slack says PAUSED once."""
    await ingestion.fire(error_rate("0.12", "P1"))
    await ingestion.later(10)  # the verification reads the switch back: it holds
    await ingestion.fire(error_rate("0.12", "P1"), error_rate("0.25", "P0"))
    puts = [s for s in targets.config.server.seen if s.method == "PUT"]
    assert len(puts) == 1
    steps = [(a["step"], a["action"]) for a in await ingestion.pack.actions()]
    assert steps == [("pause", "pause_ingestion"), ("rollback", "rollback_feature_flag")]
    assert [e for e, _ in await ingestion.audit("action") if e == "not_repeated"] == [
        "not_repeated"
    ]
    assert sum(" PAUSED*" in t for t in ingestion.thread()) == 1


async def test_with_the_pager_down_the_whole_time_every_event_arrives_in_order(
    ingestion_any: Desk, pagerduty: PagerDutyAPI
) -> None:
    ingestion = ingestion_any
    pagerduty.down = True
    p1, p0 = error_rate("0.12", "P1"), error_rate("0.25", "P0")
    await ingestion.fire(p1)
    await ingestion.fire(p1, p0)
    await ingestion.slash("ack 1")
    await ingestion.fire(resolved(p1), resolved(p0))
    for _ in range(5):
        await ingestion.later(15)
    assert pagerduty.events == []
    depth = ingestion.daemon.metrics.pager_outbox_depth
    await ingestion.daemon.pager_desk._read_due()
    assert depth._value.get() == 4

    pagerduty.down = False
    for _ in range(4):
        await ingestion.later(15)
    assert pagerduty.events == [
        ("trigger", KEY),
        ("trigger", KEY),
        ("acknowledge", KEY),
        ("resolve", KEY),
    ]
    assert [a.status for a in pagerduty.alerts] == ["resolved"]


async def test_two_alertmanagers_delivering_the_same_notifications_open_one_page(
    ingestion: Desk, pagerduty: PagerDutyAPI
) -> None:
    p1 = error_rate("0.12", "P1")
    for peer in ("am-0", "am-1"):  # the HA pair: each sends the group, and retries it
        body = notification(p1) | {"externalURL": f"http://{peer}.test:9093"}
        for _ in range(2):
            response = await ingestion.pack.running.post_alerts(body)
            assert response.status_code == 200
        await ingestion.pack.running.settle()
        await ingestion.settle()
    assert pagerduty.events == [("trigger", KEY)]
    assert len(pagerduty.alerts) == 1
    assert len(ingestion.slack.parents()) == 1


async def test_unacknowledged_the_next_level_is_paged(
    ingestion: Desk, pagerduty: PagerDutyAPI, opsgenie: OpsgenieAPI
) -> None:
    await ingestion.fire(error_rate("0.12", "P1"))
    await ingestion.later(29 * 60)
    assert opsgenie.events == []
    await ingestion.later(60)
    assert opsgenie.events == [("trigger", KEY)]
    [level2] = [t for t in ingestion.thread() if "level 2" in t]
    assert "<!subteam^S0LEAD>" in level2
    assert [e for e, _ in await ingestion.audit("page")] == ["paged", "page_escalated"]
    await ingestion.slash("ack 1")  # both pagers are told
    assert opsgenie.events[-1] == ("acknowledge", KEY)
    assert pagerduty.events[-1] == ("acknowledge", KEY)


async def test_a_p2_alert_after_a_p0_alert_still_shows_p0(ingestion: Desk) -> None:
    p0, p2 = error_rate("0.25", "P0"), error_rate("0.07", "P2")
    await ingestion.fire(p0)
    await ingestion.fire(p0, p2)
    await ingestion.fire(resolved(p0))
    assert ingestion.parent().startswith("🚨 INCIDENT: P0")
    await ingestion.fire(resolved(p2))
    parent = ingestion.parent()
    assert parent.startswith("✅ RESOLVED: P0"), parent
    [message] = ingestion.slack.parents()
    body = message.updates[-1]["attachments"][0]["blocks"][1]["text"]["text"]
    assert "<!subteam^" not in body
    assert body.startswith(":white_check_mark: *RESOLVED")
    incident = await ingestion.daemon.store.incident(1)
    assert incident is not None
    assert incident["labels"]["severity"] == "P0"


# --- the CDC runbook's escalation path ---------------------------------------------------------

CDC_LEVELS = """\
- {mention: S0ONCALL, pagers: [pd]}
- {after: 30m, mention: S0LEAD, pagers: [og]}
- {after: 30m, mention: S0MANAGER}
"""


@pytest.fixture
async def cdc(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    kafka_connect: KafkaConnect,
    slack_api: SlackAPI,
    pagerduty: PagerDutyAPI,
    opsgenie: OpsgenieAPI,
) -> Desk:
    urls = {"kafka-connect": kafka_connect.server.url, "alertmanager": "http://127.0.0.1:9"}
    extra = slack_config(slack_api, ACCESS) + paging(pagerduty, opsgenie, CDC_LEVELS)
    return await desk_for("cdc", write_config, start_daemon, urls, slack_api, extra)


async def test_a_connector_still_failing_after_its_restart_pages_and_climbs_the_path(
    cdc: Desk, kafka_connect: KafkaConnect, pagerduty: PagerDutyAPI, opsgenie: OpsgenieAPI
) -> None:
    kafka_connect.restart_outcome = "FAILED"
    await cdc.fire(firing("ConnectorDown", connector=SINK, severity="P1"))
    assert pagerduty.events == []  # restarting: nobody is paged yet
    for _ in range(12):  # the restart's verification fails after 2 minutes
        await cdc.later(10)
    assert await cdc.pack.decisions() == [("opened", "restart"), ("escalated", "escalate-on-call")]
    assert {key for _, key in pagerduty.events} == {KEY}
    assert [a.status for a in pagerduty.alerts] == ["triggered"]  # one page
    assert any("<!subteam^S0ONCALL>" in t for t in cdc.thread() if t.startswith(":pager:"))

    await cdc.later(29 * 60)  # 30 minutes after the page, nobody acknowledged: level 2
    assert opsgenie.events == []
    await cdc.later(2 * 60)
    assert opsgenie.events == [("trigger", KEY)]
    assert any("<!subteam^S0LEAD>" in t for t in cdc.thread() if "level 2" in t)

    await cdc.slash("ack 1")  # the ack stops the climb and acknowledges both pages
    await cdc.later(60 * 60)
    assert not any("S0MANAGER" in t for t in cdc.thread())
    assert opsgenie.events[-1] == ("acknowledge", KEY)
    assert pagerduty.events[-1] == ("acknowledge", KEY)
    escalations = [d["level"] for e, d in await cdc.audit("page") if e == "page_escalated"]
    assert escalations == [2]


async def test_the_next_level_comes_after_a_restart_of_the_daemon_too(
    cdc: Desk,
    kafka_connect: KafkaConnect,
    opsgenie: OpsgenieAPI,
    start_daemon: StartDaemon,
) -> None:
    """Escalation timers are derived from the store: a new process finds the page's level."""
    kafka_connect.restart_outcome = "FAILED"
    await cdc.fire(firing("ConnectorDown", connector=SINK, severity="P1"))
    for _ in range(12):
        await cdc.later(10)
    config, clock = cdc.daemon.config, cdc.pack.clock
    await cdc.daemon.stop()
    running = await start_daemon(config, clock)
    again = Desk(Pack(running, clock), cdc.slack)
    assert await running.daemon.timers.next_due() == pytest.approx(clock.now() + 30 * 60, abs=1.0)
    await again.later(30 * 60 + 1)
    assert opsgenie.events == [("trigger", KEY)]


# --- circuits and interrupted actions ----------------------------------------------------------

FLAKY = """
actions:
  poke: {kind: http, target: flaky, method: POST, path: /poke, retries: 0}
rules:
  - name: poke-on-alert
    match: '{alertname="Poke"}'
    incident_key: [alertname, n]
    tiers:
      - {name: act, actions: [poke]}
"""


async def flaky_desk(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    flaky: Recorder,
    slack: SlackAPI,
    pagerduty: PagerDutyAPI,
    opsgenie: OpsgenieAPI,
    extra: str = "",
) -> Desk:
    main = base_config({"flaky": flaky.server.url}, extra) + "rule_files: [flaky.yaml]\n"
    main += slack_config(slack, ACCESS) + paging(pagerduty, opsgenie, INGESTION_LEVELS)
    clock = FakeClock(T0)
    running = await start_daemon(write_config(main, flaky=FLAKY), clock)
    return Desk(Pack(running, clock), slack)


async def test_a_circuit_opening_is_announced_and_pages(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    recorder: Callable[..., Awaitable[Recorder]],
    slack_api: SlackAPI,
    pagerduty: PagerDutyAPI,
    opsgenie: OpsgenieAPI,
) -> None:
    flaky = await recorder(500)
    desk = await flaky_desk(write_config, start_daemon, flaky, slack_api, pagerduty, opsgenie)
    for n in range(3):  # three failures within ten minutes: the breaker opens
        await desk.fire(firing("Poke", n=str(n), severity="P2"))
    opened = [(e, d) for e, d in await desk.audit("action") if e == "circuit_opened"]
    assert [d["target"] for _, d in opened] == ["flaky"]
    texts = [m.text for m in slack_api.thread(slack_api.parents()[-1])]
    assert any(t.startswith(":no_entry: *CIRCUIT OPEN: `flaky`*") for t in texts), texts
    paged = [d for e, d in await desk.audit("page") if d["cause"] == "circuit_opened"]
    assert len(paged) == 1
    assert pagerduty.events[-1] == ("trigger", "remediator-incident-3")


async def test_an_interrupted_action_may_have_taken_effect_and_pages(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    recorder: Callable[..., Awaitable[Recorder]],
    slack_api: SlackAPI,
    pagerduty: PagerDutyAPI,
    opsgenie: OpsgenieAPI,
) -> None:
    hanging = await recorder(200)
    hanging.delay = 2.0  # the daemon stops (grace 100 ms) while the request is out
    extra = "server: {shutdown_grace: 100ms}\n"
    desk = await flaky_desk(
        write_config, start_daemon, hanging, slack_api, pagerduty, opsgenie, extra
    )
    response = await desk.pack.running.post_alerts(
        notification(firing("Poke", n="1", severity="P2"))
    )
    assert response.status_code == 200
    await desk.daemon.engine.idle()
    async with asyncio.timeout(5):
        while not hanging.server.seen:
            await asyncio.sleep(0.01)
    config, clock = desk.daemon.config, desk.pack.clock
    await desk.daemon.stop()  # the poke is cut off mid-flight

    running = await start_daemon(config, clock)
    again = Desk(Pack(running, clock), slack_api)
    await again.settle()
    [action] = await again.pack.actions()
    assert action["status"] == "interrupted"
    texts = again.thread()
    [told] = [t for t in texts if t.startswith(":warning: *INTERRUPTED: poke*")]
    assert "may have taken effect, not verified" in told
    assert pagerduty.events == [("trigger", KEY)]
    assert any("<!subteam^S0ONCALL>" in t for t in texts if t.startswith(":pager:"))


async def test_the_apis_ack_acknowledges_the_page(ingestion: Desk, pagerduty: PagerDutyAPI) -> None:
    client, auth = ingestion.pack.running.client, {"Authorization": f"Bearer {API_TOKEN}"}
    await ingestion.fire(error_rate("0.12", "P1"))
    r = await client.post("/api/v1/incidents/1/ack", json={"by": "alice"}, headers=auth)
    assert (r.status_code, r.json()) == (200, {"incident": 1, "status": "acknowledged"})
    await ingestion.settle()
    assert pagerduty.events == [("trigger", KEY), ("acknowledge", KEY)]
    assert pagerduty.alerts[0].events[-1]["dedup_key"] == KEY
    missing = await client.post("/api/v1/incidents/9/ack", json={}, headers=auth)
    assert (missing.status_code, missing.json()) == (404, {"error": "no incident 9"})
    await ingestion.fire(resolved(error_rate("0.12", "P1")))
    closed = await client.post("/api/v1/incidents/1/ack", json={}, headers=auth)
    assert (closed.status_code, closed.json()) == (
        409,
        {"error": "incident 1 is resolved, not open"},
    )
