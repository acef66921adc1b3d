"""Everything that may refuse, hold or delay an action. Pure: state in, verdict out, no I/O.

Applied in this order, the first that objects decides:
1. kill switch  2. dry-run  3. mutes  4. maintenance windows  5. cooldown per (rule, target)
6. budgets (global, per action)  7. one action at a time per target  8. the target's circuit
breaker  9. approval for destructive actions.
The executor gathers the facts from the store, asks `decide`, and records every refusal with its
guardrail and reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from remediator.matchers import Matcher, matches_all
from remediator.schema import decimal, format_duration
from remediator.store.records import FAILED, SUCCEEDED, Needed

GUARDRAILS = (
    "killswitch",
    "dry_run",
    "mute",
    "maintenance",
    "cooldown",
    "budget",
    "circuit_breaker",
    "approval",
)
Outcome = Literal["allow", "refuse", "dry_run", "hold", "wait", "ask_approval", "await_approval"]


@dataclass(frozen=True, slots=True)
class Budget:
    max: int
    per: float

    def __str__(self) -> str:
        return f"{self.max} per {format_duration(self.per)}"


@dataclass(frozen=True, slots=True)
class Breaker:
    failures: int
    within: float
    open_for: float


@dataclass(frozen=True, slots=True)
class Mute:
    id: int
    reason: str
    until: float
    created_by: str
    rule: str | None = None
    target: str | None = None
    matchers: tuple[Matcher, ...] = ()

    def covers(self, rule: str, target: str, labels: Mapping[str, str], now: float) -> bool:
        """A mute names a rule, a target, label matchers, or several: all it names must match."""
        return (
            now < self.until
            and (self.rule is None or self.rule == rule)
            and (self.target is None or self.target == target)
            and matches_all(self.matchers, labels)
        )


@dataclass(frozen=True)
class Window:
    """A maintenance window: a cron schedule plus a duration, or fixed start and end. It applies
    to the rules and targets it names, or to everything when it names none."""

    name: str
    duration: float = 0.0
    cron: str | None = None
    timezone: str = "UTC"
    start: float | None = None
    end: float | None = None
    rules: frozenset[str] = frozenset()
    targets: frozenset[str] = frozenset()
    _trigger: CronTrigger | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.cron is not None:
            crontab, zone = _crontab(self.cron), ZoneInfo(self.timezone)
            trigger = CronTrigger.from_crontab(crontab, timezone=zone)
            object.__setattr__(self, "_trigger", trigger)

    def applies(self, rule: str, target: str) -> bool:
        return (not self.rules or rule in self.rules) and (
            not self.targets or target in self.targets
        )

    def active_until(self, now: float) -> float | None:
        """When the window that contains `now` ends, or None if `now` is outside it."""
        if self._trigger is None:
            inside = (
                self.start is not None and self.end is not None and self.start <= now < self.end
            )
            return self.end if inside else None
        end = None
        fire = self._trigger.get_next_fire_time(None, _dt(now - self.duration))
        while fire is not None and fire.timestamp() <= now:
            end = fire.timestamp() + self.duration
            fire = self._trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
        return end if end is not None and now < end else None

    def next_start(self, now: float) -> float | None:
        if self._trigger is None:
            return self.start if self.start is not None and self.start > now else None
        fire = self._trigger.get_next_fire_time(None, _dt(now))
        return None if fire is None else fire.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _crontab(expr: str) -> str:
    """`expr` with its day-of-week field as day names. Crontab counts days from Sunday (0 or 7),
    but APScheduler 3's from_crontab reads the numbers from Monday: "6" would be Sunday."""
    fields = expr.split()
    if len(fields) == 5 and fields[4] != "*":
        fields[4] = ",".join(_WEEKDAYS[d] for d in sorted(_weekdays(fields[4])))
    return " ".join(fields)


def _weekdays(spec: str) -> set[int]:
    """The days (0 is Sunday) a crontab day-of-week field names: lists, ranges, steps, names."""
    days: set[int] = set()
    for item in spec.split(","):
        span, _, step = item.partition("/")
        low, _, high = ("0-6" if span == "*" else span).partition("-")
        first = _weekday(low)
        last = _weekday(high) if high else 6 if step else first
        if last < first:  # fri-sun
            last += 7
        days.update(d % 7 for d in range(first, last + 1, int(step or 1)))
    return days


def _weekday(text: str) -> int:
    day = decimal(text)
    if day is not None and day <= 7:
        return day
    if text.lower() not in _WEEKDAYS:
        raise ValueError(f"unknown day of week {text!r} (0-7 or sun-sat)")
    return _WEEKDAYS.index(text.lower())


@dataclass(frozen=True, slots=True)
class Policy:
    """What config says about one claim."""

    dry_run: bool = False
    cooldown: float | None = None
    during_maintenance: Literal["hold", "drop"] = "hold"
    on_killswitch: Literal["hold", "drop"] = "drop"
    on_mute: Literal["hold", "drop"] = "drop"
    global_budget: Budget | None = None
    action_budget: Budget | None = None
    breaker: Breaker | None = None
    approval_required: bool = False


def needed(policy: Policy) -> Needed:
    """The store's facts that `decide` reads under this policy: a cooldown the last start for
    another incident, a budget the starts, a breaker the target's failures, an approval the
    claim's approval. What it does not read need not be read."""
    return Needed(
        cooldown=policy.cooldown is not None,
        budgets=policy.global_budget is not None or policy.action_budget is not None,
        breaker=policy.breaker is not None,
        approval=policy.approval_required,
    )


@dataclass(frozen=True, slots=True)
class Ask:
    """The claim about to start."""

    rule: str
    action: str
    target: str
    labels: Mapping[str, str]
    now: float


@dataclass(frozen=True, slots=True)
class Facts:
    """What the store knows that bears on the claim."""

    killswitch: bool = False
    mutes: Sequence[Mute] = ()
    windows: Sequence[Window] = ()
    # the last start on this target by an earlier incident of the same rule and incident key
    last_other_start: float | None = None
    started_global: Sequence[float] = ()  # start times of every action, recent first or not
    started_action: Sequence[float] = ()  # start times of this action
    target_busy: bool = False
    failures: Sequence[float] = ()  # the target's failures since its last success or reset
    approval: str | None = None  # None, pending, approved, denied, expired
    approval_detail: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    guardrail: str = ""
    reason: str = ""
    until: float | None = None

    @property
    def refused(self) -> bool:
        return self.outcome == "refuse"


ALLOW = Verdict("allow")


def decide(policy: Policy, ask: Ask, facts: Facts) -> Verdict:
    for check in (
        _killswitch,
        _dry_run,
        _mutes,
        _maintenance,
        _cooldown,
        _budgets,
        _busy,
        _breaker,
        _approval,
    ):
        verdict = check(policy, ask, facts)
        if verdict is not None:
            return verdict
    return ALLOW


def _killswitch(policy: Policy, ask: Ask, facts: Facts) -> Verdict | None:
    if facts.killswitch and policy.on_killswitch == "hold":
        return Verdict(
            "hold",
            "killswitch",
            "held while the kill switch is on; judged again when it is turned off",
        )
    if facts.killswitch:
        return Verdict(
            "refuse",
            "killswitch",
            "the kill switch is on: dropped (guardrails.on_killswitch: drop), it will not run "
            "when the switch is turned off",
        )
    return None


def _dry_run(policy: Policy, ask: Ask, facts: Facts) -> Verdict | None:
    return Verdict("dry_run", "dry_run", "dry-run") if policy.dry_run else None


def _mutes(policy: Policy, ask: Ask, facts: Facts) -> Verdict | None:
    for mute in facts.mutes:
        if not mute.covers(ask.rule, ask.target, ask.labels, ask.now):
            continue
        if policy.on_mute == "hold":
            return Verdict(
                "hold",
                "mute",
                f"held by mute {mute.id} ({mute.reason}, by {mute.created_by}); judged again "
                f"when it ends, in {format_duration(mute.until - ask.now)} at the latest",
                until=mute.until,
            )
        return Verdict(
            "refuse",
            "mute",
            f"muted by mute {mute.id} ({mute.reason}, by "
            f"{mute.created_by}) for {format_duration(mute.until - ask.now)} more",
        )
    return None


def _maintenance(policy: Policy, ask: Ask, facts: Facts) -> Verdict | None:
    for window in facts.windows:
        end = window.active_until(ask.now) if window.applies(ask.rule, ask.target) else None
        if end is None:
            continue
        if policy.during_maintenance == "drop":
            return Verdict(
                "refuse",
                "maintenance",
                f"inside maintenance window {window.name!r}; "
                "this rule drops actions during maintenance",
            )
        return Verdict(
            "hold", "maintenance", f"held until maintenance window {window.name!r} ends", until=end
        )
    return None


def _cooldown(policy: Policy, ask: Ask, facts: Facts) -> Verdict | None:
    last = facts.last_other_start
    if policy.cooldown is None or last is None or ask.now - last >= policy.cooldown:
        return None
    left = format_duration(round(policy.cooldown - (ask.now - last)))
    return Verdict(
        "refuse",
        "cooldown",
        f"rule {ask.rule!r} acted on {ask.target!r} for this incident key "
        f"{format_duration(round(ask.now - last))} ago; cooldown has {left} left",
    )


def _budgets(policy: Policy, ask: Ask, facts: Facts) -> Verdict | None:
    for budget, starts, scope in (
        (policy.global_budget, facts.started_global, "all actions"),
        (policy.action_budget, facts.started_action, ask.action),
    ):
        if budget is None:
            continue
        used = sum(1 for t in starts if ask.now - t < budget.per)
        if used >= budget.max:
            return Verdict(
                "refuse",
                "budget",
                f"budget for {scope} spent: {used} actions in "
                f"the last {format_duration(budget.per)} (at most {budget.max})",
            )
    return None


def _busy(policy: Policy, ask: Ask, facts: Facts) -> Verdict | None:
    if facts.target_busy:
        return Verdict("wait", "one_at_a_time", f"another action is running on {ask.target!r}")
    return None


# The outcomes of actions that reached a target. A failed action counts against its target's
# breaker, and so does one that succeeded but whose verification failed; any other success ends
# the count (store/claims.py reads them so).
BREAKER_OUTCOMES = (SUCCEEDED, FAILED)


def circuit_open_until(failures: Sequence[float], breaker: Breaker) -> float | None:
    """If `failures` (since the target's last success or reset) tripped the breaker, when it
    stops being open: the last failure plus open_for. After that one attempt may pass
    (half-open); its failure opens the breaker again, its success closes it."""
    times = sorted(failures)
    n = breaker.failures
    tripped = any(times[i + n - 1] - times[i] <= breaker.within for i in range(len(times) - n + 1))
    return times[-1] + breaker.open_for if tripped else None


def _breaker(policy: Policy, ask: Ask, facts: Facts) -> Verdict | None:
    if policy.breaker is None:
        return None
    until = circuit_open_until(facts.failures, policy.breaker)
    if until is None or ask.now >= until:
        return None  # closed, or half-open: one attempt passes (one at a time per target)
    return Verdict(
        "refuse",
        "circuit_breaker",
        f"circuit open for {ask.target!r}: "
        f"{len(facts.failures)} failed actions; next attempt allowed in "
        f"{format_duration(round(until - ask.now))}",
        until=until,
    )


def _approval(policy: Policy, ask: Ask, facts: Facts) -> Verdict | None:
    if not policy.approval_required or facts.approval == "approved":
        return None
    if facts.approval is None:
        return Verdict("ask_approval", "approval", "waiting for a human's approval")
    if facts.approval == "pending":
        return Verdict("await_approval", "approval", "waiting for a human's approval")
    return Verdict("refuse", "approval", facts.approval_detail or f"approval {facts.approval}")
