"""What a person's command gives the action it runs: labels from key=value parameters; `check`
refuses a mapping to an action that needs what no command can give. The README's mapping and
every slash command it shows run against the shipped packs' stand-ins."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediator.commands import needs, parameters
from remediator.config import load_config
from remediator.errors import ConfigError
from remediator.schema import secrets_optional
from tests.conftest import Running, StartDaemon, base_config
from tests.payloads import alert, notification
from tests.slack_standin import SlackAPI, command, signed
from tests.standins import ConfigService, Connector, KafkaConnect, KubeApi, Recorder, Workload

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PACKS = f"rule_files: ['{ROOT}/rules/cdc.yaml', '{ROOT}/rules/ingestion.yaml']\n"


def readme_mapping() -> dict[str, Any]:
    [block] = re.findall(r"```yaml\n(slack:\n  verbs:\n.*?)```", README, re.S)
    mapping: dict[str, Any] = yaml.safe_load(block)["slack"]
    return mapping


def readme_commands() -> list[str]:
    [block] = re.findall(r"```text\n(/remediate .*?)```", README, re.S)
    return str(block).splitlines()


def test_parameters_are_labels_and_a_malformed_one_is_named() -> None:
    assert parameters(["connector=a=b", "region="]) == {"connector": "a=b", "region": ""}
    with pytest.raises(ValueError, match="expected label=value, got 'now'"):
        parameters(["now"])
    with pytest.raises(ValueError, match="got '1x=2'"):
        parameters(["1x=2"])


def test_needs_reads_what_an_action_uses(write_config: Callable[..., Path]) -> None:
    config = write_config(
        base_config(
            {
                "kafka-connect": "http://127.0.0.1:1",
                "ingestion-config": "http://127.0.0.1:1",
                "feature-flags": "http://127.0.0.1:1",
                "alertmanager": "http://127.0.0.1:1",
            },
            PACKS,
        )
    )
    actions = load_config(config).actions
    assert needs(actions["restart_connector"]) == (frozenset({"connector"}), None)
    assert needs(actions["pause_ingestion"]) == (frozenset({"alertname"}), None)
    assert needs(actions["pause_sink_connector"]) == (frozenset(), None)
    _, problem = needs(actions["unsilence_sink_connector_down"])
    assert problem == "no result from action 'silence_sink_connector_down' in this incident"


def test_check_refuses_a_verb_mapped_to_what_no_command_can_give(
    write_config: Callable[..., Path],
) -> None:
    config = write_config(
        base_config(
            {"kafka-connect": "http://127.0.0.1:1", "alertmanager": "http://127.0.0.1:1"},
            f"rule_files: ['{ROOT}/rules/cdc.yaml']\n"
            "slack:\n  verbs:\n    resume: {silence: unsilence_sink_connector_down}\n",
        )
    )
    with secrets_optional(), pytest.raises(ConfigError) as e:
        load_config(config)
    [problem] = e.value.problems
    assert problem.endswith(
        "slack.verbs.resume.silence: action 'unsilence_sink_connector_down' cannot run from a "
        "command: no result from action 'silence_sink_connector_down' in this incident (a "
        "command gives only label=value parameters)"
    )


@dataclass
class Stand:
    """The shipped packs' targets, stood in for (tests/slack/test_readme_verbs.py too)."""

    connect: KafkaConnect
    config: ConfigService
    flags: ConfigService
    kube: KubeApi
    alertmanager: Recorder

    @property
    def servers(self) -> list[Any]:
        return [s.server for s in (self.connect, self.config, self.flags, self.kube)] + [
            self.alertmanager.server
        ]

    def main_config(self, home: Path, slack_url: str) -> str:
        """The main config of the shipped packs against these stand-ins and Slack's at
        `slack_url`, under the README's verb mapping; its kubeconfig is written into `home`."""
        (home / "kubeconfig").write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
            f"clusters: [{{name: c, cluster: {{server: '{self.kube.server.url}'}}}}]\n"
            "users: [{name: u, user: {token: t}}]\n"
        )
        slack = {
            **readme_mapping(),
            "bot_token_env": "TEST_SLACK_TOKEN",
            "signing_secret_env": "TEST_SLACK_SECRET",
            "base_url": slack_url,
            "channel": "#alerts",
        }
        targets = {
            "kafka-connect": self.connect.server.url,
            "ingestion-config": self.config.server.url,
            "feature-flags": self.flags.server.url,
            "alertmanager": self.alertmanager.server.url,
        }
        cluster = "  ingestion-cluster: {kubernetes: {kubeconfig: kubeconfig}}\n"
        return base_config(targets, cluster + PACKS + yaml.safe_dump({"slack": slack}))


@pytest.fixture
async def stand() -> AsyncIterator[Stand]:
    found = Stand(
        KafkaConnect({"postgres-sink-connector": Connector("FAILED", ["FAILED", "RUNNING"])}),
        ConfigService(),
        ConfigService(),
        KubeApi({("deployments", "ingestion", "promotion-worker"): Workload()}),
        Recorder(),
    )
    for server in found.servers:
        await server.start()
    yield found
    found.connect.release.set()
    for server in found.servers:
        await server.stop()


@pytest.fixture
async def running(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    stand: Stand,
    slack_api: SlackAPI,
    tmp_path: Path,
) -> Running:
    return await start_daemon(write_config(stand.main_config(tmp_path, slack_api.base_url)))


async def test_every_slack_verb_in_the_readme_runs_against_the_shipped_packs(
    running: Running, stand: Stand
) -> None:
    fired = notification(alert("ConnectorDown", connector="sqlserver-source-connector"))
    assert (await running.post_alerts(fired)).status_code == 200  # incident 1, to close
    await running.settle()
    for line in readme_commands():
        text = line.removeprefix("/remediate ")
        if text.startswith("restart kafka-connect"):  # the runbook restarts a FAILED connector
            stand.connect.connectors["postgres-sink-connector"].state = "FAILED"
        body = command(text, "U0ONCALL")
        r = await running.client.post(
            "/slack/commands", content=body, headers=signed(body, int(time.time()))
        )
        answer = r.json()["text"]
        assert r.status_code == 200
        assert not answer.startswith((":warning:", ":no_entry_sign:")), (line, answer)
        await settle(running)
    claims = {
        a["action"]: a["status"]
        for a in (await running.api("/api/v1/actions?limit=100"))["items"]
        if a["step"] == "manual"
    }
    assert claims == {
        "pause_ingestion": "succeeded",
        "resume_ingestion": "succeeded",
        "pause_sink_connector": "succeeded",
        "resume_sink_connector": "succeeded",
        "restart_connector": "succeeded",
        "restart_promotion_worker": "succeeded",
        "rollback_feature_flag": "awaiting_approval",  # destructive
    }
    restarts = [s.path for s in stand.connect.server.seen if s.path.endswith("/restart")]
    assert restarts == ["/connectors/postgres-sink-connector/restart"]
    [incident] = (await running.api("/api/v1/incidents?status=resolved"))["items"]
    assert incident["id"] == 1


async def settle(running: Running) -> None:
    await running.settle()
    await asyncio.sleep(0)
