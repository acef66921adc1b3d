"""Rules turn alerts into decisions: which incident an alert belongs to, and which tier it reaches.

A rule matches alerts with Alertmanager matchers, names the labels that identify one incident
(its incident key), optionally reads a number from an annotation or a label, and lists tiers: an
escalation ladder whose conditions are thresholds on that number. The RuleIndex finds the rules
that could match an alert without scanning all of them.
"""

from __future__ import annotations

import itertools
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from remediator.alerts import Alert
from remediator.matchers import Matcher, MatchOp, matches_all

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}


def parse_number(text: str) -> float:
    """A number as alerts and rules write it; a trailing % divides by 100 ("12.5%" is 0.125)."""
    text = text.strip()
    percent = text.endswith("%")
    if percent:
        text = text[:-1].rstrip()
    value = float(text)  # ValueError for anything else; accepts NaN and Inf as Prometheus does
    if percent and math.isfinite(value):
        return float(Decimal(text) / 100)  # exact: "35%" is 0.35, but 35 * 0.01 is not
    return value


@dataclass(frozen=True, slots=True)
class Condition:
    """`value > threshold` and friends. NaN satisfies no condition."""

    op: str
    threshold: float

    @classmethod
    def parse(cls, text: str) -> Condition:
        text = text.strip()
        for symbol in _OPERATORS:  # two-character operators first
            if text.startswith(symbol):
                try:
                    threshold = parse_number(text[len(symbol) :])
                except ValueError:
                    break
                if math.isnan(threshold):
                    break
                return cls(symbol, threshold)
        raise ValueError(f"invalid condition {text!r} (e.g. '> 5%', '>= 0.1', '< 100')")

    @property
    def rising(self) -> bool:
        return self.op in (">", ">=")

    @property
    def ordering(self) -> bool:
        """A threshold that can rank tiers: not == or !=."""
        return self.op not in ("==", "!=")

    def holds(self, value: float) -> bool:
        return not math.isnan(value) and _OPERATORS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return f"{self.op} {self.threshold:g}"


@dataclass(frozen=True, slots=True)
class ValueSource:
    """Where a rule reads its number: an annotation (usually `{{ $value }}`) or a label."""

    kind: str  # "annotation" or "label"
    name: str

    def read(self, alert: Alert) -> float | str:
        """The value, or a sentence saying why there is none."""
        source = alert.annotations if self.kind == "annotation" else alert.labels
        text = source.get(self.name)
        if text is None:
            return f"{self.kind} {self.name!r} is missing"
        try:
            return parse_number(text)
        except ValueError:
            return f"{self.kind} {self.name!r} is not a number: {text!r}"

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class Repeats:
    """`repeats: {count: 3, within: 1h}`: reached when the alert fired `count` times (distinct
    alert instances of the incident's key) within the window."""

    count: int
    within: float

    def fired(self, starts: Sequence[float], now: float) -> int:
        """How many of `starts` fall within the window ending `now`."""
        return sum(1 for t in starts if now - t <= self.within)

    def met(self, starts: Sequence[float], now: float) -> bool:
        return self.fired(starts, now) >= self.count


@dataclass(frozen=True, slots=True)
class Tier:
    """One rung of the ladder. A tier lists everything to do at its level; entering a high tier
    directly does not replay the tiers below it."""

    index: int
    name: str
    condition: Condition | None
    actions: tuple[str, ...]
    escalate_after: float | None = None  # still firing this long at this tier: climb
    repeats: Repeats | None = None
    approval: bool = False  # every action of this tier waits for a human's approval
    page: bool = False  # reaching this tier calls the rule's escalation policy (paging/)


@dataclass(frozen=True, slots=True)
class ResolvedStep:
    """An action to run when the incident resolves, optionally only if certain actions ran."""

    action: str
    if_ran: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    matchers: tuple[Matcher, ...]
    incident_key: tuple[str, ...]
    tiers: tuple[Tier, ...]
    value: ValueSource | None = None
    on_resolved: tuple[ResolvedStep, ...] = ()
    description: str = ""
    source: str = ""  # "file: rules[i]", for messages
    position: int = 0  # order across all rule files
    dry_run: bool = False
    cooldown: float | None = None
    one_at_a_time_by: tuple[str, ...] = ()  # labels making lanes of a target (lanes.py)
    during_maintenance: str = "hold"  # or "drop"
    channel: str = ""  # Slack channel for this rule's incidents ("": the default)
    templates: Mapping[str, str] = field(default_factory=dict)  # template name -> source
    escalation: str = ""  # the escalation policy that pages for it ("": paging's default)
    previous_names: tuple[str, ...] = ()  # names it had: its incidents and claims follow it

    def matches(self, labels: Mapping[str, str]) -> bool:
        return matches_all(self.matchers, labels)

    def tier_name(self, tier: int) -> str | None:
        """The name of tier number `tier`; None before the first tier (-1) or past the last."""
        return self.tiers[tier].name if 0 <= tier < len(self.tiers) else None

    def key_of(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        """The incident key's values; a missing label is the empty string, as in matchers."""
        return tuple(labels.get(name, "") for name in self.incident_key)

    def tier_for(self, value: float | None, starts: Sequence[float] = (), now: float = 0.0) -> int:
        """The highest tier whose condition the value meets, or whose `repeats` the alert's
        recent firings (`starts`) meet; -1 if none.

        A tier with neither is reached on opening only if it is the first one; later ones are
        reached by time (`escalate_after`) or by a failed verification."""
        reached = -1
        for tier in self.tiers:
            if tier.condition is None and tier.repeats is None:
                if tier.index == 0:
                    reached = 0
                continue
            by_value = (
                tier.condition is not None and value is not None and tier.condition.holds(value)
            )
            by_repeats = tier.repeats is not None and tier.repeats.met(starts, now)
            if by_value or by_repeats:
                reached = tier.index
        return reached

    @property
    def repeats_window(self) -> float:
        """The longest `repeats.within` of any tier (0 if none): how far back firings count."""
        return max((t.repeats.within for t in self.tiers if t.repeats), default=0.0)

    def action_names(self) -> set[str]:
        names = {name for tier in self.tiers for name in tier.actions}
        return names | {step.action for step in self.on_resolved}


def check_ladder(tiers: Sequence[Tier]) -> str | None:
    """Why the thresholds do not form a ladder, or None. Rising conditions must increase from
    tier to tier and falling ones decrease; one ladder does not mix directions."""
    conditioned = [t.condition for t in tiers if t.condition is not None]
    if any(not c.ordering for c in conditioned):
        return "tier conditions compare with >, >=, < or <=; == and != cannot rank tiers"
    if len({c.rising for c in conditioned}) > 1:
        return "tiers mix rising (>, >=) and falling (<, <=) conditions"
    for lower, higher in itertools.pairwise(conditioned):
        ascending = higher.threshold > lower.threshold
        if ascending != lower.rising or higher.threshold == lower.threshold:
            order = "increase" if lower.rising else "decrease"
            return f"tier thresholds must {order} up the ladder ({lower} then {higher})"
    return None


@dataclass(slots=True)
class RuleIndex:
    """Finds the rules matching an alert without trying them all: matching costs what the
    candidate rules cost, not what all rules do.

    A rule is filed under one equality matcher (alertname when it has one). A rule without one is
    filed under a regex matcher that is an alternation of literals (`db-7|cache-7`: under each
    literal) or a literal prefix (`Disk7.*`: in a table probed with the alert's value cut to the
    prefix's length). Only rules with none of these are tried on every alert. Filing only narrows
    the candidates: each candidate's matchers are still all checked."""

    rules: tuple[Rule, ...]
    _by_label: dict[str, dict[str, list[Rule]]] = field(default_factory=dict)
    _by_prefix: dict[str, dict[int, dict[str, list[Rule]]]] = field(default_factory=dict)
    _unindexed: list[Rule] = field(default_factory=list)
    _by_name: dict[str, Rule] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for rule in self.rules:
            self._by_name[rule.name] = rule
            self._file(rule)

    def _file(self, rule: Rule) -> None:
        key = _index_key(rule.matchers)
        if key is not None:
            self._by_label.setdefault(key[0], {}).setdefault(key[1], []).append(rule)
            return
        for m in rule.matchers:
            if m.op is not MatchOp.RE:
                continue
            if literals := _ALTERNATION.fullmatch(m.value):
                for literal in literals.group(1).split("|"):
                    self._by_label.setdefault(m.name, {}).setdefault(literal, []).append(rule)
                return
            if prefix := _PREFIX.fullmatch(m.value):
                text = prefix.group(1)
                by_length = self._by_prefix.setdefault(m.name, {})
                by_length.setdefault(len(text), {}).setdefault(text, []).append(rule)
                return
        self._unindexed.append(rule)

    def candidates(self, labels: Mapping[str, str]) -> list[Rule]:
        # an alert has one value per label, so a rule filed under several literals of one
        # matcher comes out at most once
        found: list[Rule] = list(self._unindexed)
        for name, table in self._by_label.items():
            found.extend(table.get(labels.get(name, ""), ()))
        for name, by_length in self._by_prefix.items():
            value = labels.get(name, "")
            for length, table in by_length.items():
                found.extend(table.get(value[:length], ()))
        if len(found) > 1:
            found.sort(key=lambda r: r.position)
        return found

    def match(self, labels: Mapping[str, str]) -> list[Rule]:
        """Every rule that matches, in the order the rules were written."""
        return [rule for rule in self.candidates(labels) if rule.matches(labels)]

    def get(self, name: str) -> Rule | None:
        return self._by_name.get(name)


# a regex the index can file a rule under: literals (no regex syntax) in an alternation, or one
# literal followed by .* (Alertmanager anchors regexes, so these match only what they spell)
_LITERAL = r"[A-Za-z0-9_:\-]+"
_ALTERNATION = re.compile(rf"\(?({_LITERAL}(?:\|{_LITERAL})*)\)?")
_PREFIX = re.compile(rf"({_LITERAL})\.\*")


def _index_key(matchers: Iterable[Matcher]) -> tuple[str, str] | None:
    equalities = [m for m in matchers if m.is_equality]
    for m in equalities:
        if m.name == "alertname":
            return (m.name, m.value)
    return (equalities[0].name, equalities[0].value) if equalities else None
