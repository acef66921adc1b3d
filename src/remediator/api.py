"""/api/v1: read incidents and actions; steer the kill switch, mutes, approvals and circuit
breakers. Every route needs the API bearer token; every error is JSON naming the problem."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from aiohttp import web

from remediator import guardrail_state
from remediator.control import Control, mute_view
from remediator.edge import RequestError, error, read_body, reply
from remediator.engine import Engine
from remediator.errors import ControlError, PayloadError
from remediator.schema import INT64_MAX, Secret, decimal, parse_duration
from remediator.types import ApiStore
from remediator.wire import decode

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_PAGE = 500
MAX_BODY = 64 * 1024
BODY_TIMEOUT = 15.0
APPROVAL_STATUSES = ("pending", "approved", "denied", "expired", "cancelled", "all")


class Api:
    def __init__(self, store: ApiStore, engine: Engine, control: Control) -> None:
        self.store = store
        self.engine = engine
        self.control = control

    def register(self, app: web.Application, token: Secret | None) -> None:
        guard = api_auth(token)
        routes = [
            ("GET", "/api/v1/incidents", self.incidents),
            ("POST", "/api/v1/incidents/{id}/ack", self.ack),
            ("GET", "/api/v1/incidents/{id}", self.incident),
            ("POST", "/api/v1/incidents/{id}/close", self.close_incident),
            ("GET", "/api/v1/actions", self.actions),
            ("GET", "/api/v1/history", self.history),
            ("GET", "/api/v1/killswitch", self.killswitch),
            ("PUT", "/api/v1/killswitch", self.set_killswitch),
            ("GET", "/api/v1/mutes", self.mutes),
            ("POST", "/api/v1/mutes", self.add_mute),
            ("DELETE", "/api/v1/mutes/{id}", self.end_mute),
            ("GET", "/api/v1/approvals", self.approvals),
            ("POST", "/api/v1/approvals/{id}", self.decide),
            ("GET", "/api/v1/circuits", self.circuits),
            ("GET", "/api/v1/guardrails", self.guardrails),
            ("POST", "/api/v1/circuits/{target}/reset", self.reset_circuit),
            ("GET", "/api/v1/replicas", self.replicas),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, guard(handler))

    # -- reading -------------------------------------------------------------------------------

    async def incidents(self, request: web.Request) -> web.Response:
        status = request.query.get("status")
        if status not in (None, "open", "resolved"):
            return error(400, f"status: expected open or resolved, got {status!r}")
        limit, before = page_params(request)
        page = await self.store.list_incidents(limit, before, status)
        for item in page.items:
            rule = self.engine.index.get(item["rule"])
            item["tier_name"] = rule.tier_name(item["tier"]) if rule else None
        return page_response(request, page.items, page.next_before)

    async def incident(self, request: web.Request) -> web.Response:
        record = await self.store.incident_record(path_id(request))
        if record is None:
            return error(404, f"no incident {path_id(request)}")
        rule = self.engine.index.get(record["rule"])
        record["tier_name"] = rule.tier_name(record["tier"]) if rule else None
        return reply(record)

    async def close_incident(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        closed = await self.control.close(path_id(request), text(body, "reason"), actor(body))
        return reply({"id": closed.id, "status": closed.status})

    async def actions(self, request: web.Request) -> web.Response:
        limit, before = page_params(request)
        page = await self.store.list_actions(limit, before)
        return page_response(request, page.items, page.next_before)

    async def history(self, request: web.Request) -> web.Response:
        limit, before = page_params(request)
        page = await self.store.history(limit, before)
        return page_response(request, page.items, page.next_before)

    async def guardrails(self, request: web.Request) -> web.Response:
        """Cooldowns running, budgets left, busy targets, and the starts they count."""
        config, now = self.control.config, self.control.clock.now()
        state = await self.store.guardrail_state(now - guardrail_state.horizon(config))
        return reply(guardrail_state.view(config, state, now))

    # -- kill switch ---------------------------------------------------------------------------

    async def killswitch(self, request: web.Request) -> web.Response:
        return reply(asdict(await self.control.killswitch()))

    async def set_killswitch(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        on = body.get("on")
        if not isinstance(on, bool):
            return error(400, "on: expected true or false")
        switch = await self.control.set_killswitch(on, actor(body), text(body, "reason"))
        return reply(asdict(switch))

    # -- mutes ---------------------------------------------------------------------------------

    async def mutes(self, request: web.Request) -> web.Response:
        everything = request.query.get("all") in ("1", "true")
        return reply({"items": await self.control.mutes(everything)})

    async def add_mute(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        duration = text(body, "duration")
        try:
            seconds = parse_duration(duration)
        except ValueError:
            return error(400, f"duration: expected a duration like 30m or 2h, got {duration!r}")
        mute = await self.control.add_mute(
            rule=text(body, "rule") or None,
            target=text(body, "target") or None,
            matchers=text(body, "matchers") or None,
            duration=seconds,
            reason=text(body, "reason"),
            by=actor(body),
        )
        return reply(mute_view(mute, self.control.clock.now()), status=201)

    async def end_mute(self, request: web.Request) -> web.Response:
        await self.control.end_mute(path_id(request), actor(await json_body(request, {})))
        return reply({"status": "ended"})

    # -- approvals -----------------------------------------------------------------------------

    async def approvals(self, request: web.Request) -> web.Response:
        status = request.query.get("status", "pending")
        if status not in APPROVAL_STATUSES:
            expected = ", ".join(APPROVAL_STATUSES[:-1]) + f" or {APPROVAL_STATUSES[-1]}"
            return error(400, f"status: expected {expected}, got {status!r}")
        items = await self.control.approvals(None if status == "all" else status)
        return reply({"items": items})

    async def decide(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        decision = body.get("decision")
        if decision not in ("approve", "deny"):
            return error(400, f'decision: expected "approve" or "deny", got {decision!r}')
        approval = await self.control.decide(
            path_id(request), decision == "approve", actor(body), text(body, "reason")
        )
        return reply(asdict(approval) | {"request": approval.request})

    async def ack(self, request: web.Request) -> web.Response:
        """Take ownership of an incident: acknowledges its page and stops its escalation path."""
        incident_id = path_id(request)
        await self.control.ack(incident_id, actor(await json_body(request, {})))
        return web.json_response({"incident": incident_id, "status": "acknowledged"})

    async def replicas(self, request: web.Request) -> web.Response:
        """The leader, its epoch, and every replica's last heartbeat (leader.py)."""
        leadership = await self.store.leadership()
        now = self.control.clock.now()
        items = [
            {
                "name": r.name,
                "role": r.role,
                "epoch": r.epoch,
                "started_at": r.started_at,
                "heartbeat_at": r.heartbeat_at,
                "heartbeat_age": round(now - r.heartbeat_at, 3),
            }
            for r in await self.store.replicas()
        ]
        return reply(
            {
                "leader": leadership.leader,
                "epoch": leadership.epoch,
                "since": leadership.since,
                "items": items,
            }
        )

    # -- circuit breakers ----------------------------------------------------------------------

    async def circuits(self, request: web.Request) -> web.Response:
        return reply({"items": await self.control.circuits()})

    async def reset_circuit(self, request: web.Request) -> web.Response:
        await self.control.reset_circuit(
            request.match_info["target"], actor(await json_body(request, {}))
        )
        return reply({"status": "closed"})


# -- helpers ---------------------------------------------------------------------------------


async def json_body(request: web.Request, default: dict[str, Any] | None = None) -> dict[str, Any]:
    if not request.can_read_body and default is not None:
        return default
    raw = await read_body(request, MAX_BODY, BODY_TIMEOUT)
    try:
        body = decode(raw)
    except PayloadError as e:
        raise RequestError(400, f"expected a JSON object body: {e}") from None
    if not isinstance(body, dict):
        raise RequestError(400, "expected a JSON object body")
    return body


def text(body: dict[str, Any], key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise RequestError(400, f"{key}: expected a string")
    return value


def actor(body: dict[str, Any]) -> str:
    """Who asked, as they say; the API token is shared, so the name is recorded as given."""
    return f"api:{text(body, 'by') or 'anonymous'}"


def path_id(request: web.Request) -> int:
    found = decimal(request.match_info["id"])
    if found is None:
        raise RequestError(400, f"the id in the path must be an integer from 0 to {INT64_MAX}")
    return found


def page_params(request: web.Request) -> tuple[int, int | None]:
    limit = decimal(request.query.get("limit", "50"))
    before = decimal(request.query["before"]) if "before" in request.query else None
    if limit is None or ("before" in request.query and before is None):
        raise RequestError(400, f"limit and before must be integers from 0 to {INT64_MAX}")
    if not 1 <= limit <= MAX_PAGE:
        raise RequestError(400, f"limit must be between 1 and {MAX_PAGE}")
    return limit, before


def page_response(request: web.Request, items: list[Any], next_before: int | None) -> web.Response:
    body: dict[str, Any] = {"items": items, "next": None}
    if next_before is not None:
        query = dict(request.query)
        query["before"] = str(next_before)
        body["next"] = str(request.rel_url.with_query(query))
    return reply(body)


def bearer_authorized(header: str, token: Secret) -> bool:
    scheme, _, credentials = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credentials.strip().encode(), token.reveal().encode()
    )


def api_auth(token: Secret | None) -> Callable[[Handler], Handler]:
    """Require the API bearer token; without one configured, the API is closed. Operator errors
    (ControlError) answer with their status and a JSON body."""

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if token is None:
                return error(
                    403,
                    "the API is disabled: set api_auth.bearer_token_env or "
                    "api_auth.bearer_token_file",
                )
            if not bearer_authorized(request.headers.get("Authorization", ""), token):
                return error(
                    401,
                    "missing or wrong bearer token",
                    headers={"WWW-Authenticate": 'Bearer realm="remediator"'},
                )
            try:
                return await handler(request)
            except ControlError as e:
                return error(e.status, str(e))

        return guarded

    return wrap
