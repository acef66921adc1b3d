"""Every slash-command verb the README's table names runs against the shipped packs (cdc.yaml,
ingestion.yaml) on one daemon, with their stand-ins (Kafka Connect, the config service holding
the kill switch, the feature flags, the Kubernetes API, Alertmanager) and Slack's, under the
README's own verb mapping. Each verb has a scenario that checks what it did, not only what it
answered; a verb added to the README's table without a scenario here fails."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from remediator.config import VERBS, load_config
from remediator.server import Daemon
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN, Running
from tests.payloads import alert, fingerprint, notification
from tests.slack_standin import SECRET, TOKEN, SlackAPI, command, signed
from tests.standins import ConfigService, Connector, KafkaConnect, KubeApi, Recorder, Workload
from tests.test_commands import Stand, readme_mapping

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
ONCALL, SECOND = "U0ONCALL", "U0SECOND"  # members of S0ONCALL, whom the README's access allows
ENABLED = "/v1/config/ingestion.enabled"
FLAG = "/v1/flags/ingestion_v2_enabled"


def readme_verbs() -> list[str]:
    """The verbs of the README's slash-command table, in its order: `pause|resume <target>`
    names two, `approve <id>`, `deny <id>` two."""
    section = README.split("**Slash commands**", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    verbs: list[str] = []
    for row in rows:
        cell = row.split(" | ")[0].removeprefix("| ")
        for usage in re.findall(r"`([^`]+)`", cell):
            verbs += usage.split()[0].split("\\|")
    return verbs


class Desk:
    """The daemon, its stand-ins and Slack's, and a person typing /remediate."""

    def __init__(self, running: Running, stand: Stand, slack: SlackAPI) -> None:
        self.running, self.stand, self.slack = running, stand, slack
        self._responses = 0

    async def say(self, text: str, user: str = ONCALL) -> str:
        """A signed slash command; the ephemeral answer, which must not be a refusal."""
        answer, _ = await self.say_with_response(text, user)
        return answer

    async def say_with_response(self, text: str, user: str = ONCALL) -> tuple[str, str]:
        self._responses += 1
        name = f"r{self._responses}"
        body = command(text, user, self.slack.response_url(name))
        r = await self.running.client.post(
            "/slack/commands", content=body, headers=signed(body, int(time.time()))
        )
        assert r.status_code == 200, r.text
        answer = str(r.json()["text"])
        assert not answer.startswith((":warning:", ":no_entry_sign:")), (text, answer)
        await self.running.settle()
        return answer, name

    async def followed_up(self, name: str) -> str:
        """What the daemon posted to the command's response_url (a manual action's outcome)."""
        async with asyncio.timeout(10):
            while not self.slack.responses.get(name):
                await asyncio.sleep(0.05)
        return str(self.slack.responses[name][-1]["text"])

    async def fire(self, name: str, **labels: str) -> int:
        """An alert of the shipped packs; the id of the open incident it is in."""
        fired = alert(name)  # `status` is a label of IngestionUploadsStuck, not the state
        fired["labels"] |= labels
        fired["fingerprint"] = fingerprint(fired["labels"])
        assert (await self.running.post_alerts(notification(fired))).status_code == 200
        await self.running.settle()
        page = await self.running.api("/api/v1/incidents?status=open&limit=500")
        [found] = [i for i in page["items"] if i["labels"] == fired["labels"]]
        return int(found["id"])

    async def incident(self, incident_id: int) -> dict[str, Any]:
        record: dict[str, Any] = await self.running.api(f"/api/v1/incidents/{incident_id}")
        return record

    async def approval(self, incident_id: int) -> dict[str, Any]:
        items = (await self.running.api("/api/v1/approvals?status=all"))["items"]
        [found] = [a for a in items if a["incident_id"] == incident_id]
        return dict(found)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def desk(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Desk]:
    tmp = tmp_path_factory.mktemp("readme-verbs")
    stand = Stand(
        KafkaConnect({"ks-sink": Connector("FAILED", ["FAILED"])}),
        ConfigService(),
        ConfigService(),
        KubeApi(
            {
                ("deployments", "ingestion", "promotion-worker"): Workload(),
                ("deployments", "ingestion", "parse-worker"): Workload(),
            }
        ),
        Recorder(),
    )
    slack = SlackAPI(usergroups={"S0ONCALL": [ONCALL, SECOND]})
    await slack.start()
    for server in stand.servers:
        await server.start()
    main = tmp / "remediator.yaml"
    main.write_text(stand.main_config(tmp, slack.base_url))
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "TEST_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "TEST_API_TOKEN": API_TOKEN,
            "TEST_SLACK_TOKEN": TOKEN,
            "TEST_SLACK_SECRET": SECRET,
        }.items():
            env.setenv(name, value)
        env.delenv("TEST_STORE_BACKEND", raising=False)
        daemon = Daemon(load_config(main))
        await daemon.start("127.0.0.1", 0)
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.port}")
        yield Desk(Running(daemon, client), stand, slack)
        await client.aclose()
        await daemon.stop()
    stand.connect.release.set()
    for server in stand.servers:
        await server.stop()
    await slack.stop()


# -- one scenario per verb -----------------------------------------------------------------------


async def help_(desk: Desk) -> None:
    answer = await desk.say("help")
    for verb in readme_verbs():
        if verb != "help":
            assert f"`{verb}" in answer or f"|{verb}" in answer, verb
    for target in {t for verbs in readme_mapping()["verbs"].values() for t in verbs}:
        assert target in answer


async def status(desk: Desk) -> None:
    lag = await desk.fire("HighReplicationLag", connector="status-sink", severity="P2")
    overview = await desk.say("status")
    assert overview.startswith("Kill switch: *off* · open incidents: ")
    assert f"• incident {lag} `cdc-replication-lag`" in overview
    one = await desk.say(f"status {lag}")
    assert f"Incident {lag} `cdc-replication-lag`" in one
    assert "*open*, tier `notify`" in one
    target = await desk.say("status kafka-connect")
    assert target.startswith("Target `kafka-connect`: circuit *closed*")


async def history(desk: Desk) -> None:
    lag = await desk.fire("HighReplicationLag", connector="history-sink", severity="P2")
    [line] = (await desk.say("history 1")).splitlines()
    [newest] = (await desk.running.api("/api/v1/history?limit=1"))["items"]
    assert (newest["incident_id"], newest["event"]) == (lag, "opened")
    assert line == f"`{newest['at']}` cdc-replication-lag *opened* {newest['message']}"
    assert "connector=history-sink" in line
    assert len((await desk.say("history")).splitlines()) <= 10  # ten by default


async def manual(desk: Desk, text: str, action: str) -> tuple[str, dict[str, Any]]:
    """A manual action through /remediate: the claim it made, and the outcome Slack was told."""
    answer, response = await desk.say_with_response(text)
    incident = int(re.findall(r"incident (\d+)", answer)[0])
    assert f"({action})" in answer
    [claim] = (await desk.incident(incident))["claims"]
    assert claim["action"] == action
    return answer, claim | {"response": response, "incident": incident}


async def pause(desk: Desk) -> None:
    _, claim = await manual(desk, "pause ingestion", "pause_ingestion")
    assert "succeeded" in await desk.followed_up(claim["response"])
    assert desk.stand.config.values[ENABLED]["value"] is False


async def resume(desk: Desk) -> None:
    _, claim = await manual(desk, "resume ingestion", "resume_ingestion")
    assert "succeeded" in await desk.followed_up(claim["response"])
    assert desk.stand.config.values[ENABLED]["value"] is True


async def restart(desk: Desk) -> None:
    desk.stand.connect.connectors["restart-sink"] = Connector("FAILED", ["FAILED", "RUNNING"])
    _, claim = await manual(
        desk, "restart kafka-connect connector=restart-sink", "restart_connector"
    )
    assert "succeeded" in await desk.followed_up(claim["response"])
    assert desk.stand.connect.restarts("restart-sink") == 1
    _, worker = await manual(desk, "restart promotion-worker", "restart_promotion_worker")
    assert "succeeded" in await desk.followed_up(worker["response"])
    workload = desk.stand.kube.workloads[("deployments", "ingestion", "promotion-worker")]
    assert workload.rollouts >= 1


async def rollback(desk: Desk) -> None:
    _, claim = await manual(desk, "rollback ingestion-flag", "rollback_feature_flag")
    assert claim["status"] == "awaiting_approval"  # destructive: a person approves it
    assert (await desk.approval(claim["incident"]))["status"] == "pending"


async def close(desk: Desk) -> None:
    lag = await desk.fire("HighReplicationLag", connector="close-sink", severity="P2")
    answer = await desk.say(f"close {lag} fixed by hand: the disk was full")
    assert answer == f"Incident {lag} closed; nothing was run for it."
    assert (await desk.incident(lag))["status"] != "open"


async def approve(desk: Desk) -> None:
    patched = len(desk.stand.flags.server.seen)
    _, claim = await manual(desk, "rollback ingestion-flag", "rollback_feature_flag")
    approval = await desk.approval(claim["incident"])
    answer = await desk.say(f"approve {approval['id']}", SECOND)
    assert answer.startswith("Approved rollback_feature_flag on `feature-flags` (approval ")
    await desk.running.settle()
    assert (await desk.approval(claim["incident"]))["status"] == "approved"
    assert [s.method for s in desk.stand.flags.server.seen[patched:]] == ["PATCH"]
    assert desk.stand.flags.values[FLAG] == {"enabled": False, "allowlist": []}


async def deny(desk: Desk) -> None:
    seen = len(desk.stand.flags.server.seen)
    _, claim = await manual(desk, "rollback ingestion-flag", "rollback_feature_flag")
    approval = await desk.approval(claim["incident"])
    answer = await desk.say(f"deny {approval['id']} not during the release", SECOND)
    assert answer.startswith("Denied rollback_feature_flag on `feature-flags`")
    decided = await desk.approval(claim["incident"])
    assert decided["status"] == "denied"
    assert len(desk.stand.flags.server.seen) == seen  # nothing was sent


async def ack(desk: Desk) -> None:
    lag = await desk.fire("HighReplicationLag", connector="ack-sink", severity="P1")
    answer = await desk.say(f"ack {lag}")
    assert answer.startswith(f"You own incident {lag} now")
    assert (await desk.incident(lag))["acked_by"] == f"slack:{ONCALL}"
    assert f"owner slack:{ONCALL}" in await desk.say(f"status {lag}")


async def mute(desk: Desk) -> None:
    """A muted rule acts on nothing: the stuck-promoting upload's worker is not restarted."""
    answer = await desk.say("mute ingestion-uploads-stuck-promoting 1h release in progress")
    assert re.match(r"Mute \d+ on rule `ingestion-uploads-stuck-promoting` until ", answer)
    worker = desk.stand.kube.workloads[("deployments", "ingestion", "promotion-worker")]
    before = worker.rollouts
    stuck = await desk.fire("IngestionUploadsStuck", status="promoting", severity="P2")
    [claim] = (await desk.incident(stuck))["claims"]
    assert (claim["action"], claim["status"]) == ("restart_promotion_worker", "refused")
    assert "mute" in claim["detail"]
    assert worker.rollouts == before


async def unmute(desk: Desk) -> None:
    """An ended mute no longer holds the rule back: the stuck-processing worker restarts."""
    muted = await desk.say("mute ingestion-uploads-stuck-processing 1h release in progress")
    mute_id = int(re.findall(r"Mute (\d+)", muted)[0])
    assert await desk.say(f"unmute {mute_id}") == f"Mute {mute_id} ended."
    active = (await desk.running.api("/api/v1/mutes"))["items"]
    assert mute_id not in [m["id"] for m in active]
    stuck = await desk.fire("IngestionUploadsStuck", status="processing", severity="P2")
    [claim] = (await desk.incident(stuck))["claims"]
    assert (claim["action"], claim["status"]) == ("restart_parse_worker", "succeeded")
    assert desk.stand.kube.workloads[("deployments", "ingestion", "parse-worker")].rollouts == 1


async def killswitch(desk: Desk) -> None:
    """On, a failed connector is not restarted (refused; `on_killswitch: drop`); off again."""
    assert await desk.say("killswitch status") == "Kill switch is *off*."
    on = await desk.say("killswitch on bad deploy, hands off")
    assert on.startswith(f"Kill switch is *ON* (set by slack:{ONCALL} at ")
    try:
        down = await desk.fire("ConnectorDown", connector="ks-sink", severity="P1")
        [claim] = (await desk.incident(down))["claims"]
        assert (claim["action"], claim["status"]) == ("restart_connector", "refused")
        assert "kill switch" in claim["detail"]
        assert desk.stand.connect.restarts("ks-sink") == 0
        assert "Kill switch is *ON*" in await desk.say("killswitch status")
    finally:
        off = await desk.say("killswitch off")
    assert off.startswith("Kill switch is *off* (set by ")
    assert (await desk.running.api("/api/v1/killswitch"))["on"] is False


SCENARIOS: dict[str, Callable[[Desk], Awaitable[None]]] = {
    "help": help_,
    "status": status,
    "history": history,
    "pause": pause,
    "resume": resume,
    "restart": restart,
    "rollback": rollback,
    "close": close,
    "approve": approve,
    "deny": deny,
    "ack": ack,
    "mute": mute,
    "unmute": unmute,
    "killswitch": killswitch,
}


def test_the_readme_table_names_every_verb_the_daemon_serves() -> None:
    assert sorted(readme_verbs()) == sorted(VERBS)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("verb", readme_verbs())
async def test_the_readme_verb_runs_against_the_shipped_packs(desk: Desk, verb: str) -> None:
    scenario = SCENARIOS.get(verb)
    assert scenario is not None, f"the README names /remediate {verb}: add its scenario here"
    await scenario(desk)
