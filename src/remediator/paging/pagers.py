"""The pagers: PagerDuty's Events API v2 and Opsgenie's Alert API.

Each event is built once, when it is queued (`event()`: the request body without the key), and
sent by `send()` with the routing key or API key read from config (env or file), never stored.
One page per incident: PagerDuty's `dedup_key` and Opsgenie's `alias` are the incident's, so a
repeat, a retry or another replica updates the page instead of opening a second one.

PagerDuty: `POST /v2/enqueue` with `event_action` trigger, acknowledge or resolve; 202
`{"status": "success", "dedup_key": ...}`; 400 for an invalid event (final); 429 when throttled.
Opsgenie: `POST /v2/alerts` (create), `POST /v2/alerts/{alias}/acknowledge` and `/close` with
`identifierType=alias`, `Authorization: GenieKey <key>`; 202 `{"result": "Request will be
processed", "requestId": ...}`; 4xx final except 408 and 429.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from remediator import severity
from remediator.paging.policy import Pager
from remediator.paging.records import ACKNOWLEDGE, RESOLVE, TRIGGER
from remediator.schema import decimal

RETRYABLE = frozenset({408, 425, 429})
OPSGENIE_ACTIONS = {TRIGGER: "create", ACKNOWLEDGE: "acknowledge", RESOLVE: "close"}


class Retry(Exception):
    """Not delivered now; try again (after `after` seconds if the pager said so)."""

    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


class Refused(Exception):
    """The pager will not take this event, now or later."""


def dedup_key(incident_id: int) -> str:
    """The incident's key at every pager: one page per incident, whoever sends it."""
    return f"remediator-incident-{incident_id}"


def event(
    pager: Pager, action: str, incident: Mapping[str, Any], reason: str, by: str = ""
) -> dict[str, Any]:
    """The body of `action` (trigger, acknowledge, resolve) for the incident, without the key."""
    if pager.kind == "pagerduty":
        return _pagerduty(action, incident, reason)
    return _opsgenie(action, incident, reason, by)


def _pagerduty(action: str, incident: Mapping[str, Any], reason: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_action": action,
        "dedup_key": dedup_key(incident["id"]),
        "client": "remediator",
    }
    if action == TRIGGER:
        level = incident["severity"]
        body["payload"] = {
            "summary": f"{level or 'P?'} - {incident['title']}"[:1024],
            "source": incident["source"][:255] or "remediator",
            "severity": severity.pagerduty(level),
            "component": incident["rule"],
            "group": incident["rule"],
            "class": incident["tier"],
            "custom_details": {"reason": reason, **incident["details"]},
        }
        if incident.get("link"):
            body["links"] = [{"href": incident["link"], "text": "Alertmanager"}]
    return body


def _opsgenie(action: str, incident: Mapping[str, Any], reason: str, by: str) -> dict[str, Any]:
    alias = dedup_key(incident["id"])
    if action != TRIGGER:
        note = f"{OPSGENIE_ACTIONS[action]}d through remediator: {reason}"[:25000]
        return {
            "action": OPSGENIE_ACTIONS[action],
            "alias": alias,
            "body": {"source": "remediator", "user": by or "remediator", "note": note},
        }
    level = incident["severity"]
    details = {k: str(v) for k, v in {"reason": reason, **incident["details"]}.items()}
    return {
        "action": "create",
        "alias": alias,
        "body": {
            "message": f"{level or 'P?'} - {incident['title']}"[:130],
            "alias": alias,
            "description": reason[:15000],
            "priority": severity.opsgenie(level),
            "source": "remediator",
            "entity": incident["rule"][:512],
            "tags": [t for t in (incident["rule"], incident["tier"]) if t],
            "details": details,
        },
    }


async def send(pager: Pager, body: Mapping[str, Any], http: httpx.AsyncClient) -> str:
    """Deliver one event; returns what the pager answered. Raises Retry or Refused."""
    method, url, headers, payload = _request(pager, body)
    try:
        response = await http.request(method, url, headers=headers, json=payload)
    except httpx.HTTPError as e:
        raise Retry(f"{type(e).__name__}: {e}") from None
    return _outcome(pager, response)


def _request(
    pager: Pager, body: Mapping[str, Any]
) -> tuple[str, str, dict[str, str], dict[str, Any]]:
    key = pager.key.reveal()
    if pager.kind == "pagerduty":
        return "POST", f"{pager.url}/v2/enqueue", {}, {**body, "routing_key": key}
    headers = {"Authorization": f"GenieKey {key}"}
    if body["action"] == "create":
        return "POST", f"{pager.url}/v2/alerts", headers, dict(body["body"])
    path = f"/v2/alerts/{quote(body['alias'], safe='')}/{body['action']}?identifierType=alias"
    return "POST", f"{pager.url}{path}", headers, dict(body["body"])


def _outcome(pager: Pager, response: httpx.Response) -> str:
    status = response.status_code
    text = _said(response)
    if status == 202 or 200 <= status < 300:
        return f"HTTP {status}: {text}"
    if status in RETRYABLE or status >= 500:
        after = decimal(response.headers.get("Retry-After", "").strip())
        raise Retry(f"HTTP {status}: {text}", None if after is None else float(after))
    raise Refused(f"HTTP {status}: {text}")


def _said(response: httpx.Response) -> str:
    """The pager's own words: PagerDuty's message and errors, Opsgenie's result or message."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if not isinstance(data, dict):
        return str(data)[:300]
    words = [
        str(data[k]) for k in ("status", "message", "result", "dedup_key", "requestId") if k in data
    ]
    errors = data.get("errors")
    if errors:
        words.append(f"errors: {errors}")
    return "; ".join(words)[:500]
