"""Which failures say a target is sick (and count towards its circuit breaker)."""

from __future__ import annotations

import pytest

from remediator.actions.base import AttemptResult


@pytest.mark.parametrize(
    ("status", "counts"),
    [
        (None, True),  # connection error, timeout: no answer at all
        (500, True),
        (502, True),
        (503, True),
        (429, True),
        (408, True),
        (401, True),
        (403, True),
        (400, False),
        (404, False),
        (409, False),
        (422, False),
    ],
)
def test_which_failures_count_towards_the_breaker(status: int | None, counts: bool) -> None:
    assert AttemptResult(False, "x", status_code=status).sick_target is counts


def test_an_explicit_verdict_wins_over_the_status() -> None:
    assert AttemptResult(False, "SQL data error", target_fault=False).sick_target is False
    assert AttemptResult(False, "no such API", status_code=404, target_fault=True).sick_target
