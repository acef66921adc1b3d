"""pagers.py against the PagerDuty and Opsgenie stand-ins: the requests they send, and how each
answer is read (delivered, retried, refused)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from remediator.paging import pagers
from remediator.paging.policy import Pager
from remediator.schema import Secret
from remediator.trust import default_tls
from tests.pager_standins import GENIE_KEY, ROUTING_KEY, OpsgenieAPI, PagerDutyAPI

INCIDENT = {
    "id": 7,
    "severity": "P0",
    "title": "Ingestion error rate above 20 %",
    "source": "ingestion",
    "rule": "ingestion-error-rate",
    "tier": "rollback",
    "link": "http://alertmanager:9093",
    "details": {"incident": 7, "value": 0.25},
}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=default_tls(), timeout=5.0) as client:
        yield client


@pytest.fixture
async def pagerduty() -> AsyncIterator[PagerDutyAPI]:
    api = PagerDutyAPI()
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
async def opsgenie() -> AsyncIterator[OpsgenieAPI]:
    api = OpsgenieAPI()
    await api.start()
    yield api
    await api.stop()


def pd(api: PagerDutyAPI, key: str = ROUTING_KEY) -> Pager:
    return Pager("pd", "pagerduty", api.url, Secret(key, "$TEST"))


def og(api: OpsgenieAPI, key: str = GENIE_KEY) -> Pager:
    return Pager("og", "opsgenie", api.url, Secret(key, "$TEST"))


async def test_pagerduty_trigger_acknowledge_resolve_share_the_incident_key(
    pagerduty: PagerDutyAPI, http: httpx.AsyncClient
) -> None:
    pager = pd(pagerduty)
    for action in ("trigger", "trigger", "acknowledge", "resolve"):
        said = await pagers.send(pager, pagers.event(pager, action, INCIDENT, "why"), http)
        assert said == "HTTP 202: success; Event processed; remediator-incident-7"
    assert pagerduty.events == [
        ("trigger", "remediator-incident-7"),
        ("trigger", "remediator-incident-7"),
        ("acknowledge", "remediator-incident-7"),
        ("resolve", "remediator-incident-7"),
    ]
    [alert] = pagerduty.alerts
    first = alert.events[0]
    assert first["routing_key"] == ROUTING_KEY
    assert first["payload"]["severity"] == "critical"  # P0
    assert first["payload"]["summary"] == "P0 - Ingestion error rate above 20 %"
    assert first["links"] == [{"href": "http://alertmanager:9093", "text": "Alertmanager"}]
    assert "payload" not in alert.events[2]  # acknowledge and resolve carry only the key


@pytest.mark.parametrize(
    ("severity", "expected"),
    [("P0", "critical"), ("P1", "error"), ("P2", "warning"), ("P3", "info"), ("", "error")],
)
def test_pagerduty_severity_from_the_runbook_levels(severity: str, expected: str) -> None:
    pager = Pager("pd", "pagerduty", "http://x", Secret("k", "$K"))
    body = pagers.event(pager, "trigger", {**INCIDENT, "severity": severity}, "why")
    assert body["payload"]["severity"] == expected


async def test_pagerduty_400_is_final_with_its_errors(
    pagerduty: PagerDutyAPI, http: httpx.AsyncClient
) -> None:
    pager = pd(pagerduty, key="too-short")
    with pytest.raises(pagers.Refused) as refused:
        await pagers.send(pager, pagers.event(pager, "trigger", INCIDENT, "why"), http)
    assert str(refused.value) == (
        "HTTP 400: invalid event; Event object is invalid; errors: "
        "[\"Length of 'routing_key' is incorrect (should be 32 characters)\"]"
    )
    assert pagerduty.events == []


async def test_pagerduty_429_and_503_are_retried_429_after_its_retry_after(
    pagerduty: PagerDutyAPI, http: httpx.AsyncClient
) -> None:
    pager = pd(pagerduty)
    body = pagers.event(pager, "trigger", INCIDENT, "why")
    pagerduty.throttle, pagerduty.retry_after = 1, 7
    with pytest.raises(pagers.Retry) as throttled:
        await pagers.send(pager, body, http)
    assert (throttled.value.after, str(throttled.value)) == (7.0, "HTTP 429: Too many requests")
    pagerduty.down = True
    with pytest.raises(pagers.Retry) as down:
        await pagers.send(pager, body, http)
    assert down.value.after is None
    await pagerduty.stop()
    with pytest.raises(pagers.Retry, match="ConnectError"):
        await pagers.send(pager, body, http)


async def test_opsgenie_create_acknowledge_close_by_alias(
    opsgenie: OpsgenieAPI, http: httpx.AsyncClient
) -> None:
    pager = og(opsgenie)
    for action in ("trigger", "trigger", "acknowledge", "resolve"):
        said = await pagers.send(pager, pagers.event(pager, action, INCIDENT, "why", "alice"), http)
        assert said.startswith("HTTP 202: Request will be processed; ")
    assert opsgenie.events == [
        ("trigger", "remediator-incident-7"),
        ("trigger", "remediator-incident-7"),
        ("acknowledge", "remediator-incident-7"),
        ("resolve", "remediator-incident-7"),
    ]
    [alert] = opsgenie.alerts  # the alias deduplicated the second create
    created = alert.events[0]
    assert (created["priority"], created["alias"], created["message"]) == (
        "P1",
        "remediator-incident-7",
        "P0 - Ingestion error rate above 20 %",
    )
    assert alert.events[2] == {
        "source": "remediator",
        "user": "alice",
        "note": "acknowledged through remediator: why",
    }
    assert alert.status == "resolved"
    paths = [(s.path, s.query) for s in opsgenie.server.seen]
    assert paths[2:] == [
        ("/v2/alerts/remediator-incident-7/acknowledge", "identifierType=alias"),
        ("/v2/alerts/remediator-incident-7/close", "identifierType=alias"),
    ]


async def test_opsgenie_wrong_key_and_unprocessable_body_are_final(
    opsgenie: OpsgenieAPI, http: httpx.AsyncClient
) -> None:
    wrong = og(opsgenie, key="nope")
    with pytest.raises(pagers.Refused, match="HTTP 401: Could not authenticate"):
        await pagers.send(wrong, pagers.event(wrong, "trigger", INCIDENT, "why"), http)
    pager = og(opsgenie)
    body = pagers.event(pager, "trigger", INCIDENT, "why")
    body["body"]["message"] = " "
    with pytest.raises(pagers.Refused, match=r"HTTP 422: .*Message can not be empty"):
        await pagers.send(pager, body, http)
    opsgenie.throttle = 1
    with pytest.raises(pagers.Retry):
        await pagers.send(pager, pagers.event(pager, "trigger", INCIDENT, "why"), http)
    assert opsgenie.events == []
