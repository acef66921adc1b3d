"""Benchmark 3, rule scaling: RuleIndex.match per alert with 10, 1,000 and 10,000 rules.

In process, with the daemon's own classes (Rule, Tier, parse_matchers, RuleIndex). The same mix
at every size:

* 80 % rules on an alertname (`alertname="App00042Error"`, about 1.6 rules per alertname), half
  also with `severity=~"critical|warning"`, some with `namespace="ns-7"` or
  `instance!~"canary-.*"`;
* 15 % rules on a team and an alertname regex (`{team="team-3", alertname=~"(Kube|Node).*"}`):
  indexed by team;
* 5 % (at least one) rules the index cannot file: no equality matcher at all
  (`{alertname=~"Disk7.*", severity!="info"}`, `{job=~"db-7|cache-7"}`).

The alerts: 60 % carry an alertname some rule names, 20 % a Kube/Node alertname and a team,
20 % an alertname no rule names; every alert has the usual severity, namespace, team, instance,
job and cluster labels. Cost = wall time of matching all of them / their number, median of
several repeats. Baseline = the 10-rule figure, in the same run.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence

from bench.common import Figure, Section, median
from remediator.matchers import Matcher, MatchOp, parse_matchers
from remediator.rules import Rule, RuleIndex, Tier

SIZES = (10, 1_000, 10_000)
ALERTS = 5_000


def make_rules(n: int, unindexed_share: float = 0.05, seed: int = 3) -> list[Rule]:
    rnd = random.Random(seed)
    names = max(1, int(n / 1.6))
    teams = max(1, n // 20)
    unindexed = max(1, round(n * unindexed_share))
    rules = []
    for i in range(n):
        if i < unindexed:
            spec = rnd.choice(
                (
                    f'{{alertname=~"Disk{i}.*", severity!="info"}}',
                    f'{{job=~"db-{i}|cache-{i}"}}',
                )
            )
        elif rnd.random() < 0.15 / (1 - unindexed_share):
            spec = f'{{team="team-{i % teams}", alertname=~"(Kube|Node).*"}}'
        else:
            matchers = [f'alertname="App{rnd.randrange(names):05d}Error"']
            if rnd.random() < 0.5:
                matchers.append('severity=~"critical|warning"')
            if rnd.random() < 0.3:
                matchers.append(f'namespace="ns-{rnd.randrange(20)}"')
            elif rnd.random() < 0.2:
                matchers.append('instance!~"canary-.*"')
            spec = "{" + ", ".join(matchers) + "}"
        rules.append(
            Rule(
                name=f"rule-{i}",
                matchers=parse_matchers(spec),
                incident_key=("alertname",),
                tiers=(Tier(0, "act", None, ("act",)),),
                position=i,
            )
        )
    rnd.shuffle(rules)  # files are not sorted by kind; `position` keeps the written order
    return rules


def make_alerts(n_rules: int, count: int = ALERTS, seed: int = 4) -> list[dict[str, str]]:
    rnd = random.Random(seed)
    names = max(1, int(n_rules / 1.6))
    teams = max(1, n_rules // 20)
    alerts = []
    for i in range(count):
        roll = rnd.random()
        if roll < 0.6:
            alertname = f"App{rnd.randrange(names):05d}Error"
        elif roll < 0.8:
            alertname = rnd.choice(("KubePodCrashLooping", "NodeDiskPressure", "KubeJobFailed"))
        else:
            alertname = f"Unrelated{rnd.randrange(1000)}"
        alerts.append(
            {
                "alertname": alertname,
                "severity": rnd.choice(("critical", "warning", "info")),
                "namespace": f"ns-{rnd.randrange(20)}",
                "team": f"team-{rnd.randrange(teams)}",
                "instance": f"host-{i % 500}:9100",
                "job": rnd.choice(("node", "kube-state-metrics", "app")),
                "cluster": f"prod-{i % 3}",
            }
        )
    return alerts


_LITERAL = r"[A-Za-z0-9_:\-]+"
_ALTERNATION = re.compile(rf"\(?({_LITERAL}(?:\|{_LITERAL})*)\)?")
_PREFIX = re.compile(rf"({_LITERAL})\.\*")


class ProposedIndex:
    """A prototype of the recommended change to RuleIndex (here only to measure it): a rule with
    no equality matcher is also filed under a regex matcher that is an alternation of literals
    (`db-7|cache-7`: under each) or a literal prefix (`Disk7.*`: in a prefix table probed with
    the alert's value cut to each stored length). Only rules with neither are scanned."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.exact: dict[str, dict[str, list[Rule]]] = {}
        self.prefix: dict[str, dict[int, dict[str, list[Rule]]]] = {}
        self.scan: list[Rule] = []
        for rule in rules:
            self._file(rule)

    def _file(self, rule: Rule) -> None:
        equality = [m for m in rule.matchers if m.op is MatchOp.EQ]
        named = [m for m in equality if m.name == "alertname"] or equality
        if named:
            self._exact(named[0].name, named[0].value, rule)
            return
        for m in rule.matchers:
            if self._regex(m, rule):
                return
        self.scan.append(rule)

    def _exact(self, name: str, value: str, rule: Rule) -> None:
        self.exact.setdefault(name, {}).setdefault(value, []).append(rule)

    def _regex(self, m: Matcher, rule: Rule) -> bool:
        if m.op is not MatchOp.RE:
            return False
        if alternation := _ALTERNATION.fullmatch(m.value):
            for literal in alternation.group(1).split("|"):
                self._exact(m.name, literal, rule)
            return True
        if prefix := _PREFIX.fullmatch(m.value):
            text = prefix.group(1)
            table = self.prefix.setdefault(m.name, {}).setdefault(len(text), {})
            table.setdefault(text, []).append(rule)
            return True
        return False

    def match(self, labels: Mapping[str, str]) -> list[Rule]:
        found = list(self.scan)
        for name, table in self.exact.items():
            found.extend(table.get(labels.get(name, ""), ()))
        for name, by_length in self.prefix.items():
            value = labels.get(name, "")
            for length, table in by_length.items():
                found.extend(table.get(value[:length], ()))
        unique = {id(r): r for r in found}.values()  # a rule filed under two literals
        return sorted((r for r in unique if r.matches(labels)), key=lambda r: r.position)


Matcher_ = Callable[[dict[str, str]], object]
REPEATS = 7


def costs_us(cases: dict[str, tuple[Matcher_, Sequence[dict[str, str]]]]) -> dict[str, float]:
    """Mean cost per alert in microseconds, per case: the median of REPEATS rounds, each round
    timing every case once, so that a noisy moment of the machine hits all cases alike."""
    for match, alerts in cases.values():
        for labels in alerts[:500]:  # warm caches
            match(labels)
    samples: dict[str, list[float]] = {key: [] for key in cases}
    for _ in range(REPEATS):
        for key, (match, alerts) in cases.items():
            started = time.perf_counter()
            for labels in alerts:
                match(labels)
            samples[key].append((time.perf_counter() - started) / len(alerts) * 1e6)
    return {key: median(values) for key, values in samples.items()}


def _per_alert(index: RuleIndex, alerts: Sequence[dict[str, str]]) -> tuple[float, float]:
    candidates = sum(len(index.candidates(a)) for a in alerts) / len(alerts)
    matches = sum(len(index.match(a)) for a in alerts) / len(alerts)
    return candidates, matches


def _num(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def run(quick: bool = False) -> Section:
    started = time.monotonic()
    section = Section("rules", "3. Rule scaling (RuleIndex.match per alert)")
    cases: dict[str, tuple[Matcher_, Sequence[dict[str, str]]]] = {}
    info: dict[str, tuple[int, str, float, float]] = {}  # unindexed, build ms, cand., matches
    for n in SIZES:
        alerts = make_alerts(n)
        rules = make_rules(n)
        t = time.perf_counter()
        index = RuleIndex(tuple(rules))
        build_ms = f"{(time.perf_counter() - t) * 1e3:.1f}"
        cases[f"{n}"] = (index.match, alerts)
        info[f"{n}"] = (len(index._unindexed), build_ms, *_per_alert(index, alerts))
        # the prototype of the recommended index: same rules, same alerts, same answers
        prototype = ProposedIndex(rules)
        for labels in alerts:
            assert prototype.match(labels) == index.match(labels), labels
        cases[f"{n} p"] = (prototype.match, alerts)
        info[f"{n} p"] = (len(prototype.scan), "-", math.nan, math.nan)
        # one unindexed rule only: the index's own scaling
        single = RuleIndex(tuple(make_rules(n, unindexed_share=0.0)))
        cases[f"{n} u"] = (single.match, alerts)
        info[f"{n} u"] = (len(single._unindexed), "-", *_per_alert(single, alerts))
    cost = costs_us(cases)
    base = cost[f"{SIZES[0]}"]
    rows = [
        "| rules | unindexed rules | index build ms | candidates per alert | matches per alert | "
        "µs per alert | vs 10 rules (current index) |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {"": "", " p": " (prototype index)", " u": " (1 unindexed)"}
    for suffix, label in labels.items():
        for n in SIZES:
            key = f"{n}{suffix}"
            unindexed, build, candidates, matches = info[key]
            rows.append(
                f"| {n:,}{label} | {unindexed:,} | {build} | {_num(candidates, 1)} | "
                f"{_num(matches, 2)} | "
                f"{cost[key]:.2f} | {cost[key] / base:.2f}x |"
            )
    costs = {n: cost[f"{n}"] for n in SIZES}
    proposed = {n: cost[f"{n} p"] for n in SIZES}
    for n in SIZES[1:]:
        section.figures.append(
            Figure(
                f"match cost, {n:,} rules",
                costs[n],
                "µs",
                "<= 2x 10 rules" if n == SIZES[-1] else "-",
                costs[n] / costs[SIZES[0]] <= 2.0 if n == SIZES[-1] else None,
                costs[SIZES[0]],
                "10 rules",
            )
        )
    section.figures.append(
        Figure(
            "prototype index (bench only), 10,000 rules",
            proposed[SIZES[-1]],
            "µs",
            "<= 2x 10 rules",
            proposed[SIZES[-1]] / costs[SIZES[0]] <= 2.0,
            costs[SIZES[0]],
            "10 rules, current index",
        )
    )
    section.details.append("\n".join(rows))
    section.notes.append(
        "Rows '(prototype index)' run ProposedIndex (bench/rule_scaling.py, not in src/): "
        "rules without an equality matcher filed under regex alternations of literals and "
        "literal prefixes; it returns the same rules as RuleIndex.match for every alert."
    )
    section.notes.append(
        f"{ALERTS:,} alerts per size; {REPEATS} rounds, each timing every row once, median; "
        "single thread, in process. Rows '(1 unindexed)' repeat the sizes with one unindexed "
        "rule, to separate the "
        "index's own scaling from the linear scan of unindexed rules."
    )
    section.seconds = time.monotonic() - started
    return section


if __name__ == "__main__":
    from bench.common import print_section

    s = run()
    print_section(s)
    print("\n".join(s.details))
