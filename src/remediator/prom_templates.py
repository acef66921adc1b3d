"""Prometheus annotation templates, rendered again for a backtest: what an alert's annotations
said when it fired, computed from its labels and its value at that time.

Prometheus renders them with Go's text/template and its own functions. This covers what alert
annotations are usually made of: `{{ $value }}`, `{{ $labels.name }}` (and `.Value`,
`.Labels.name`), piped through `humanize`, `humanizePercentage`, `humanizeDuration` or
`printf "%.2f"`. Anything else cannot be known from the history: the text is kept as written and
the caller is told which annotation it was.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.DOTALL)
_VALUE = re.compile(r"^(?:\$value|\.Value)$")
_LABEL = re.compile(r"^(?:\$labels|\.Labels)\.([A-Za-z_][A-Za-z0-9_]*)$")
_PRINTF = re.compile(r'^printf\s+"(%[-+ 0#]*\d*(?:\.\d+)?[dfeEgGsv])"(?:\s+(\S+))?$')


def render(template: str, labels: Mapping[str, str], value: float) -> str | None:
    """The template's text for this alert, or None if it uses what this renderer cannot do."""
    unknown = False

    def action(m: re.Match[str]) -> str:
        nonlocal unknown
        text = _action(m.group(1), labels, value)
        if text is None:
            unknown = True
            return m.group(0)
        return text

    rendered = _ACTION.sub(action, template)
    return None if unknown else rendered


def _action(body: str, labels: Mapping[str, str], value: float) -> str | None:
    source, *pipes = [part.strip() for part in body.split("|")]
    current: str | float
    call = _PRINTF.match(source)
    if call and call.group(2) and _VALUE.match(call.group(2)):  # printf "%.2f" $value
        current = _printf(call.group(1), value)
    elif _VALUE.match(source):
        current = value
    elif label := _LABEL.match(source):
        current = labels.get(label.group(1), "")
    else:
        return None
    for pipe in pipes:
        step = _pipe(pipe)
        if step is None or isinstance(current, str):
            return None
        current = step(current)
    return go_float(current) if isinstance(current, float) else current


def _pipe(text: str) -> Callable[[float], str] | None:
    if text in _FUNCTIONS:
        return _FUNCTIONS[text]
    if m := _PRINTF.match(text):
        spec = m.group(1)
        return lambda v: _printf(spec, v)
    return None


def go_float(v: float) -> str:
    """A float64 as Go's fmt prints it with %v (%g, shortest): 0.12, 15000, 1e+06, 1.5e-05."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "0"
    d = Decimal(repr(v)).normalize()
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    exp10 = len(digits) + exponent - 1
    text = "".join(map(str, digits))
    if exp10 < -4 or exp10 >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{'-' if sign else ''}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    return format(d, "f")


def humanize(v: float) -> str:
    """Prometheus's humanize: SI prefixes, four significant digits."""
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    if abs(v) >= 1:
        prefix = ""
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
        return f"{_g4(v)}{prefix}"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return f"{_g4(v)}{prefix}"


def humanize_percentage(v: float) -> str:
    return f"{_g4(v * 100)}%"


def humanize_duration(v: float) -> str:
    """Prometheus's humanizeDuration for whole seconds and above: 1d 2h 3m 4s."""
    if math.isnan(v) or math.isinf(v) or abs(v) < 1:
        return f"{_g4(v)}s"
    seconds = int(abs(v))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    parts.append(f"{secs}s")
    return ("-" if v < 0 else "") + " ".join(parts)


def _g4(v: float) -> str:
    """Go's %.4g."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    text = f"{v:.4g}"
    mantissa, e, exp = text.partition("e")
    return f"{mantissa}e{exp[0]}{int(exp[1:]):02d}" if e else text


def _printf(spec: str, v: float) -> str:
    if spec[-1] in "vs":
        return go_float(v)
    return spec % (int(v) if spec.endswith("d") else v)


_FUNCTIONS: dict[str, Callable[[float], str]] = {
    "humanize": humanize,
    "humanizePercentage": humanize_percentage,
    "humanizeDuration": humanize_duration,
}
