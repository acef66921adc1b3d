"""The Alertmanager webhook payload (version 4), validated into immutable objects.

Nothing after ingest sees raw JSON. Unknown keys are accepted, because newer Alertmanagers add
fields (`notification_reason`, `routeLabels`); a missing or mistyped known field is a
PayloadError whose message names it, e.g. ``alerts[0].labels: expected an object``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from remediator.errors import PayloadError

Status = Literal["firing", "resolved"]
_STATUSES = ("firing", "resolved")

# RFC 3339 as Go's time.Time marshals it: up to nine fractional digits, Z or an offset.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])([01]\d|2[0-3]):([0-5]\d))"
)
GO_ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class Alert:
    status: Status
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: float
    ends_at: float | None
    generator_url: str
    fingerprint: str

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    @property
    def instance(self) -> tuple[str, float]:
        """An alert instance is (fingerprint, startsAt): the same fingerprint firing again later
        is a new instance."""
        return (self.fingerprint, self.starts_at)


@dataclass(frozen=True, slots=True)
class Notification:
    version: str
    group_key: str
    truncated_alerts: int
    status: Status
    receiver: str
    group_labels: Mapping[str, str]
    common_labels: Mapping[str, str]
    common_annotations: Mapping[str, str]
    external_url: str
    alerts: tuple[Alert, ...]


def parse_notification(data: object) -> Notification:
    """Validate a decoded webhook body. Raises PayloadError naming the first bad field."""
    body = _object(data, "body")
    version = _string(body, "version", "")
    if version != "4":
        raise PayloadError(f'version: unsupported version {version!r} (expected "4")')
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError(f"alerts: {_expected('an array', alerts)}")
    return Notification(
        version=version,
        group_key=_string(body, "groupKey", ""),
        truncated_alerts=_count(body, "truncatedAlerts", ""),
        status=_status(body, ""),
        receiver=_string(body, "receiver", ""),
        group_labels=_labels(body, "groupLabels", "", required=False),
        common_labels=_labels(body, "commonLabels", "", required=False),
        common_annotations=_labels(body, "commonAnnotations", "", required=False),
        external_url=_string(body, "externalURL", "", required=False),
        alerts=tuple(_alert(a, f"alerts[{i}]") for i, a in enumerate(alerts)),
    )


@functools.lru_cache(maxsize=65_536)
def parse_time(text: str) -> float:
    """Seconds since the epoch for an RFC 3339 timestamp; ValueError if it is not one.

    Memoised: Alertmanager re-sends the same startsAt and endsAt with every notification of a
    group, and a regex and a datetime per timestamp were 15 % of ingest's CPU with 50-alert
    payloads."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    micros = int((m.group(7) or "0").ljust(6, "0")[:6])
    offset = timedelta(0)
    if m.group(9):
        offset = timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        if m.group(9) == "-":
            offset = -offset
    try:
        moment = datetime(year, month, day, hour, minute, second, micros, tzinfo=UTC) - offset
    except OverflowError:  # the offset moves it outside years 1-9999
        raise ValueError(f"out of range: {text!r}") from None
    return moment.timestamp()


def _alert(data: object, path: str) -> Alert:
    alert = _object(data, path)
    ends_text = _string(alert, "endsAt", path, required=False)
    return Alert(
        status=_status(alert, path),
        labels=_labels(alert, "labels", path, required=True),
        annotations=_labels(alert, "annotations", path, required=False),
        starts_at=_time(alert, "startsAt", path),
        ends_at=None if ends_text in ("", GO_ZERO_TIME) else _time(alert, "endsAt", path),
        generator_url=_string(alert, "generatorURL", path, required=False),
        fingerprint=_string(alert, "fingerprint", path),
    )


def _field(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _expected(what: str, value: object) -> str:
    return f"expected {what}, got {_json_type(value)}"


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _object(data: object, path: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise PayloadError(f"{path}: {_expected('an object', data)}")
    return data


def _string(obj: dict[str, Any], key: str, path: str, *, required: bool = True) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        what = "required" if key not in obj else _expected("a string", value)
        raise PayloadError(f"{_field(path, key)}: {what}")
    return value


def _count(obj: dict[str, Any], key: str, path: str) -> int:
    value = obj.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PayloadError(f"{_field(path, key)}: expected a non-negative integer, got {value!r}")
    return value


def _status(obj: dict[str, Any], path: str) -> Status:
    value = _string(obj, "status", path)
    if value == "firing":
        return "firing"
    if value == "resolved":
        return "resolved"
    raise PayloadError(f'{_field(path, "status")}: expected "firing" or "resolved", got {value!r}')


def _labels(obj: dict[str, Any], key: str, path: str, *, required: bool) -> Mapping[str, str]:
    value = obj.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        what = "required" if key not in obj else _expected("an object", value)
        raise PayloadError(f"{_field(path, key)}: {what}")
    for name, item in value.items():
        if not isinstance(item, str):
            raise PayloadError(f"{_field(path, key)}.{name}: {_expected('a string', item)}")
    return value


def _time(obj: dict[str, Any], key: str, path: str) -> float:
    text = _string(obj, key, path)
    try:
        return parse_time(text)
    except ValueError:
        raise PayloadError(f"{_field(path, key)}: not an RFC 3339 timestamp: {text!r}") from None
