"""Action kinds and their registry.

Every kind, the built-in ones included, registers the same way a user's plugin would: a factory
that reads the action's config into an object satisfying the Action protocol (remediator.types).
The registry refuses a duplicate name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from remediator.actions.base import RetryPolicy
from remediator.schema import MissingTarget, Node
from remediator.targets import Target
from remediator.types import Action

# read by every kind; `destructive`, `budget`, `precondition`, `verify`, `announce` and
# `on_interrupted` are read by config.py
COMMON_KEYS = frozenset(
    {
        "kind",
        "description",
        "timeout",
        "retries",
        "backoff",
        "destructive",
        "budget",
        "precondition",
        "verify",
        "announce",
        "on_interrupted",
        "once_per_incident",
    }
)
BACKOFF_KEYS = frozenset({"initial", "max", "multiplier"})
MAX_RETRIES = 50


@dataclass(frozen=True, slots=True)
class ActionCommon:
    """What every action has, whatever its kind."""

    name: str
    kind: str
    description: str
    timeout: float
    retry: RetryPolicy


@dataclass(frozen=True, slots=True)
class ParseEnv:
    """What a kind's factory may consult while reading its config."""

    targets: Mapping[str, Target]
    base_dir: Path

    def target(self, node: Node) -> Target:
        name = node.string()
        if name not in self.targets:
            known = ", ".join(sorted(self.targets)) or "none defined"
            raise MissingTarget(node.where(), name, f"unknown target {name!r} (known: {known})")
        return self.targets[name]

    def url_target(self, node: Node) -> Target:
        """A target to send HTTP requests to: it must have a URL."""
        target = self.target(node)
        if not target.url:
            raise node.fail(f"target {target.name!r} has no url")
        return target


ActionFactory = Callable[[Node, ActionCommon, ParseEnv], Action]


@dataclass(slots=True)
class KindDefaults:
    timeout: float
    retries: int


@dataclass(slots=True)
class ActionRegistry:
    _kinds: dict[str, tuple[ActionFactory, KindDefaults]] = field(default_factory=dict)

    def register(
        self, kind: str, factory: ActionFactory, *, timeout: float = 10.0, retries: int = 2
    ) -> None:
        if kind in self._kinds:
            raise ValueError(f"action kind {kind!r} is already registered")
        self._kinds[kind] = (factory, KindDefaults(timeout, retries))

    def kinds(self) -> list[str]:
        return sorted(self._kinds)

    def build(self, name: str, node: Node, env: ParseEnv) -> Action:
        """Read one named action definition."""
        if not isinstance(node.value, dict):
            raise node.fail("expected a mapping with a 'kind'")
        kind = node.require("kind").string()
        if kind not in self._kinds:
            known = ", ".join(self.kinds())
            raise node.child("kind").fail(f"unknown action kind {kind!r} (known: {known})")
        factory, defaults = self._kinds[kind]
        common = ActionCommon(
            name=name,
            kind=kind,
            description=node.opt("description", Node.string, ""),
            timeout=node.opt("timeout", Node.duration, defaults.timeout),
            retry=_retry(node, defaults.retries),
        )
        return factory(node, common, env)


def _retry(node: Node, default_retries: int) -> RetryPolicy:
    retries = node.opt("retries", _retries, default_retries)
    backoff = node.get("backoff")
    if backoff is None:
        return RetryPolicy(retries=retries)
    backoff.mapping(BACKOFF_KEYS)
    policy = RetryPolicy(
        retries=retries,
        initial=backoff.opt("initial", Node.duration, 1.0),
        maximum=backoff.opt("max", Node.duration, 30.0),
        multiplier=backoff.opt("multiplier", Node.number, 2.0),
    )
    if policy.multiplier < 1:
        raise backoff.child("multiplier").fail("must be at least 1")
    return policy


def _retries(node: Node) -> int:
    retries = node.integer(minimum=0)
    if retries > MAX_RETRIES:
        raise node.fail(f"at most {MAX_RETRIES} retries, got {retries}")
    return retries


def default_registry() -> ActionRegistry:
    """The built-in kinds, then any installed plugin's (entry point group `remediator.actions`,
    each entry a callable taking the registry)."""
    from remediator.actions import alertmanager_silence, kafka_connect, kubernetes, sql
    from remediator.actions import exec as exec_kind
    from remediator.actions import http as http_kind

    registry = ActionRegistry()
    for module in (http_kind, exec_kind, kafka_connect, sql, kubernetes, alertmanager_silence):
        module.register(registry)
    for entry in entry_points(group="remediator.actions"):
        entry.load()(registry)
    return registry
