"""The daemon's deciding parts, run on a scratch store with a fake clock, every target replaced by a
recorder: what `remediator replay` and `remediator backtest` feed past notifications through.

The engine, the incidents' state machine, the executor and its guardrails, the control (approval
and mute expiry) and the timers are the daemon's own, unchanged: the sandbox only chooses what
they are given. Actions are prepared, judged by every guardrail and started as in the daemon, but
their attempt is recorded instead of sent, and succeeds at once. Preconditions and verifications
ask nothing and are assumed to hold. Approvals are asked and never answered: a person's answer is
not in the history. Nothing goes to Slack.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry

from remediator.actions.base import (
    AttemptContext,
    AttemptResult,
    Clients,
    Prepared,
    RenderContext,
    RetryPolicy,
)
from remediator.alerts import Notification
from remediator.checks import Check, CheckResult, Verification
from remediator.clock import FakeClock
from remediator.config import ActionPolicy, Config, SlackConfig
from remediator.control import Control
from remediator.engine import Engine
from remediator.executor import Executor
from remediator.metrics import Metrics
from remediator.scheduler import Timers
from remediator.store.records import AuditEntry
from remediator.store.sqlite import SqliteStore
from remediator.types import Action

ASSUMPTIONS = (
    "every action is recorded, not sent, and succeeds at once",
    "preconditions and verifications are assumed to hold (no target is asked)",
    "approvals are asked and never answered: they expire, or are cancelled when the incident "
    "resolves",
    "the kill switch and mutes start as the config sets them; runtime changes are not replayed",
    "notifications are decided one at a time, at the time they were received",
)
# What an earlier action returned, for `{$results.ACTION.FIELD}` of a later one: a stand-in of
# each kind's output, since the recorder sent nothing.
STAND_IN_OUTPUT = {
    "alertmanager_silence": {"silenceID": "recorded-silence", "endsAt": ""},
    "kubernetes": {"previous_replicas": 1, "replicas": 0},
}
NUDGE = 0.001  # seconds: how far the fake clock moves when a timer is still due after it ran


@dataclass(frozen=True, slots=True)
class Recorder:
    """An action whose attempt is recorded, never sent."""

    inner: Action

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def kind(self) -> str:
        return self.inner.kind

    @property
    def target(self) -> str:
        return self.inner.target

    @property
    def timeout(self) -> float:
        return self.inner.timeout

    @property
    def retry(self) -> RetryPolicy:
        return self.inner.retry

    def prepare(self, ctx: RenderContext) -> Prepared:
        return self.inner.prepare(ctx)

    def describe(self, prepared: Prepared) -> str:
        return self.inner.describe(prepared)

    async def attempt(self, prepared: Prepared, ctx: AttemptContext) -> AttemptResult:
        output = json.dumps(STAND_IN_OUTPUT.get(self.kind, {}))
        return AttemptResult(True, "recorded, not sent", output=output)


@dataclass(frozen=True, slots=True)
class Assumed:
    """A check that asks nothing and holds."""

    inner: Check

    def describe(self) -> str:
        return self.inner.describe()

    async def evaluate(self, ctx: RenderContext, clients: Clients) -> CheckResult:
        return CheckResult(True, f"assumed to hold: {self.inner.describe()}")


def recorded(config: Config, store_path: Path) -> Config:
    """The config with every action a recorder, every check assumed, no Slack, and the store at
    `store_path`."""
    return replace(
        config,
        actions={name: Recorder(action) for name, action in config.actions.items()},
        action_policies={name: _assumed(p) for name, p in config.action_policies.items()},
        slack=SlackConfig(),
        store_path=store_path,
    )


def _assumed(policy: ActionPolicy) -> ActionPolicy:
    verify = policy.verify
    return replace(
        policy,
        precondition=None if policy.precondition is None else Assumed(policy.precondition),
        verify=None
        if verify is None
        else Verification(Assumed(verify.check), verify.every, verify.within),
    )


class Silent:
    """The notifier: nothing goes to Slack; the audit in the scratch store is the record."""

    async def publish(self, entries: list[AuditEntry]) -> None:
        return None


class Sandbox:
    """`async with Sandbox(config) as box:` then `await box.receive(at, body)` in time order, and
    `await box.finish(until)`; `box.store` holds the audit of what happened."""

    def __init__(self, config: Config) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="remediator-sandbox-", dir=fast_tmp())
        path = Path(self._dir.name) / "sandbox.db"
        self.config = recorded(config, path)
        self.clock = FakeClock(0.0)
        self.store = SqliteStore(path)
        metrics = Metrics(CollectorRegistry())
        silent = Silent()
        self.executor = Executor(self.store, self.config, silent, metrics, self.clock)
        self.engine = Engine(self.config, self.store, self.executor, silent, metrics, self.clock)
        self.control = Control(self.config, self.store, self.executor, silent, metrics, self.clock)
        self.timers = Timers(self.engine, self.executor, self.control, self.store, self.clock)
        self.executor.verify_failed = self.engine.verification_failed
        self.control.acked = self.engine.acked

    async def __aenter__(self) -> Sandbox:
        await self.store.open()
        await self.control.load()
        await self.engine.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.engine.stop()
        await self.executor.shutdown(0.0)
        await self.store.close()
        self._dir.cleanup()

    async def receive(self, at: float, body: str, notification: Notification) -> None:
        """A notification received at `at`: timers due before it run first."""
        await self.advance(at)
        journal_id = await self.store.append_journal(body, at)
        self.engine.submit(journal_id, notification)
        await self._settle()

    async def advance(self, until: float) -> None:
        """Run every timer due up to `until`, in order, then stand at `until`."""
        await run_timers(self.timers, self.clock, until, self._settle)

    async def _settle(self) -> None:
        """Until the engine and the executor have nothing left to do at this instant (a failed
        verification would go back to the engine, which may claim more; with assumed checks none
        fails, and the rounds are bounded)."""
        for _ in range(3):  # engine, executor, and the engine again for what they handed back
            await self.engine.idle()
            await self.executor.idle()

    async def audit(self) -> list[AuditEntry]:
        return await read_audit(self.store.audit_after)

    async def incident_keys(self, ids: set[int]) -> dict[int, tuple[str, str]]:
        return await read_keys(self.store.incident, ids)


async def run_timers(
    timers: Timers, clock: FakeClock, until: float, settle: Callable[[], Awaitable[None]]
) -> None:
    """Move a fake clock to `until`, running the timers at each moment one is due, as the
    daemon's scheduler does. A timer still due right after it ran (the storm's window ends when
    more than `within` has passed, not at `within`) would fire again at once in the daemon, a
    moment later by the real clock: the fake clock moves on by NUDGE."""
    while (due := await timers.next_due()) is not None and due <= until:
        now = clock.now()
        if due <= now:
            if now >= until:
                break
            due = min(now + NUDGE, until)
        clock.set(due)
        await timers.run_due()
        await settle()
    clock.set(max(until, clock.now()))


async def read_audit(
    audit_after: Callable[[int, int], Awaitable[list[AuditEntry]]], page: int = 1000
) -> list[AuditEntry]:
    """Every audit entry, oldest first, through the store's paged read."""
    entries: list[AuditEntry] = []
    while True:
        after = (entries[-1].id or 0) if entries else 0
        got = await audit_after(after, page)
        entries.extend(got)
        if len(got) < page:
            return entries


async def read_keys(
    incident: Callable[[int], Awaitable[Mapping[str, Any] | None]], ids: set[int]
) -> dict[int, tuple[str, str]]:
    """incident id -> (rule, "label=value, ...") of its key."""
    keys = {}
    for incident_id in sorted(ids):
        view = await incident(incident_id)
        if view is not None:
            key = ", ".join(f"{k}={v}" for k, v in view["key"].items())
            keys[incident_id] = (str(view["rule"]), key)
    return keys


def fast_tmp() -> str | None:
    """Scratch in memory when the system has it: the sandbox's commits need no durability."""
    shm = Path("/dev/shm")  # noqa: S108 (mkdtemp under it: private, mode 0700)
    return str(shm) if shm.is_dir() else None
