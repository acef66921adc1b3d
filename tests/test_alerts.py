"""The Alertmanager v4 webhook payload: validation, timestamps, instance identity."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from remediator.alerts import Alert, parse_notification, parse_time
from remediator.errors import PayloadError
from tests.payloads import ZERO, alert, notification

NINE_AM = 1795338000.0  # 2026-11-22T09:00:00Z


def body() -> dict[str, Any]:
    return notification(
        alert("ConnectorDown", connector="postgres-sink-connector", severity="critical"),
        alert("ConnectorDown", "resolved", connector="sqlserver-source-connector"),
    )


def test_a_full_payload_parses() -> None:
    data = body()
    n = parse_notification(data)
    assert (n.version, n.receiver, n.status, n.truncated_alerts) == ("4", "remediator", "firing", 0)
    assert n.group_key == '{}:{alertname="ConnectorDown"}'
    assert n.group_labels == {"alertname": "ConnectorDown"}
    assert n.common_labels == {"alertname": "ConnectorDown"}
    assert n.external_url == "http://alertmanager.test:9093"
    first, second = n.alerts
    assert first == Alert(
        status="firing",
        labels={
            "alertname": "ConnectorDown",
            "connector": "postgres-sink-connector",
            "severity": "critical",
        },
        annotations={},
        starts_at=NINE_AM,
        ends_at=None,
        generator_url="http://prometheus.test:9090/graph?g0.expr=up",
        fingerprint=data["alerts"][0]["fingerprint"],
    )
    assert first.firing
    assert (second.status, second.firing, second.ends_at) == ("resolved", False, NINE_AM + 1800)


def test_unknown_keys_are_accepted() -> None:
    data = body()
    data["notification_reason"] = "repeat"
    data["routeLabels"] = {"team": "data"}
    data["alerts"][0]["silencedBy"] = []
    data["alerts"][0]["someFutureField"] = {"nested": True}
    n = parse_notification(data)
    assert n.alerts[0].labels["connector"] == "postgres-sink-connector"
    assert len(n.alerts) == 2


def test_optional_fields_default_to_empty() -> None:
    data = body()
    for key in ("truncatedAlerts", "groupLabels", "commonLabels", "commonAnnotations"):
        del data[key]
    del data["externalURL"]
    for key in ("annotations", "endsAt", "generatorURL"):
        del data["alerts"][0][key]
    n = parse_notification(data)
    assert (n.truncated_alerts, n.group_labels, n.common_labels, n.external_url) == (0, {}, {}, "")
    assert (n.alerts[0].annotations, n.alerts[0].ends_at, n.alerts[0].generator_url) == (
        {},
        None,
        "",
    )


DROP = object()  # the key is deleted instead of set


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("version",), "3", "version: unsupported version '3' (expected \"4\")"),
        (("version",), 4, "version: expected a string, got a number"),
        (("version",), DROP, "version: required"),
        (("alerts",), {}, "alerts: expected an array, got an object"),
        (("alerts",), "x", "alerts: expected an array, got a string"),
        (("alerts",), DROP, "alerts: expected an array, got null"),
        (("groupKey",), DROP, "groupKey: required"),
        (("groupKey",), ["k"], "groupKey: expected a string, got an array"),
        (("status",), DROP, "status: required"),
        (("status",), "pending", 'status: expected "firing" or "resolved", got \'pending\''),
        (("receiver",), DROP, "receiver: required"),
        (("receiver",), True, "receiver: expected a string, got a boolean"),
        (("truncatedAlerts",), -1, "truncatedAlerts: expected a non-negative integer, got -1"),
        (("truncatedAlerts",), True, "truncatedAlerts: expected a non-negative integer, got True"),
        (("truncatedAlerts",), 1.5, "truncatedAlerts: expected a non-negative integer, got 1.5"),
        (("groupLabels",), [], "groupLabels: expected an object, got an array"),
        (("commonLabels",), {"job": 1}, "commonLabels.job: expected a string, got a number"),
        (("commonAnnotations",), "x", "commonAnnotations: expected an object, got a string"),
        (("externalURL",), 1, "externalURL: expected a string, got a number"),
        (("alerts", 0), [], "alerts[0]: expected an object, got an array"),
        (("alerts", 1), None, "alerts[1]: expected an object, got null"),
        (("alerts", 0, "status"), DROP, "alerts[0].status: required"),
        (
            ("alerts", 1, "status"),
            "bogus",
            'alerts[1].status: expected "firing" or "resolved", got \'bogus\'',
        ),
        (("alerts", 0, "labels"), DROP, "alerts[0].labels: required"),
        (("alerts", 0, "labels"), [], "alerts[0].labels: expected an object, got an array"),
        (("alerts", 0, "labels"), None, "alerts[0].labels: expected an object, got null"),
        (
            ("alerts", 0, "labels", "severity"),
            3,
            "alerts[0].labels.severity: expected a string, got a number",
        ),
        (("alerts", 1, "labels", "job"), None, "alerts[1].labels.job: expected a string, got null"),
        (
            ("alerts", 0, "annotations"),
            7,
            "alerts[0].annotations: expected an object, got a number",
        ),
        (
            ("alerts", 0, "annotations", "rate"),
            0.1,
            "alerts[0].annotations.rate: expected a string, got a number",
        ),
        (("alerts", 0, "startsAt"), DROP, "alerts[0].startsAt: required"),
        (
            ("alerts", 0, "startsAt"),
            17953380,
            "alerts[0].startsAt: expected a string, got a number",
        ),
        (
            ("alerts", 0, "startsAt"),
            "today",
            "alerts[0].startsAt: not an RFC 3339 timestamp: 'today'",
        ),
        (("alerts", 1, "endsAt"), "09:30", "alerts[1].endsAt: not an RFC 3339 timestamp: '09:30'"),
        (("alerts", 1, "endsAt"), False, "alerts[1].endsAt: expected a string, got a boolean"),
        (
            ("alerts", 0, "generatorURL"),
            {},
            "alerts[0].generatorURL: expected a string, got an object",
        ),
        (("alerts", 0, "fingerprint"), DROP, "alerts[0].fingerprint: required"),
        (
            ("alerts", 1, "fingerprint"),
            12,
            "alerts[1].fingerprint: expected a string, got a number",
        ),
    ],
)
def test_bad_fields_are_named_exactly(
    path: tuple[str | int, ...], value: object, message: str
) -> None:
    data = body()
    parent: Any = data
    for key in path[:-1]:
        parent = parent[key]
    if value is DROP:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    with pytest.raises(PayloadError) as caught:
        parse_notification(data)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "body: expected an object, got an array"),
        (None, "body: expected an object, got null"),
        ("{}", "body: expected an object, got a string"),
    ],
)
def test_a_body_that_is_not_an_object(data: object, message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_notification(data)
    assert str(caught.value) == message


def test_an_empty_alert_list_is_valid() -> None:
    data = notification()
    assert parse_notification(data).alerts == ()


def test_the_payload_is_not_modified() -> None:
    data = body()
    before = copy.deepcopy(data)
    parse_notification(data)
    assert data == before


# --- timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T09:00:00Z", NINE_AM),
        ("2026-11-22T09:00:00.5Z", NINE_AM + 0.5),
        ("2026-11-22T09:00:00.123Z", 1795338000.123),
        ("2026-11-22T09:00:00.123456Z", 1795338000.123456),
        # Go writes up to nine digits; the float keeps microseconds
        ("2026-11-22T09:00:00.123456789Z", 1795338000.123456),
        ("2026-11-22T09:00:00.000000001Z", NINE_AM),
        ("2026-11-22T10:30:00+01:30", NINE_AM),
        ("2026-11-22T07:00:00-02:00", NINE_AM),
        ("2026-11-22T09:00:00+00:00", NINE_AM),
        ("2026-11-22T11:00:00.250+02:00", NINE_AM + 0.25),
        ("2026-11-22t09:00:00z", NINE_AM),
        ("1970-01-01T00:00:00Z", 0.0),
        (ZERO, -62135596800.0),
    ],
)
def test_parse_time(text: str, expected: float) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-11-22",
        "2026-11-22T09:00:00",  # no zone
        "2026-11-22 09:00:00Z",
        "2026-11-22T09:00Z",
        "2026-11-22T09:00:00.Z",
        "2026-11-22T09:00:00.1234567890Z",  # ten digits
        "2026-11-22T09:00:00+0100",
        "2026-11-22T09:00:00+01",
        "2026-11-22T09:00:00+25:00",  # no such offset
        "2026-11-22T09:00:00-01:60",
        " 2026-11-22T09:00:00Z",
        "2026-11-22T09:00:00Z ",
        "1795338000",
    ],
)
def test_parse_time_refuses_other_shapes(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"not an RFC 3339 timestamp: {text!r}")):
        parse_time(text)


@pytest.mark.parametrize(
    "text",
    [
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-11-22T24:00:00Z",
        "2026-11-22T09:60:00Z",
        "2026-11-22T09:00:60Z",  # Go never writes a leap second
    ],
)
def test_parse_time_refuses_fields_out_of_range(text: str) -> None:
    with pytest.raises(ValueError, match=r"must be in|out of range"):
        parse_time(text)
    data = body()
    data["alerts"][0]["startsAt"] = text
    with pytest.raises(PayloadError) as caught:
        parse_notification(data)
    assert str(caught.value) == f"alerts[0].startsAt: not an RFC 3339 timestamp: {text!r}"


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_parse_time_out_of_range_is_a_value_error(text: str) -> None:
    """An offset that moves the moment outside years 1-9999 is a ValueError like any bad
    timestamp, so ingest answers 400 instead of failing with an OverflowError."""
    with pytest.raises(ValueError, match="out of range"):
        parse_time(text)
    data = body()
    data["alerts"][0]["startsAt"] = text
    with pytest.raises(PayloadError, match=r"^alerts\[0\]\.startsAt: not an RFC 3339 timestamp"):
        parse_notification(data)


@pytest.mark.parametrize(
    ("ends_at", "expected"),
    [(ZERO, None), ("", None), ("2026-11-22T09:30:00Z", NINE_AM + 1800)],
)
def test_ends_at(ends_at: str, expected: float | None) -> None:
    data = notification(alert("A", ends_at=ends_at))
    data["alerts"][0]["endsAt"] = ends_at
    assert parse_notification(data).alerts[0].ends_at == expected


# --- identity -----------------------------------------------------------------------------


def _one(**overrides: Any) -> Alert:
    a = alert("ConnectorDown", connector="sink")
    a.update(overrides)
    return parse_notification(notification(a)).alerts[0]


def test_instance_is_fingerprint_and_start() -> None:
    firing = _one()
    assert firing.instance == (firing.fingerprint, NINE_AM)


def test_the_same_alert_resolving_is_the_same_instance() -> None:
    assert _one().instance == _one(status="resolved", endsAt="2026-11-22T09:30:00Z").instance


def test_firing_again_later_is_a_new_instance() -> None:
    later = _one(startsAt="2026-11-22T10:00:00Z")
    assert later.fingerprint == _one().fingerprint
    assert later.instance != _one().instance
    assert later.instance[1] == NINE_AM + 3600


def test_the_same_start_written_with_an_offset_is_the_same_instance() -> None:
    assert _one(startsAt="2026-11-22T10:00:00+01:00").instance == _one().instance
