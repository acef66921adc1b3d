"""What operators can do, whoever asks (the API, the CLI through it, Slack): the kill switch,
mutes, approvals and circuit breakers. Every change is audited with who asked and why."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from remediator import commands, guardrails
from remediator.clock import Clock, iso
from remediator.config import Config
from remediator.errors import Conflict, ControlError, NotFound
from remediator.executor import Executor
from remediator.incidents import Incident
from remediator.matchers import MatcherError, parse_matchers
from remediator.metrics import Metrics
from remediator.schema import format_duration
from remediator.store.records import (
    MANUAL_STEP,
    Approval,
    AuditEntry,
    Changes,
    Claim,
    IncidentWrite,
    MuteRow,
    NewClaim,
)
from remediator.types import ControlStore, Notifier

KILLSWITCH = "killswitch"
MANUAL = MANUAL_STEP  # the rule, step and status of what a person asked for by hand
MAX_MUTE = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class Killswitch:
    on: bool
    source: str  # config | runtime
    by: str = ""
    reason: str = ""
    at: str | None = None


class Control:
    def __init__(
        self,
        config: Config,
        store: ControlStore,
        executor: Executor,
        notifier: Notifier,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.config = config
        self.store = store
        self.executor = executor
        self.notifier = notifier
        self.metrics = metrics
        self.clock = clock
        self._announced_mutes: set[int] = set()
        self.acked: Callable[[int], None] = lambda incident_id: None  # the engine's cache
        # the engine's close (set by the daemon): incident id, reason, by -> closed or None
        self.closer: Callable[[int, str, str], Awaitable[Incident | None]] | None = None

    async def load(self) -> None:
        """The kill switch as last set at runtime, else as configured; gauges from the store."""
        switch = await self.killswitch()
        self.executor.state.killswitch = switch.on
        self.metrics.killswitch.set(1 if switch.on else 0)
        await self.refresh_gauges()
        for target in self.config.targets:
            await self.executor.refresh_circuit(target)

    async def refresh_gauges(self) -> None:
        now = self.clock.now()
        self.metrics.mutes_active.set(len(await self.store.mutes(now)))
        self.metrics.approvals_pending.set((await self.store.pending_approvals())[0])

    async def record(self, entry: AuditEntry) -> None:
        """Audit something that changes nothing (a refused Slack request)."""
        applied = await self.store.apply(Changes(at=entry.at, audit=[entry]))
        await self.notifier.publish(applied.audit)

    # -- kill switch ---------------------------------------------------------------------------

    async def killswitch(self) -> Killswitch:
        stored = await self.store.get_setting(KILLSWITCH)
        if stored is None:
            return Killswitch(self.config.guardrails.killswitch, "config")
        return Killswitch(
            bool(stored["on"]),
            "runtime",
            stored.get("by", ""),
            stored.get("reason", ""),
            stored.get("at"),
        )

    async def set_killswitch(self, on: bool, by: str, reason: str) -> Killswitch:
        now = self.clock.now()
        value = {"on": on, "by": by, "reason": reason, "at": iso(now)}
        state = "ON: remediator takes no action" if on else "off: remediator acts again"
        because = f" ({reason})" if reason else ""
        entry = await self.store.put_setting(
            KILLSWITCH,
            value,
            now,
            self._audit(
                "killswitch_on" if on else "killswitch_off",
                f"Kill switch {state}; set by {by}{because}",
                by,
                now,
            ),
        )
        self.executor.state.killswitch = on
        self.metrics.killswitch.set(1 if on else 0)
        await self.notifier.publish([entry])
        if not on:
            await self.executor.release(
                f"the kill switch was turned off by {by}", lambda c: c.hold_until is None
            )
        return await self.killswitch()

    # -- mutes ---------------------------------------------------------------------------------

    async def add_mute(
        self,
        *,
        rule: str | None,
        target: str | None,
        matchers: str | None,
        duration: float,
        reason: str,
        by: str,
    ) -> MuteRow:
        self._check_mute(rule, target, matchers, duration, reason)
        now = self.clock.now()
        scope = ", ".join(
            f"{k} {v}" for k, v in (("rule", rule), ("target", target), ("labels", matchers)) if v
        )

        def audit(mute: MuteRow) -> AuditEntry:
            return self._audit(
                "muted",
                f"Muted {scope} (mute {mute.id}) for {format_duration(duration)} by {by}: {reason}",
                by,
                now,
                mute_id=mute.id,
            )

        mute, entry = await self.store.add_mute(
            MuteRow(0, rule, target, matchers or None, reason, by, now, now + duration), audit
        )
        await self.refresh_gauges()
        await self.notifier.publish([entry])
        self.executor.wake(mute.until)
        return mute

    def _check_mute(
        self,
        rule: str | None,
        target: str | None,
        matchers: str | None,
        duration: float,
        reason: str,
    ) -> None:
        if not (rule or target or matchers):
            raise ControlError("a mute names a rule, a target or label matchers")
        if rule is not None and self.config.rule(rule) is None:
            raise ControlError(f"unknown rule {rule!r}")
        if target is not None and target not in self.config.all_targets():
            known = ", ".join(sorted(self.config.all_targets()))
            raise ControlError(f"unknown target {target!r} (known: {known})")
        if matchers:
            try:
                parse_matchers(matchers)
            except MatcherError as e:
                raise ControlError(f"matchers: {e}") from None
        if not 0 < duration <= MAX_MUTE:
            raise ControlError(f"duration must be between 1s and {format_duration(MAX_MUTE)}")
        if not reason.strip():
            raise ControlError("a mute needs a reason")

    async def end_mute(self, mute_id: int, by: str) -> None:
        now = self.clock.now()
        entry = self._audit("unmuted", f"Mute {mute_id} ended by {by}", by, now)
        if not await self.store.end_mute(mute_id, by, now, entry):
            raise NotFound(f"no active mute {mute_id}")
        await self.refresh_gauges()
        await self.notifier.publish([entry])
        await self.executor.release(
            f"mute {mute_id} was ended by {by}", lambda c: f"by mute {mute_id} (" in c.detail
        )

    async def mutes(self, include_inactive: bool = False) -> list[dict[str, Any]]:
        now = self.clock.now()
        return [mute_view(m, now) for m in await self.store.mutes(now, include_inactive)]

    # -- approvals -----------------------------------------------------------------------------

    async def decide(self, approval_id: int, approve: bool, by: str, reason: str = "") -> Approval:
        """Approve or deny. An expired or already decided approval is a Conflict."""
        now = self.clock.now()
        verb = "approved" if approve else "denied"
        because = f": {reason}" if reason else ""
        entry = self._audit(
            f"approval_{verb}",
            f"Approval {approval_id} {verb} by {by}{because}",
            by,
            now,
            approval_id=approval_id,
        )
        approval, problem = await self.store.decide_approval(
            approval_id, approve, by, reason, now, entry
        )
        if approval is None:
            raise NotFound(problem)
        if problem:
            raise Conflict(problem)
        await self.refresh_gauges()
        await self.notifier.publish([_with_incident(entry, approval)])
        if approve:
            claim = await self.store.claim(approval.claim_id)
            if claim is not None:
                self.executor.submit([claim])
        return approval

    async def approvals(self, status: str | None = "pending") -> list[dict[str, Any]]:
        return [approval_view(a) for a in await self.store.approvals(status)]

    # -- incidents and manual actions ----------------------------------------------------------

    async def ack(self, incident_id: int, by: str) -> None:
        """A human owns the incident: escalate-after stops paging; the guardrails stay."""
        now = self.clock.now()
        entry = AuditEntry(
            kind="control",
            event="acknowledged",
            message=f"Incident {incident_id} acknowledged by {by}",
            at=now,
            actor=by,
            incident_id=incident_id,
        )
        incident = await self.store.incident(incident_id)
        if incident is None:
            raise NotFound(f"no incident {incident_id}")
        entry = replace(entry, rule=incident["rule"])
        if not await self.store.ack_incident(incident_id, by, now, entry):
            raise Conflict(f"incident {incident_id} is {incident['status']}, not open")
        self.acked(incident_id)
        await self.notifier.publish([entry])

    async def close(self, incident_id: int, reason: str, by: str) -> Incident:
        """Close an open incident by hand: nothing runs; audited and told in Slack."""
        if not reason.strip():
            raise ControlError("say why the incident is closed by hand (a reason)")
        closed = None if self.closer is None else await self.closer(incident_id, reason, by)
        if closed is not None:
            return closed
        incident = await self.store.incident(incident_id)
        if incident is None:
            raise NotFound(f"no incident {incident_id}")
        raise Conflict(f"incident {incident_id} is {incident['status']}, not open")

    async def manual_action(
        self, verb: str, target: str, by: str, params: Mapping[str, str] | None = None
    ) -> Claim:
        """`/remediate restart kafka-connect connector=postgres-sink`: the configured action,
        with the parameters as its labels, through the same guardrails, executor and audit as
        an automatic one, under an incident of its own (status manual)."""
        actions = self.config.slack.verbs.get(verb, {})
        if target not in actions:
            known = ", ".join(sorted(actions)) or "none configured"
            raise NotFound(f"unknown target {target!r} for {verb} (known: {known})")
        name = actions[target]
        action = self.config.actions[name]
        given = {"alertname": commands.MANUAL_ALERTNAME, **(params or {})}
        lacking = commands.missing(action, given)
        if lacking:
            wanted = " ".join(f"{label}=<value>" for label in lacking)
            raise ControlError(f"{verb} {target} ({name}) needs {wanted}")
        now = self.clock.now()
        incident = Incident(
            id=-1,
            rule=MANUAL,
            key=(verb, target, by, iso(now) or ""),
            status=MANUAL,
            tier=-1,
            value=None,
            opened_at=now,
            tier_at=now,
            updated_at=now,
        )
        labels = {**given, "verb": verb, "target": target, "requested_by": by}
        changes = Changes(at=now)
        changes.incidents.append(IncidentWrite(incident, labels, labels, {}))
        changes.claims.append(
            NewClaim(
                -1,
                MANUAL,
                name,
                action.kind,
                action.target,
                MANUAL,
                str(uuid.uuid4()),
                {"labels": labels},
                now,
            )
        )
        changes.audit.append(
            AuditEntry(
                kind="action",
                event="manual_requested",
                message=f"{by} asked to {verb} {target} ({name})",
                at=now,
                incident_id=-1,
                rule=MANUAL,
                tier=MANUAL,
                action=name,
                actor=by,
            )
        )
        applied = await self.store.apply(changes)
        await self.notifier.publish(applied.audit)
        self.executor.submit(applied.claims)
        return applied.claims[0]

    # -- circuit breakers ----------------------------------------------------------------------

    async def circuits(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        views = []
        for target in sorted(self.config.all_targets()):
            breaker = self.config.breaker(target)
            failures = await self.store.target_failures(target)
            until = None if breaker is None else guardrails.circuit_open_until(failures, breaker)
            state = (
                "disabled"
                if breaker is None
                else "closed"
                if until is None
                else "open"
                if now < until
                else "half_open"
            )
            views.append(
                {
                    "target": target,
                    "state": state,
                    "failures": len(failures),
                    "open_until": iso(until) if state == "open" else None,
                }
            )
        return views

    async def reset_circuit(self, target: str, by: str) -> None:
        if target not in self.config.all_targets():
            raise NotFound(f"unknown target {target!r}")
        now = self.clock.now()
        entry = self._audit(
            "circuit_reset", f"Circuit breaker of {target!r} closed by {by}", by, now
        )
        await self.store.reset_circuit(target, by, now, entry)
        await self.executor.refresh_circuit(target)
        await self.notifier.publish([entry])

    # -- timers --------------------------------------------------------------------------------

    async def expire(self, now: float) -> None:
        """Expire approvals past their time (their actions never run) and announce mutes that
        ran out."""
        entries = [
            AuditEntry(
                kind="action",
                event="approval_expired",
                message=f"Approval {a.id} for {a.action} expired unanswered; it will not run",
                at=now,
                incident_id=a.incident_id,
                rule=a.rule,
                action=a.action,
                detail={"approval_id": a.id, "claim_id": a.claim_id},
            )
            for a in await self.store.expire_approvals(now)
        ]
        for a in entries:
            self.metrics.guardrail_refusals.labels("approval").inc()
            self.metrics.actions.labels(self.config.action_kind(a.action), "refused").inc()
        for mute in await self.store.mutes(now, include_inactive=True):
            if mute.ended_at is None and mute.until <= now and mute.id not in self._announced_mutes:
                self._announced_mutes.add(mute.id)
                entries.append(
                    self._audit(
                        "mute_expired", f"Mute {mute.id} expired ({mute.reason})", "remediator", now
                    )
                )
        if entries:
            await self.refresh_gauges()
            applied = await self.store.apply(Changes(at=now, audit=entries))  # the trail tells it
            await self.notifier.publish(applied.audit)

    async def next_due(self) -> float | None:
        now = self.clock.now()
        _, first_expiry = await self.store.pending_approvals()
        times = [] if first_expiry is None else [first_expiry]
        times += [m.until for m in await self.store.mutes(now)]
        return min(times, default=None)

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _audit(event: str, message: str, by: str, now: float, **detail: Any) -> AuditEntry:
        return AuditEntry(
            kind="control", event=event, message=message, at=now, actor=by, detail=detail
        )


def _with_incident(entry: AuditEntry, approval: Approval) -> AuditEntry:
    return replace(
        entry, incident_id=approval.incident_id, rule=approval.rule, action=approval.action
    )


def mute_view(m: MuteRow, now: float) -> dict[str, Any]:
    view = asdict(m)
    view.update(
        created_at=iso(m.created_at),
        until=iso(m.until),
        ended_at=iso(m.ended_at),
        active=m.ended_at is None and m.until > now,
    )
    return view


def approval_view(a: Approval) -> dict[str, Any]:
    view = asdict(a)
    view.update(
        requested_at=iso(a.requested_at), expires_at=iso(a.expires_at), decided_at=iso(a.decided_at)
    )
    return view
