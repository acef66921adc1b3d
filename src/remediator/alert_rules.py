"""Prometheus alerting rules, as remediator reads them: the alerts its rules act on.

Read from rule files (`groups[].rules[]`, the format `promtool check rules` checks) or from a
running Prometheus's `/api/v1/rules`. `remediator docs` shows each rule's expression beside the
remediator rule acting on it; `remediator backtest` evaluates them over Prometheus's history.
Recording rules are skipped.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remediator.config import read_yaml
from remediator.errors import ConfigError
from remediator.rules import Rule
from remediator.schema import Invalid, Node, parse_duration

RULE_KEYS = frozenset({"alert", "expr", "for", "keep_firing_for", "labels", "annotations"})
GROUP_KEYS = frozenset({"name", "interval", "rules", "limit", "query_offset"})


@dataclass(frozen=True, slots=True)
class AlertingRule:
    """One `- alert:` entry."""

    name: str
    expr: str
    for_: float = 0.0
    keep_firing_for: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    source: str = ""  # "file: groups[0].rules[1]", or "prometheus: group <name>"
    file: Path | None = None  # the rule file, when read from one

    def could_feed(self, rule: Rule) -> bool:
        """Whether alerts of this rule can match the remediator rule: its matchers on alertname
        and on the alerting rule's own labels must hold (labels from the expression are unknown
        here, so matchers on them are given the benefit of the doubt)."""
        known = {"alertname": self.name, **self.labels}
        return all(m.matches(known) for m in rule.matchers if m.name in known)


def load_files(paths: Iterable[str | Path]) -> list[AlertingRule]:
    """The alerting rules of these files (a directory stands for its *.yml and *.yaml);
    ConfigError lists every problem."""
    rules: list[AlertingRule] = []
    problems: list[str] = []
    for path in _expand(paths):
        try:
            rules.extend(_file(path))
        except ConfigError as e:
            problems.extend(e.problems)
    if problems:
        raise ConfigError(problems)
    return rules


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix in (".yml", ".yaml")))
        elif any(ch in str(path) for ch in "*?["):
            found.extend(Path(p) for p in sorted(glob.glob(str(path))))
        else:
            found.append(path)
    return found


def _file(path: Path) -> list[AlertingRule]:
    root = read_yaml(path)
    try:
        groups = root.mapping({"groups"}).children("groups")
        return [rule for group in groups for rule in _group(group.mapping(GROUP_KEYS), path)]
    except Invalid as e:
        raise ConfigError([str(e)]) from None


def _group(group: Node, path: Path) -> list[AlertingRule]:
    """The group's alerting rules; recording rules are skipped."""
    return [_rule(node, path) for node in group.children("rules") if not node.has("record")]


def _rule(node: Node, path: Path) -> AlertingRule:
    node.mapping(RULE_KEYS)
    return AlertingRule(
        name=node.require("alert").string(),
        expr=str(node.require("expr").value).strip(),
        for_=node.opt("for", Node.duration, 0.0),
        keep_firing_for=node.opt("keep_firing_for", Node.duration, 0.0),
        labels=node.string_map("labels"),
        annotations=node.string_map("annotations"),
        source=f"{node.file}: {node.path}",
        file=path,
    )


def from_api(data: Mapping[str, Any]) -> list[AlertingRule]:
    """The alerting rules in the `data` of Prometheus's `GET /api/v1/rules?type=alert`."""
    rules = []
    for group in data.get("groups") or []:
        for r in group.get("rules") or []:
            if r.get("type") != "alerting":
                continue
            rules.append(
                AlertingRule(
                    name=str(r["name"]),
                    expr=str(r["query"]),
                    for_=float(r.get("duration") or 0.0),
                    keep_firing_for=float(r.get("keepFiringFor") or 0.0),
                    labels={str(k): str(v) for k, v in (r.get("labels") or {}).items()},
                    annotations={str(k): str(v) for k, v in (r.get("annotations") or {}).items()},
                    source=f"prometheus: group {group.get('name', '?')!s}",
                )
            )
    return rules


def feeding(rule: Rule, rules: Sequence[AlertingRule]) -> list[AlertingRule]:
    """The alerting rules whose alerts the remediator rule can act on."""
    return [r for r in rules if r.could_feed(rule)]


def duration(text: str) -> float:
    """A Prometheus duration from the command line; ValueError names it."""
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError(f"invalid duration {text!r} (e.g. 1m, 30s, 1h)") from None
