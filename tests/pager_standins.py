"""PagerDuty's Events API v2 and Opsgenie's Alert API on 127.0.0.1, answering as they do.

PagerDuty (developer.pagerduty.com, Events API v2): `POST /v2/enqueue` with a 32-character
`routing_key`, `event_action` trigger, acknowledge or resolve, and a `dedup_key` (required to
acknowledge or resolve; made up for a trigger without one); a trigger needs `payload.summary`,
`payload.source` and `payload.severity` (critical, error, warning, info). 202 `{"status":
"success", "message": "Event processed", "dedup_key": ...}`; 400 `{"status": "invalid event",
"message": "Event object is invalid", "errors": [...]}`; 429 when throttled. A trigger for a key
whose alert is open adds to that alert; for a key that is resolved (or new), opens one.

Opsgenie (docs.opsgenie.com, Alert API): `Authorization: GenieKey <key>` (401 `{"message":
"Could not authenticate"}` otherwise); `POST /v2/alerts` (create: `message` required, `alias`
deduplicates against an open alert), `POST /v2/alerts/{identifier}/acknowledge` and `/close`
with `identifierType` id, alias or tiny; 202 `{"result": "Request will be processed", "took":
..., "requestId": ...}`; 422 for an unprocessable body; 429 beyond the rate.

Both: `down` answers 503 to everything; `throttle` answers 429 (with Retry-After) to the next N
calls; `stop()` and `start(port)` take it off the network and bring it back on the same port.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.standins import StandIn

ROUTING_KEY = "R0UT1NGKEY0123456789abcdef012345"  # 32 characters, as PagerDuty's are
GENIE_KEY = "genie-test-key"
SEVERITIES = ("critical", "error", "warning", "info")
PAGERDUTY_ACTIONS = ("trigger", "acknowledge", "resolve")


@dataclass
class Alert:
    """One alert as the pager holds it: opened by a trigger (create), then updated."""

    key: str
    status: str  # triggered (open) | acknowledged | resolved (closed)
    events: list[dict[str, Any]] = field(default_factory=list)


class _Pager:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []  # every alert opened, in order
        self.events: list[tuple[str, str]] = []  # (action, key) of every accepted event
        self.down = False
        self.throttle = 0
        self.retry_after = 1
        self.server = StandIn(self._app())
        self.port = 0

    def _app(self) -> web.Application:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return self.server.url

    async def start(self, port: int = 0) -> Any:
        await self.server.start(port or self.port)
        self.port = self.server.port
        return self

    async def stop(self) -> None:
        await self.server.stop()
        self.server = StandIn(self._app())

    def open_alert(self, key: str) -> Alert | None:
        return next((a for a in self.alerts if a.key == key and a.status != "resolved"), None)

    def _unavailable(self) -> web.Response | None:
        if self.down:
            return web.json_response({"message": "Service Unavailable"}, status=503)
        if self.throttle > 0:
            self.throttle -= 1
            return web.json_response(
                {"message": "Too many requests"},
                status=429,
                headers={"Retry-After": str(self.retry_after)},
            )
        return None

    def _event(self, action: str, key: str, body: dict[str, Any]) -> None:
        self.events.append((action, key))
        alert = self.open_alert(key)
        if action == "trigger":
            if alert is None:
                alert = Alert(key, "triggered")
                self.alerts.append(alert)
            alert.events.append(body)
        elif alert is not None:
            alert.status = "acknowledged" if action == "acknowledge" else "resolved"
            alert.events.append(body)


class PagerDutyAPI(_Pager):
    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/enqueue", self.enqueue)
        return app

    async def enqueue(self, request: web.Request) -> web.Response:
        busy = self._unavailable()
        if busy is not None:
            return busy
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _invalid(["Invalid JSON"])
        errors = _pagerduty_errors(body)
        if errors:
            return _invalid(errors)
        key = body.get("dedup_key") or uuid.uuid4().hex
        self._event(body["event_action"], key, body)
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": key}, status=202
        )


def _pagerduty_errors(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return ["Event object is not an object"]
    errors = []
    key = body.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = body.get("event_action")
    if action not in PAGERDUTY_ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    if action in ("acknowledge", "resolve") and not body.get("dedup_key"):
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        payload = body.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is missing or not an object"]
        for name in ("summary", "source"):
            if not isinstance(payload.get(name), str) or not payload[name]:
                errors.append(f"'payload.{name}' is missing or blank")
        if payload.get("severity") not in SEVERITIES:
            errors.append("'payload.severity' is invalid (must be critical, error, warning, info)")
        if len(str(payload.get("summary", ""))) > 1024:
            errors.append("'payload.summary' is too long (at most 1024 characters)")
    return errors


def _invalid(errors: list[str]) -> web.Response:
    return web.json_response(
        {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
        status=400,
    )


class OpsgenieAPI(_Pager):
    def __init__(self, key: str = GENIE_KEY) -> None:
        self.key = key
        super().__init__()

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/alerts", self.create)
        app.router.add_post("/v2/alerts/{identifier}/{verb:acknowledge|close}", self.change)
        return app

    async def create(self, request: web.Request) -> web.Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _unprocessable({"body": "Request body is not valid JSON."})
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str) or not message.strip():
            return _unprocessable({"message": "Message can not be empty."})
        if len(message) > 130:
            return _unprocessable({"message": "Message can not be longer than 130 characters."})
        alias = body.get("alias") or uuid.uuid4().hex
        self._event("trigger", alias, body)
        return _accepted()

    async def change(self, request: web.Request) -> web.Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        kind = request.query.get("identifierType", "id")
        if kind not in ("id", "alias", "tiny"):
            return _unprocessable({"identifierType": f"Invalid identifier type: {kind}"})
        body = json.loads(await request.read() or b"{}")
        verb = request.match_info["verb"]
        self._event(
            "acknowledge" if verb == "acknowledge" else "resolve",
            request.match_info["identifier"],
            body,
        )
        return _accepted()

    def _check(self, request: web.Request) -> web.Response | None:
        busy = self._unavailable()
        if busy is not None:
            return busy
        if request.headers.get("Authorization") != f"GenieKey {self.key}":
            return web.json_response(
                {"message": "Could not authenticate", "took": 0.0, "requestId": _request_id()},
                status=401,
            )
        return None


def _accepted() -> web.Response:
    return web.json_response(
        {"result": "Request will be processed", "took": 0.011, "requestId": _request_id()},
        status=202,
    )


def _unprocessable(errors: dict[str, str]) -> web.Response:
    return web.json_response(
        {
            "message": "Request body is not processable. Please check the errors.",
            "errors": errors,
            "took": 0.0,
            "requestId": _request_id(),
        },
        status=422,
    )


def _request_id() -> str:
    return str(uuid.uuid4())
