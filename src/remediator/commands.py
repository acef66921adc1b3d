"""What a person's command must give the action it runs.

`/remediate restart kafka-connect connector=postgres-sink` runs the action `slack.verbs` maps
`restart kafka-connect` to, with the command's `key=value` parameters as the labels it reads (and
`alertname` "manual" unless given). An action is prepared once with a probe to learn what it
reads: the labels it needs are asked of the person; what no command can give (an alert's
annotations, another action's result) makes the mapping invalid, which `check` reports.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from remediator.actions.base import RenderContext
from remediator.errors import RenderError
from remediator.types import Action

MANUAL_ALERTNAME = "manual"
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Probe(Mapping[str, str]):
    """Labels that have every name, remembering which were asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return True

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return "probe"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def needs(action: Action) -> tuple[frozenset[str], str | None]:
    """The labels `action` reads, and what it needs that a command cannot give (None: nothing)."""
    probe = _Probe()
    try:
        action.prepare(RenderContext(labels=probe))
    except RenderError as e:
        return frozenset(probe.asked), str(e)
    return frozenset(probe.asked), None


def parameters(words: list[str]) -> dict[str, str]:
    """`connector=postgres-sink region=eu` as labels; ValueError naming a malformed word."""
    labels: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not _LABEL.fullmatch(key):
            raise ValueError(f"expected label=value, got {word!r}")
        labels[key] = value
    return labels


def missing(action: Action, given: Mapping[str, str]) -> list[str]:
    """The labels `action` reads that `given` lacks, sorted."""
    labels, _ = needs(action)
    return sorted(labels - set(given))
