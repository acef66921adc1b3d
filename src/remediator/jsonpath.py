"""Dotted paths into JSON: `connector.state`, `tasks[0].state`, `tasks[*].state`."""

from __future__ import annotations

import re
from typing import Any

_PART = re.compile(r"([^.\[\]]+)|\[(\d+|\*)\]")
_STEP = r"[^.\[\]]+(?:\[(?:\d+|\*)\])*"
FIELD = re.compile(rf"{_STEP}(?:\.{_STEP})*")


def extract(data: Any, field: str) -> list[str]:
    """The values at a dotted field path; `[*]` fans out over a list. Raises KeyError,
    IndexError or TypeError when the path is not in `data` or does not end at scalars."""
    current: list[Any] = [data]
    for m in _PART.finditer(field):
        key, index = m.groups()
        if key is not None:
            current = [item[key] for item in current]
        elif index == "*":
            current = [element for item in current for element in _as_list(item)]
        else:
            current = [_as_list(item)[int(index)] for item in current]
    return [_scalar(v) for v in current]


def _as_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        raise TypeError("the field is not a scalar")
    return str(value)
