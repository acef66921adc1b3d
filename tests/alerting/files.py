"""The alerting files and remediator's rule packs, loaded for the tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "alerting" / "prometheus" / "rules"
TESTS_DIR = ROOT / "alerting" / "prometheus" / "tests"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
TEST_FILES = sorted(TESTS_DIR.glob("*.yml"))
RULE_PACKS = sorted((ROOT / "rules").glob("*.yaml"))


def load(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def alert_rules(path: Path) -> Iterator[dict[str, Any]]:
    for group in load(path)["groups"]:
        yield from (rule for rule in group["rules"] if "alert" in rule)


def all_alerts() -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES for rule in alert_rules(path)]


def rule_pack_rules() -> list[dict[str, Any]]:
    return [rule for path in RULE_PACKS for rule in load(path).get("rules", [])]
