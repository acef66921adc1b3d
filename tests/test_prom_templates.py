"""Annotation templates rendered again for a backtest: Go's number formatting and Prometheus's
template functions, and a clear "cannot" for anything else."""

from __future__ import annotations

import math

import pytest

from remediator.prom_templates import go_float, humanize, humanize_duration, render


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.07, "0.07"),
        (0.12, "0.12"),
        (15000.0, "15000"),
        (100000.0, "100000"),
        (1e6, "1e+06"),
        (123456789.0, "1.23456789e+08"),
        (0.0001, "0.0001"),
        (1.5e-05, "1.5e-05"),
        (2.0, "2"),
        (-3.5, "-3.5"),
        (0.0, "0"),
        (math.nan, "NaN"),
        (math.inf, "+Inf"),
    ],
)
def test_values_print_as_go_prints_a_float64(value: float, text: str) -> None:
    assert go_float(value) == text


def test_labels_values_and_functions_render() -> None:
    template = (
        "{{ $labels.service }}: {{ $value }} = {{ $value | humanizePercentage }}, "
        '{{ printf "%.2f" $value }}, {{ .Value | printf "%.1f" }}, {{ .Labels.service }}'
    )
    assert render(template, {"service": "api"}, 0.1234) == "api: 0.1234 = 12.34%, 0.12, 0.1, api"


@pytest.mark.parametrize(
    ("value", "text"), [(1234.0, "1.234k"), (2_500_000.0, "2.5M"), (0.005, "5m"), (0.0, "0")]
)
def test_humanize_uses_si_prefixes(value: float, text: str) -> None:
    assert humanize(value) == text


def test_humanize_duration() -> None:
    assert humanize_duration(93784.0) == "1d 2h 3m 4s"
    assert humanize_duration(42.0) == "42s"


def test_what_it_cannot_render_is_none_not_a_guess() -> None:
    assert render("{{ if gt $value 1.0 }}high{{ end }}", {}, 2.0) is None
    assert render("{{ $labels.x | humanize }}", {"x": "a"}, 2.0) is None
    assert render("no template at all", {}, 2.0) == "no template at all"
