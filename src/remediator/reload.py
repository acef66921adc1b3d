"""Reload: read the configuration again, validate all of it, and swap it in between two batches,
as Prometheus and Alertmanager do on SIGHUP or `POST /-/reload`.

A config with any problem is refused as a whole: the running one stays, every problem is logged,
and `remediator_config_last_reload_successful` drops to 0. A good one is swapped in while the
engine is between batches (no webhook or timer is dropped: they wait in the queue), and the
audit trail and Slack get one line saying what changed. A few settings are bound when the daemon
starts (RESTART_ONLY); a reload that changes them says that they wait for a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from remediator import heap
from remediator.clock import Clock
from remediator.config import Config
from remediator.errors import ConfigError
from remediator.metrics import Metrics
from remediator.rules import Rule
from remediator.schema import Secret
from remediator.store.records import AuditEntry, Changes
from remediator.types import Incidents, Notifier

log = logging.getLogger(__name__)


def _secret(secret: Secret | None) -> str | None:
    return None if secret is None else secret.reveal()


# What a reload cannot change, because it is bound when the daemon starts.
RESTART_ONLY: dict[str, Callable[[Config], Any]] = {
    "server.listen": lambda c: (c.server.host, c.server.port),
    "store": lambda c: repr(c.store),  # the backend, its file or DSN source, retention
    "executor.max_concurrency": lambda c: c.max_concurrency,
    "api_auth": lambda c: _secret(c.api_token),
    "slack bot token and base_url": lambda c: (_secret(c.slack.token), c.slack.base_url),
    "slack signing secret": lambda c: _secret(c.slack.signing_secret),
}


@dataclass(frozen=True, slots=True)
class Change:
    """What a new config changes against the running one."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()  # (previous name, name)
    restart: tuple[str, ...] = ()  # RESTART_ONLY settings that changed

    def summary(self) -> str:
        parts = [
            f"{label} {', '.join(names)}"
            for label, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.changed),
                ("renamed", [f"{old} -> {new}" for old, new in self.renamed]),
            )
            if names
        ]
        rules = "; ".join(parts) if parts else "no rule changed"
        if self.restart:
            rules += f" ({', '.join(self.restart)} changed: takes effect at the next restart)"
        return rules

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
            "renamed": [list(pair) for pair in self.renamed],
            "restart_required": list(self.restart),
        }


def diff(old: Config, new: Config) -> Change:
    before = {r.name: r for r in old.rules}
    renamed = tuple(
        (previous, r.name)
        for r in new.rules
        if r.name not in before
        for previous in r.previous_names
        if previous in before
    )
    moved = {old_name for old_name, _ in renamed} | {new_name for _, new_name in renamed}
    return Change(
        added=tuple(r.name for r in new.rules if r.name not in before and r.name not in moved),
        removed=tuple(n for n in before if new.rule(n) is None and n not in moved),
        changed=tuple(
            r.name
            for r in new.rules
            if r.name in before and _comparable(r) != _comparable(before[r.name])
        ),
        renamed=renamed,
        restart=tuple(name for name, read in RESTART_ONLY.items() if read(old) != read(new)),
    )


def _comparable(rule: Rule) -> Rule:
    """A rule without where it was written: moving it in its file changes nothing."""
    return replace(rule, source="", position=0)


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    message: str
    problems: tuple[str, ...] = ()
    change: Change | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "success" if self.ok else "error",
            "message": self.message,
            "problems": list(self.problems),
            "changes": None if self.change is None else self.change.as_dict(),
        }


class Reloader:
    """Reads `config.path` again on request and hands a valid config to `swap`, one reload at a
    time."""

    def __init__(
        self,
        config: Config,
        load: Callable[[Path], Config],
        swap: Callable[[Config], Awaitable[None]],
        store: Incidents,
        notifier: Notifier,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.config = config
        self._load = load
        self._swap = swap
        self.store = store
        self.notifier = notifier
        self.metrics = metrics
        self.clock = clock
        self._lock = asyncio.Lock()
        metrics.config_reload_ok.set(1)
        metrics.config_reload_time.set(clock.now())

    async def reload(self, by: str) -> Outcome:
        async with self._lock:
            try:
                new = self._load(self.config.path)
            except ConfigError as e:
                return await self._refused(e.problems, by)
            change = diff(self.config, new)
            for warning in new.warnings:  # rules skipped for a target that is not configured
                log.warning("reload: %s", warning)
            for setting in change.restart:
                log.warning("reload: %s changed; it takes effect at the next restart", setting)
            await self._swap(new)
            self.config = new
            heap.released()  # the old config was frozen with the daemon's start (heap.py)
            now = self.clock.now()
            self.metrics.config_reload_ok.set(1)
            self.metrics.config_reload_time.set(now)
            message = f"Configuration reloaded by {by}: {change.summary()}"
            log.info("%s", message)
            await self._audit("config_reloaded", message, by, change.as_dict())
            return Outcome(True, message, change=change)

    async def _refused(self, problems: list[str], by: str) -> Outcome:
        self.metrics.config_reload_ok.set(0)
        for problem in problems:
            log.error("reload refused: %s", problem)
        message = (
            f"Reload asked by {by} refused: {len(problems)} problem(s) in "
            f"{self.config.path}; the running configuration stays (first: {problems[0]})"
        )
        log.error("%s", message)
        await self._audit("config_reload_failed", message, by, {"problems": problems})
        return Outcome(False, message, tuple(problems))

    async def _audit(self, event: str, message: str, by: str, detail: dict[str, Any]) -> None:
        entry = AuditEntry(
            kind="control",
            event=event,
            message=message,
            at=self.clock.now(),
            actor=by,
            detail=detail,
        )
        applied = await self.store.apply(Changes(at=entry.at, audit=[entry]))
        await self.notifier.publish(applied.audit)
