"""severity.py: ranking the runbook's P0-P3 and Prometheus' words, and the pagers' words."""

from __future__ import annotations

import pytest

from remediator import severity


def test_p0_outranks_p1_outranks_p3_and_words_rank_alike() -> None:
    ordered = ["P0", "P1", "P2", "P3", ""]
    assert sorted(reversed(ordered), key=severity.rank) == ordered
    assert severity.rank("critical") == severity.rank("P0")
    assert severity.rank("warning") == severity.rank("p2")
    assert severity.rank("sev-unknown") == severity.UNKNOWN


@pytest.mark.parametrize(
    ("a", "b", "higher"),
    [("P2", "P0", "P0"), ("P0", "P2", "P0"), ("P1", "error", "P1"), ("", "P3", "P3")],
)
def test_higher_keeps_the_one_shown_when_alike(a: str, b: str, higher: str) -> None:
    assert severity.higher(a, b) == higher


@pytest.mark.parametrize(
    ("level", "pagerduty", "opsgenie"),
    [
        ("P0", "critical", "P1"),
        ("P1", "error", "P2"),
        ("P2", "warning", "P3"),
        ("P3", "info", "P4"),
        ("P7", "info", "P5"),
        ("whatever", "error", "P3"),
    ],
)
def test_pager_words(level: str, pagerduty: str, opsgenie: str) -> None:
    assert (severity.pagerduty(level), severity.opsgenie(level)) == (pagerduty, opsgenie)
