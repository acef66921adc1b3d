"""The `remediator` console script, run as a subprocess: check, simulate, history."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from remediator.actions.http import KEYS as HTTP_KIND_KEYS
from remediator.config import TOP_KEYS as CONFIG_TOP_KEYS
from remediator.config import load_config
from remediator.store.records import AuditEntry
from remediator.store.sqlite import SqliteStore
from tests.conftest import base_config
from tests.peers import REMEDIATOR
from tests.standins import KafkaConnect, Recorder

ROOT = Path(__file__).resolve().parents[1]
PAYLOADS = ROOT / "examples" / "payloads"
SHIPPED_RULES = f"rule_files:\n  - {ROOT / 'rules'}/*.yaml\n"
TOUR_TARGETS = {
    "kafka-connect": "http://127.0.0.1:8083",
    "ingestion-config": "http://127.0.0.1:8081",
    "feature-flags": "http://127.0.0.1:8082",
    "migration-api": "http://127.0.0.1:8085",
    "alertmanager": "http://127.0.0.1:9093",
}
# the cluster of the ingestion workers, as examples/remediator.yaml defines it
CLUSTER = (
    f"  ingestion-cluster: {{kubernetes: {{kubeconfig: {ROOT / 'examples/kubeconfig.yaml'}}}}}\n"
)
ENV = {
    "PATH": os.environ["PATH"],
    "TEST_WEBHOOK_TOKEN": "cli-webhook-token",
    "TEST_API_TOKEN": "cli-api-token",
}

Run = Callable[..., "subprocess.CompletedProcess[str]"]

TOP_KEYS = ", ".join(sorted(CONFIG_TOP_KEYS))
HTTP_KEYS = ", ".join(sorted(HTTP_KIND_KEYS))


@pytest.fixture
def remediator(tmp_path: Path) -> Run:
    """Run the console script in tmp_path (where write_config puts remediator.yaml)."""

    def run(*args: str, env: dict[str, str] = ENV) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REMEDIATOR), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )

    return run


@pytest.fixture
def tour_config(write_config: Callable[..., Path]) -> Path:
    """The README tour's configuration: the shipped rules and the stand-in targets."""
    return write_config(base_config(TOUR_TARGETS, CLUSTER + SHIPPED_RULES))


def payload(name: str) -> str:
    return str(PAYLOADS / name)


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- check ----------------------------------------------------------------------------------


def test_check_accepts_the_shipped_rules(remediator: Run, tour_config: Path) -> None:
    config = load_config(tour_config)
    files = ", ".join(sorted(glob.glob(f"{ROOT / 'rules'}/*.yaml")))

    result = remediator("check", "--config", "remediator.yaml")

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        f"remediator.yaml: OK: {len(config.rules)} rules, {len(config.actions)} actions, "
        f"{len(TOUR_TARGETS) + 1} targets (rule files: {files})\n"
    )
    assert {"cdc-connector-down", "ingestion-error-rate"} <= {r.name for r in config.rules}


def test_check_warns_of_a_skipped_rule_and_strict_refuses_it(
    remediator: Run, write_config: Callable[..., Path]
) -> None:
    """The shipped packs without the ingestion workers' cluster: its two restart rules are
    skipped with one warning; `--strict` makes that the one problem."""
    write_config(base_config(TOUR_TARGETS, SHIPPED_RULES))

    loose = remediator("check", "--config", "remediator.yaml")
    strict = remediator("check", "--strict", "--config", "remediator.yaml")

    assert loose.returncode == 0, loose.stderr
    (warning,) = loose.stderr.splitlines()
    assert "WARNING remediator.config: " in warning
    assert "unknown target 'ingestion-cluster'" in warning
    assert "'ingestion-uploads-stuck-processing', 'ingestion-uploads-stuck-promoting'" in warning
    assert strict.returncode == 1
    assert strict.stderr.splitlines()[-1] == "1 problem(s) in the configuration"
    assert strict.stderr.splitlines()[0].endswith("[--strict]")


BROKEN_RULES = """\
actions:
  restart_connector:
    kind: http
    target: kafka-connect
    path: /connectors/{connector}/restart
    colour: blue
  pause_connector:
    kind: http
    target: kafka-connect
    method: PUT
    path: /connectors/{connector}/pause
rules:
  - name: cdc-connector-down
    match: '{alertname="ConnectorDown"}'
    tiers:
      - name: restart
        actions: [restart_conector]
"""


def test_check_prints_every_problem_with_file_path_and_value(
    remediator: Run, write_config: Callable[..., Path]
) -> None:
    targets = {**TOUR_TARGETS, "ingestion-config": "ftp://config.example"}
    write_config(
        base_config(targets, "rule_files: [broken.yaml]\nverbosity: high\n"), broken=BROKEN_RULES
    )

    result = remediator("check", "--config", "remediator.yaml")

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        f"remediator.yaml: verbosity: unknown key 'verbosity' (known: {TOP_KEYS})",
        "remediator.yaml: targets.ingestion-config.url: expected an http(s) URL with a host, "
        "got 'ftp://config.example'",
        f"broken.yaml: actions.restart_connector.colour: unknown key 'colour' (known: {HTTP_KEYS})",
        "broken.yaml: rules[0].tiers[0].actions[0]: unknown action 'restart_conector' "
        "(known: pause_connector)",
        "4 problem(s) in the configuration",
    ]


def test_check_without_a_config_file(remediator: Run) -> None:
    result = remediator("check", "--config", "missing.yaml")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "missing.yaml: cannot read: No such file or directory\n1 problem(s) in the configuration\n"
    )
    searched = remediator("check")
    assert (searched.returncode, searched.stdout) == (1, "")
    assert searched.stderr.splitlines() == [
        "no config file: give --config, set REMEDIATOR_CONFIG, or create one of remediator.yaml, "
        "~/.config/remediator/remediator.yaml, /etc/remediator/remediator.yaml",
        "1 problem(s) in the configuration",
    ]


def test_check_names_a_secret_that_is_not_set(remediator: Run, tour_config: Path) -> None:
    env = {k: v for k, v in ENV.items() if k != "TEST_API_TOKEN"}

    result = remediator("check", "--config", "remediator.yaml", env=env)

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "remediator.yaml: api_auth.bearer_token_env: environment variable 'TEST_API_TOKEN' "
        "is not set or empty\n1 problem(s) in the configuration\n"
    )


# --- simulate -------------------------------------------------------------------------------

NOT_EVALUATED = (
    "not evaluated: the kill switch at runtime (the config's default was used), mutes, circuit "
    "breakers, cooldowns, budgets, one action at a time per target\n"
)
PRECONDITION = (
    "      only if: connector {connector} on kafka-connect: state in ['FAILED', 'UNASSIGNED']\n"
)

TOUR = {
    "connector-down.json": (
        "ConnectorDown (firing) -> rule cdc-connector-down "
        "[alertname=ConnectorDown, connector=postgres-sink-connector]: tier restart\n"
        "    restart_connector (kafka_connect on kafka-connect): POST http://127.0.0.1:8083/"
        "connectors/postgres-sink-connector/restart?includeTasks=true&onlyFailed=true\n"
        + PRECONDITION
    ),
    "connector-down-resolved.json": (
        "ConnectorDown (resolved) -> rule cdc-connector-down "
        "[alertname=ConnectorDown, connector=postgres-sink-connector]: on resolve\n"
        "    no actions\n"
    ),
    "ingestion-error-rate-12pct.json": (
        "IngestionHighErrorRate (firing) -> rule ingestion-error-rate "
        "[alertname=IngestionHighErrorRate] value=0.12: tier pause\n"
        "    pause_ingestion (http on ingestion-config): "
        "PUT http://127.0.0.1:8081/v1/config/ingestion.enabled\n"
    ),
    "ingestion-error-rate-23pct.json": (
        "IngestionHighErrorRate (firing) -> rule ingestion-error-rate "
        "[alertname=IngestionHighErrorRate] value=0.23: tier rollback\n"
        "    pause_ingestion (http on ingestion-config): "
        "PUT http://127.0.0.1:8081/v1/config/ingestion.enabled\n"
        "    rollback_feature_flag (http on feature-flags): "
        "PATCH http://127.0.0.1:8082/v1/flags/ingestion_v2_enabled\n"
        "      approval required: a person approves it before it runs\n"
    ),
    "ingestion-error-rate-resolved.json": (
        "IngestionHighErrorRate (resolved) -> rule ingestion-error-rate "
        "[alertname=IngestionHighErrorRate] value=0.03: on resolve\n"
        "    resume_ingestion (http on ingestion-config): "
        "PUT http://127.0.0.1:8081/v1/config/ingestion.enabled\n"
    ),
}


@pytest.mark.parametrize("name", sorted(TOUR))
def test_simulate_the_tour(remediator: Run, tour_config: Path, tmp_path: Path, name: str) -> None:
    result = remediator("simulate", "--config", "remediator.yaml", payload(name))

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == TOUR[name] + NOT_EVALUATED
    assert not (tmp_path / "state").exists()  # the store was not even created


def test_tour_covers_every_example_payload() -> None:
    assert sorted(TOUR) == sorted(p.name for p in PAYLOADS.glob("*.json"))


def test_simulate_json(remediator: Run, tour_config: Path) -> None:
    result = remediator(
        "simulate",
        "--config",
        "remediator.yaml",
        "--json",
        payload("ingestion-error-rate-23pct.json"),
    )

    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout) == [
        {
            "alert": "IngestionHighErrorRate",
            "status": "firing",
            "rule": "ingestion-error-rate",
            "incident_key": {"alertname": "IngestionHighErrorRate"},
            "value": 0.23,
            "note": "",
            "tier": "rollback",
            "actions": [
                {
                    "action": "pause_ingestion",
                    "kind": "http",
                    "target": "ingestion-config",
                    "request": "PUT http://127.0.0.1:8081/v1/config/ingestion.enabled",
                },
                {
                    "action": "rollback_feature_flag",
                    "kind": "http",
                    "target": "feature-flags",
                    "request": "PATCH http://127.0.0.1:8082/v1/flags/ingestion_v2_enabled",
                    "approval": "required",
                },
            ],
        }
    ]


def edited_payload(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> str:
    body = json.loads((PAYLOADS / "connector-down.json").read_text())
    edit(body)
    (tmp_path / "edited.json").write_text(json.dumps(body))
    return "edited.json"


def test_simulate_an_alert_no_rule_matches(
    remediator: Run, tour_config: Path, tmp_path: Path
) -> None:
    def rename(body: dict[str, Any]) -> None:
        body["alerts"][0]["labels"]["alertname"] = "DiskFull"

    result = remediator("simulate", "--config", "remediator.yaml", edited_payload(tmp_path, rename))

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "DiskFull (firing): no rule matches\n" + NOT_EVALUATED


def test_simulate_shows_a_request_that_cannot_be_built(
    remediator: Run, tour_config: Path, tmp_path: Path
) -> None:
    def drop_connector(body: dict[str, Any]) -> None:
        del body["alerts"][0]["labels"]["connector"]

    result = remediator(
        "simulate", "--config", "remediator.yaml", edited_payload(tmp_path, drop_connector)
    )

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "ConnectorDown (firing) -> rule cdc-connector-down "
        "[alertname=ConnectorDown, connector=]: tier restart\n"
        "    restart_connector (kafka_connect on kafka-connect): "
        "cannot build the request: label 'connector' is missing\n" + PRECONDITION + NOT_EVALUATED
    )


def _bad_time(body: dict[str, Any]) -> None:
    body["alerts"][0]["startsAt"] = "yesterday"


def _no_labels(body: dict[str, Any]) -> None:
    del body["alerts"][0]["labels"]


def _version_3(body: dict[str, Any]) -> None:
    body["version"] = "3"


def _numeric_label(body: dict[str, Any]) -> None:
    body["alerts"][0]["labels"]["severity"] = 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_bad_time, "alerts[0].startsAt: not an RFC 3339 timestamp: 'yesterday'"),
        (_no_labels, "alerts[0].labels: required"),
        (_version_3, "version: unsupported version '3' (expected \"4\")"),
        (_numeric_label, "alerts[0].labels.severity: expected a string, got a number"),
    ],
)
def test_simulate_an_invalid_payload_names_the_field(
    remediator: Run,
    tour_config: Path,
    tmp_path: Path,
    edit: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    result = remediator("simulate", "--config", "remediator.yaml", edited_payload(tmp_path, edit))

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"edited.json: {message}\n"


def test_simulate_a_payload_that_is_not_json_or_not_there(
    remediator: Run, tour_config: Path, tmp_path: Path
) -> None:
    (tmp_path / "garbage.json").write_text("version: 4\n")

    garbage = remediator("simulate", "--config", "remediator.yaml", "garbage.json")
    missing = remediator("simulate", "--config", "remediator.yaml", "missing.json")

    assert (garbage.returncode, garbage.stdout) == (1, "")
    assert garbage.stderr == "garbage.json: Expecting value: line 1 column 1 (char 0)\n"
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == "missing.json: cannot read: No such file or directory\n"


async def test_simulate_changes_nothing_and_calls_no_target(
    remediator: Run,
    write_config: Callable[..., Path],
    tmp_path: Path,
    kafka_connect: KafkaConnect,
    recorder: Callable[..., Awaitable[Recorder]],
) -> None:
    """Targets are live stand-ins answering on this event loop while the CLI runs in a thread:
    had simulate sent anything, they would have recorded it."""
    config, flags = await recorder(), await recorder()
    targets = {
        **TOUR_TARGETS,
        "kafka-connect": kafka_connect.server.url,
        "ingestion-config": config.server.url,
        "feature-flags": flags.server.url,
    }
    write_config(base_config(targets, CLUSTER + SHIPPED_RULES))

    results = [
        await asyncio.to_thread(remediator, "simulate", "--config", "remediator.yaml", payload(n))
        for n in ("connector-down.json", "ingestion-error-rate-23pct.json")
    ]

    assert [r.returncode for r in results] == [0, 0]
    assert (
        f"POST {kafka_connect.server.url}/connectors/postgres-sink-connector/restart"
        "?includeTasks=true&onlyFailed=true\n"
    ) in results[0].stdout
    assert f"PATCH {flags.server.url}/v1/flags/ingestion_v2_enabled\n" in results[1].stdout
    assert (kafka_connect.server.seen, config.server.seen, flags.server.seen) == ([], [], [])
    assert kafka_connect.connectors["postgres-sink-connector"].state == "FAILED"
    assert files_in(tmp_path) == ["remediator.yaml"]  # no store, no state directory


# --- history --------------------------------------------------------------------------------


def test_history_without_a_store(remediator: Run, tour_config: Path, tmp_path: Path) -> None:
    result = remediator("history", "--config", "remediator.yaml")

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "no history yet: state/remediator.db does not exist\n"
    assert not (tmp_path / "state").exists()


def test_history_prints_escape_sequences_escaped(
    remediator: Run, tour_config: Path, tmp_path: Path
) -> None:
    async def write() -> None:
        store = SqliteStore(tmp_path / "state" / "remediator.db")
        await store.open()
        entry = AuditEntry(
            kind="audit", event="mute", message="reason \x1b]0;pwned\x07\nforged", at=0.0
        )
        await store.put_setting("x", 1, 0.0, entry)
        await store.close()

    asyncio.run(write())
    result = remediator("history", "--config", "remediator.yaml")
    assert result.returncode == 0
    assert "\x1b" not in result.stdout
    assert "\x07" not in result.stdout
    assert "reason \\x1b]0;pwned\\x07\\nforged" in result.stdout
