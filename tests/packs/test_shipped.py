"""What ships: every rule pack loads in the example configuration through the real CLI, and every
pack and every action kind has its test and its README section."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from remediator.actions import default_registry
from tests.packs.world import ROOT
from tests.peers import REMEDIATOR

PACKS = sorted(p.stem for p in (ROOT / "rules").glob("*.yaml"))
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_remediator_check_passes_on_the_example_config_with_every_pack(tmp_path: Path) -> None:
    """examples/remediator.yaml as `make run` uses it: its rule_files glob takes every pack."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    (tmp_path / ".state").mkdir()
    for name in ("webhook-token", "api-token"):
        (tmp_path / ".state" / name).write_text("example-token\n")

    result = subprocess.run(
        [str(REMEDIATOR), "check", "--config", "examples/remediator.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )

    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    files = ", ".join(f"rules/{pack}.yaml" for pack in PACKS)
    assert result.stdout.startswith("examples/remediator.yaml: OK: ")
    assert result.stdout.endswith(f"(rule files: {files})\n")


def test_there_is_a_pack_per_runbook() -> None:
    assert PACKS == ["cdc", "incident", "ingestion", "migration"]


@pytest.mark.parametrize("pack", PACKS)
def test_every_pack_is_replayed_through_the_daemon_and_documented(pack: str) -> None:
    assert (ROOT / "tests" / "packs" / f"test_{pack}.py").is_file()
    assert f"\n### `rules/{pack}.yaml`" in README


@pytest.mark.parametrize("kind", default_registry().kinds())
def test_every_action_kind_has_its_tests_and_its_readme_section(kind: str) -> None:
    assert (ROOT / "tests" / "actions" / f"test_{kind}.py").is_file()
    assert f"\n**`{kind}`**" in README


def kind_keys() -> list[tuple[str, str]]:
    from remediator import checks, kubeconfig
    from remediator.actions import COMMON_KEYS, alertmanager_silence, kafka_connect, kubernetes, sql

    sets = {
        "kafka_connect": kafka_connect.KEYS - COMMON_KEYS,
        "kafka_connect check": checks.KAFKA_CONNECT_KEYS,
        "sql": sql.KEYS - COMMON_KEYS - {"dsn_env", "dsn_file"} | {"dsn_env` / `dsn_file"},
        "kubernetes": kubernetes.KEYS - COMMON_KEYS,
        "kubernetes workload": kubernetes.WORKLOAD_KEYS,
        "alertmanager_silence": alertmanager_silence.KEYS - COMMON_KEYS,
        "kubernetes target": {f"targets.<name>.kubernetes.{k}" for k in kubeconfig.KEYS}
        - {"targets.<name>.kubernetes.kubeconfig", "targets.<name>.kubernetes.context"}
        | {"targets.<name>.kubernetes.kubeconfig`, `.context"},
    }
    return sorted((where, key) for where, keys in sets.items() for key in keys)


@pytest.mark.parametrize(("where", "key"), kind_keys())
def test_every_key_of_the_new_kinds_is_documented(where: str, key: str) -> None:
    assert f"`{key}`" in README, f"{where}: {key}"
