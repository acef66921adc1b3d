"""Benchmark 3, rule scaling: RuleIndex.match per alert with 10, 1,000 and 10,000 rules.

In process, with the daemon's own classes (Rule, Tier, parse_matchers, RuleIndex). The same mix
at every size:

* 80 % rules on an alertname (`alertname="App00042Error"`, about 1.6 rules per alertname), half
  also with `severity=~"critical|warning"`, some with `namespace="ns-7"` or
  `instance!~"canary-.*"`;
* 15 % rules on a team and an alertname regex (`{team="team-3", alertname=~"(Kube|Node).*"}`):
  indexed by team;
* 5 % (at least one) rules with no equality matcher at all
  (`{alertname=~"Disk7.*", severity!="info"}`, `{job=~"db-7|cache-7"}`): the index files them
  under the regex's literal prefix or literals.

The alerts: 60 % carry an alertname some rule names, 20 % a Kube/Node alertname and a team,
20 % an alertname no rule names; every alert has the usual severity, namespace, team, instance,
job and cluster labels. Cost = wall time of matching all of them / their number, median of
several repeats. Baseline = the 10-rule figure, in the same run.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence

from bench.common import Figure, Section, median
from remediator.matchers import parse_matchers
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
        rules_in_order = sorted(rules, key=lambda r: r.position)
        t = time.perf_counter()
        index = RuleIndex(tuple(rules))
        build_ms = f"{(time.perf_counter() - t) * 1e3:.1f}"
        cases[f"{n}"] = (index.match, alerts)
        info[f"{n}"] = (len(index._unindexed), build_ms, *_per_alert(index, alerts))
        # same answers as trying every rule
        for labels in alerts[:500]:
            assert index.match(labels) == [r for r in rules_in_order if r.matches(labels)], labels
        # one unindexed rule only: the index's own scaling
        single = RuleIndex(tuple(make_rules(n, unindexed_share=0.0)))
        cases[f"{n} u"] = (single.match, alerts)
        info[f"{n} u"] = (len(single._unindexed), "-", *_per_alert(single, alerts))
    cost = costs_us(cases)
    base = cost[f"{SIZES[0]}"]
    rows = [
        "| rules | unindexed rules | index build ms | candidates per alert | matches per alert | "
        "µs per alert | vs 10 rules |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {"": "", " u": " (1 without equality)"}
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
    section.details.append("\n".join(rows))
    section.notes.append(
        f"{ALERTS:,} alerts per size; {REPEATS} rounds, each timing every row once, median; "
        "single thread, in process. Rows '(1 without equality)' repeat the sizes with a single "
        "rule without an equality matcher instead of 5 %. Every size checks, on 500 alerts, "
        "that the index returns exactly the rules that match when every rule is tried."
    )
    section.seconds = time.monotonic() - started
    return section


if __name__ == "__main__":
    from bench.common import print_section

    s = run()
    print_section(s)
    print("\n".join(s.details))
