"""What replay and backtest print: a timeline for people, a summary, the comparison with what
really happened, and the same as JSON. Built from audit entries, the daemon's own record, so the
replayed run and the live one are read the same way.

Incidents are named by rule, key and occurrence (`cdc-connector-down [alertname=ConnectorDown,
connector=sink] #2`, the second such incident in the range), never by id: ids differ between
the live store and the sandbox.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from remediator.clock import iso
from remediator.store.records import AuditEntry

STARTED = frozenset({"succeeded", "failed", "interrupted"})
QUIET = frozenset({"claimed"})  # every claim has its outcome line: the claim itself is noise
HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Line:
    """One step of the timeline."""

    at: float
    event: str
    message: str
    rule: str = ""
    key: str = ""
    occurrence: int = 0
    tier: str = ""
    action: str = ""
    target: str = ""
    claim: int | None = None

    @property
    def incident(self) -> str:
        return f"{self.rule} [{self.key}] #{self.occurrence}" if self.rule else "-"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "at": iso(self.at), "incident": self.incident}


def lines(
    entries: Iterable[AuditEntry],
    keys: Mapping[int, tuple[str, str]],
    targets: Mapping[str, str],
    since: float,
    until: float,
) -> list[Line]:
    """The audit entries in [since, until] as timeline lines. Only incidents that opened in the
    range are shown: the replay knows nothing before it."""
    occurrence: dict[int, int] = {}
    seen: Counter[tuple[str, str]] = Counter()
    tiers: dict[int, str] = {}  # claim id -> its step, for entries that do not carry it
    found = []
    for e in entries:
        if not since <= e.at <= until or e.event in QUIET:
            continue
        claim = _claim_id(e)
        if e.tier and claim is not None:
            tiers[claim] = e.tier
        if e.incident_id is not None and e.incident_id not in occurrence:
            if e.event != "opened" or e.incident_id not in keys:
                continue  # an incident that opened before the range
            seen[keys[e.incident_id]] += 1
            occurrence[e.incident_id] = seen[keys[e.incident_id]]
        rule, key = keys.get(e.incident_id or 0, (e.rule, ""))
        found.append(
            Line(
                at=e.at,
                event=e.event,
                message=e.message,
                rule=rule if e.incident_id else "",
                key=key,
                occurrence=occurrence.get(e.incident_id or 0, 0),
                tier=e.tier or tiers.get(claim or 0, ""),
                action=e.action,
                target=targets.get(e.action, ""),
                claim=claim,
            )
        )
    return found


def _claim_id(e: AuditEntry) -> int | None:
    value = e.detail.get("claim_id") if isinstance(e.detail, Mapping) else None
    return value if isinstance(value, int) else None


@dataclass(slots=True)
class Summary:
    notifications: int
    incidents: int = 0
    actions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (rule, target)
    refusals: Counter[str] = field(default_factory=Counter)  # guardrail
    budgets_hit: Counter[tuple[str, str]] = field(default_factory=Counter)  # (rule, action)
    approvals: list[Line] = field(default_factory=list)
    busiest_hour: tuple[float, int] | None = None  # (start of the hour, actions started)

    def as_dict(self) -> dict[str, Any]:
        hour = self.busiest_hour
        return {
            "notifications": self.notifications,
            "incidents": self.incidents,
            "actions": [
                {"rule": r, "target": t, "count": n} for (r, t), n in sorted(self.actions.items())
            ],
            "actions_total": sum(self.actions.values()),
            "refusals": dict(sorted(self.refusals.items())),
            "budgets_hit": [
                {"rule": r, "action": a, "refusals": n}
                for (r, a), n in sorted(self.budgets_hit.items())
            ],
            "approvals": [line.as_dict() for line in self.approvals],
            "busiest_hour": None if hour is None else {"start": iso(hour[0]), "actions": hour[1]},
        }


def summarise(found: Sequence[Line], notifications: int) -> Summary:
    summary = Summary(notifications)
    per_hour: Counter[float] = Counter()
    for line in found:
        if line.event == "opened":
            summary.incidents += 1
        elif line.event in STARTED:
            summary.actions[(line.rule, line.target)] += 1
            per_hour[line.at - line.at % HOUR] += 1
        elif line.event == "refused":
            guardrail = refused_by(line)
            summary.refusals[guardrail] += 1
            if guardrail == "budget":
                summary.budgets_hit[(line.rule, line.action)] += 1
        elif line.event == "approval_requested":
            summary.approvals.append(line)
    if per_hour:
        hour, count = max(per_hour.items(), key=lambda item: (item[1], -item[0]))
        summary.busiest_hour = (hour, count)
    return summary


def refused_by(line: Line) -> str:
    """The guardrail of a refusal: its message is `<action>: refused: <guardrail>: <reason>`."""
    return line.message.partition(": refused: ")[2].partition(":")[0] or "unknown"


# -- comparison with what happened -------------------------------------------------------------

ClaimKey = tuple[str, str, int, str, str]  # rule, key, occurrence, tier, action


def outcomes(found: Sequence[Line]) -> dict[ClaimKey, str]:
    """What became of each action of each incident, in words that both a replay and the live
    daemon can say: a person's answer to an approval, and what a target answered, are not
    replayed, so an approval asked is "approval asked" whatever followed, and an action that
    started is "ran" whether the target then said yes or no."""
    events: defaultdict[ClaimKey, list[Line]] = defaultdict(list)
    for line in found:
        if line.action and line.rule and line.tier:
            events[(line.rule, line.key, line.occurrence, line.tier, line.action)].append(line)
    return {key: _outcome(steps) for key, steps in events.items()}


def _outcome(steps: Sequence[Line]) -> str:
    names = [s.event for s in steps]
    if "approval_requested" in names:
        return "approval asked"
    if STARTED & set(names):
        return "ran"
    for step in reversed(steps):
        if step.event == "refused":
            return f"refused: {refused_by(step)}"
        if step.event in ("dry_run", "skipped", "precondition_failed", "held", "not_repeated"):
            return step.event.replace("_", " ")
    return names[-1] if names else "?"


@dataclass(frozen=True, slots=True)
class Difference:
    rule: str
    key: str
    occurrence: int
    tier: str
    action: str
    live: str | None
    replay: str | None

    @property
    def same(self) -> bool:
        return self.live == self.replay

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "same": self.same}


def compare(live: Sequence[Line], replayed: Sequence[Line]) -> list[Difference]:
    """Each action of each incident, as it went live and as the replay has it."""
    was, now = outcomes(live), outcomes(replayed)
    keys = sorted(set(was) | set(now), key=lambda k: (k[0], k[1], k[2], k[3], k[4]))
    return [Difference(*k, live=was.get(k), replay=now.get(k)) for k in keys]


# -- text --------------------------------------------------------------------------------------


def timeline_text(found: Sequence[Line]) -> list[str]:
    width = max((len(line.incident) for line in found), default=1)
    return [
        f"{_time(line.at)}  {line.incident:<{width}}  {line.event:<18} {line.message}"
        for line in found
    ]


def summary_text(summary: Summary, assumptions: Sequence[str]) -> list[str]:
    s = summary
    out = [
        f"{s.notifications} notifications, {s.incidents} incidents, "
        f"{sum(s.actions.values())} actions, {sum(s.refusals.values())} refusals, "
        f"{len(s.approvals)} approvals asked",
        "",
        "Actions per rule and target:",
        *(f"  {r:<36} {t:<24} {n}" for (r, t), n in sorted(s.actions.items())),
    ]
    if not s.actions:
        out.append("  none")
    out += ["", "Budgets hit:"]
    out += [f"  {a} ({r}): {n} refused" for (r, a), n in sorted(s.budgets_hit.items())] or [
        "  none"
    ]
    refusals = ", ".join(f"{g} {n}" for g, n in sorted(s.refusals.items()))
    out += [
        "",
        f"Refusals by guardrail: {refusals or 'none'}",
        "",
        "Approvals that would be asked:",
    ]
    out += [f"  {_time(a.at)}  {a.incident}  {a.action} on {a.target}" for a in s.approvals] or [
        "  none"
    ]
    hour = s.busiest_hour
    busiest = "none" if hour is None else f"{_time(hour[0])}, {hour[1]} actions"
    out += ["", f"Busiest hour: {busiest}", "", "Assumed:"]
    return out + [f"  - {a}" for a in assumptions]


def compare_text(differences: Sequence[Difference]) -> list[str]:
    same = sum(d.same for d in differences)
    out = [f"Compared with the audit: {same} the same, {len(differences) - same} different"]
    for d in differences:
        mark = "same   " if d.same else "DIFFERS"
        where = f"{d.rule} [{d.key}] #{d.occurrence} {d.tier} {d.action}"
        out.append(f"  {mark} {where}: live {d.live or 'nothing'}, replay {d.replay or 'nothing'}")
    return out


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
