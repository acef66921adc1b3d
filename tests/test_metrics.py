"""metrics.py: Prometheus' naming conventions, bounded labels, every series exported at zero from
the start, remediator_build_info, and the README's table of them."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from remediator import __version__
from remediator.metrics import Metrics

README = Path(__file__).resolve().parents[1] / "README.md"
# Every label name the daemon may use, each with a value set bounded by code or by config (rule,
# kind and target names). Never a fingerprint, group key, incident id or alert label.
BOUNDED_LABELS = {
    "outcome", "status", "decision", "result", "guardrail", "cause", "endpoint", "table",  # code
    "rule", "kind", "target",  # config
    "version", "le",
}  # fmt: skip


def families() -> list[Metric]:
    """What /metrics shows right after start, for a config with one rule, kind and target;
    `_created` companions (creation timestamps prometheus_client adds) left out."""
    registry = CollectorRegistry()
    Metrics(registry).declare(["rule"], ["http"], ["target"])
    parsed = list(text_string_to_metric_families(generate_latest(registry).decode()))
    names = {f.name for f in parsed}
    return [f for f in parsed if not (f.name.endswith("_created") and f.name[:-8] in names)]


def exposed_name(family: Metric) -> str:
    """The name people query: counters with `_total` (the parser strips it)."""
    return family.name + "_total" if family.type == "counter" else family.name


def test_names_follow_prometheus_conventions() -> None:
    for family in families():
        name = exposed_name(family)
        assert name.startswith("remediator_"), name
        assert re.fullmatch(r"[a-z_]+", name), name
        if family.type == "counter":
            assert {s.name for s in family.samples} == {name}
        elif family.type == "histogram":
            assert name.endswith("_seconds"), name
        else:
            assert not name.endswith("_total"), name


def test_labels_are_bounded() -> None:
    for family in families():
        for sample in family.samples:
            assert set(sample.labels) <= BOUNDED_LABELS, (family.name, sample.labels)


def test_every_family_has_its_series_at_zero_from_the_start() -> None:
    for family in families():
        assert family.samples, f"{family.name} exports nothing until first used"
        if family.name != "remediator_build_info":
            assert all(s.value == 0 for s in family.samples if not s.name.endswith("_bucket")), (
                family.name
            )


def test_build_info_carries_the_version() -> None:
    [info] = [f for f in families() if f.name == "remediator_build_info"]
    [sample] = info.samples
    assert (sample.labels, sample.value) == ({"version": __version__}, 1.0)


def test_the_readme_lists_every_metric() -> None:
    text = README.read_text(encoding="utf-8")
    table = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(remediator_[a-z_]+)`", table))
    exported = {exposed_name(f) for f in families()}
    assert exported - listed == set(), "add them to the README's Metrics table"
    assert listed - exported == set(), "the README lists metrics that are not exported"


def test_a_series_is_found_again_and_made_anew_after_its_removal() -> None:
    metrics = Metrics(CollectorRegistry())
    series = metrics.actions.labels("http", "succeeded")
    assert metrics.actions.labels("http", "succeeded") is series
    assert metrics.actions.labels(kind="http", outcome="succeeded") is series
    series.inc()
    metrics.actions.remove("http", "succeeded")
    again = metrics.actions.labels("http", "succeeded")
    assert again is not series
    assert again._value.get() == 0.0
    metrics.incidents_open.labels(7).set(1)  # values that are not str: the library's way
    assert metrics.incidents_open.labels("7")._value.get() == 1.0
    metrics.incidents_open.clear()
    assert metrics.incidents_open.labels("7")._value.get() == 0.0
