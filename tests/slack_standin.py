"""Slack's Web API on 127.0.0.1, answering as Slack does, and request signing as Slack signs.

Methods: auth.test, chat.postMessage (with `metadata`), chat.update, conversations.history and
conversations.replies (by channel ID only, as Slack; metadata shown with `include_all_metadata`),
usergroups.users.list, plus `response_url` endpoints (/response/<name>). Errors are HTTP 200 with
{"ok": false, "error": ...}, as Slack answers them: a channel in `outside` answers not_in_channel
(the bot is not a member), a method whose scope is not in `scopes` missing_scope with `needed`.
`rate_limit` makes it answer 429 with Retry-After beyond N calls per second; `failures` makes the
next calls answer 500; `lose_answers` makes chat.postMessage post, then drop the connection
instead of answering, N times; `stop()`/`start(port)` take it off the network entirely.

Socket Mode as Slack runs it: apps.connections.open (with the xapp- app-level token) answers a
websocket URL; on connecting, Slack sends `hello`, then envelopes (`send_envelope`), each of which
the app acknowledges with its `envelope_id` (and, for a slash command, the reply as `payload`);
`acked` waits for that acknowledgement.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from tests.standins import StandIn

TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-test-token"
BOT = {"user": "remediator", "user_id": "U0BOT", "bot_id": "B0BOT", "team": "Example",
       "team_id": "T0TEAM", "url": "https://example.slack.com/"}  # fmt: skip
# the scope each method needs (auth.test needs none)
SCOPES = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "conversations.history": "channels:history",
    "conversations.replies": "channels:history",
    "usergroups.users.list": "usergroups:read",
}
SECRET = "test-signing-secret"


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[Any]
    attachments: list[Any]
    thread_ts: str | None
    updates: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None

    @property
    def current_text(self) -> str:
        return str(self.updates[-1].get("text", "")) if self.updates else self.text


class SlackAPI:
    def __init__(
        self, channels: dict[str, str] | None = None, usergroups: dict[str, list[str]] | None = None
    ) -> None:
        self.channels = channels or {"#alerts": "C0ALERTS", "#cdc": "C0CDC"}
        self.usergroups = usergroups or {}
        self.outside: set[str] = set()  # channel IDs the bot is not a member of
        self.scopes = {"chat:write", "channels:history", "usergroups:read", "commands"}
        self.messages: list[Message] = []  # posts, in the order Slack accepted them
        self.responses: dict[str, list[dict[str, Any]]] = {}  # response_url name -> bodies
        self.calls: list[tuple[str, int]] = []  # (method, HTTP status) of every call
        self.failures = 0
        self.lose_answers = 0  # post, then drop the connection instead of answering
        self.rate_limit: int | None = None  # calls per second before 429
        self.retry_after = 1
        self.delay = 0.0  # seconds before each answer: a slow Slack
        self._window: list[float] = []
        self._ts = 0
        self.sockets: list[web.WebSocketResponse] = []  # open Socket Mode connections
        self.acks: dict[str, tuple[float, dict[str, Any]]] = {}  # envelope_id -> (when, ack)
        self._acked = asyncio.Condition()
        self.server = StandIn(_fresh(self))
        self.port = 0

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def base_url(self) -> str:
        return f"{self.server.url}/api/"

    async def start(self) -> SlackAPI:
        """Start (or start again, after stop(), on the same port)."""
        await self.server.start(self.port)
        self.port = self.server.port
        return self

    async def stop(self) -> None:
        for socket in list(self.sockets):
            await socket.close()
        await self.server.stop()
        self.server = StandIn(_fresh(self))

    def response_url(self, name: str = "r") -> str:
        return f"{self.server.url}/response/{name}"

    # -- the API -------------------------------------------------------------------------------

    async def api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures > 0:
            self.failures -= 1
            self.calls.append((method, 500))
            return web.Response(
                status=500, text="<html>upstream error</html>", content_type="text/html"
            )
        if self.rate_limit is not None and not self._allow():
            self.calls.append((method, 429))
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(self.retry_after)},
            )
        self.calls.append((method, 200))
        if method == "apps.connections.open":
            return self.connections_open(request)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _error("invalid_auth" if "Authorization" in request.headers else "not_authed")
        needed = SCOPES.get(method)
        if needed is not None and needed not in self.scopes:
            return web.json_response(
                {"ok": False, "error": "missing_scope", "needed": needed,
                 "provided": ",".join(sorted(self.scopes))}
            )  # fmt: skip
        args = await _arguments(request)
        handler = {
            "auth.test": self.auth_test,
            "chat.postMessage": self.post,
            "chat.update": self.update,
            "conversations.history": self.history,
            "conversations.replies": self.replies,
            "usergroups.users.list": self.group,
        }.get(method)
        if handler is None:
            return _error("unknown_method")
        response = handler(args)
        if method == "chat.postMessage" and self.lose_answers > 0 and response.status == 200:
            self.lose_answers -= 1
            assert request.transport is not None
            request.transport.close()  # posted; the answer never arrives
        return response

    def history(self, args: dict[str, Any]) -> web.Response:
        channel = args.get("channel", "")
        if channel not in self.channels.values():
            return _error("channel_not_found")
        oldest = float(args.get("oldest") or 0)
        found = [
            m
            for m in self.messages
            if m.channel == channel and m.thread_ts is None and float(m.ts) >= oldest
        ]
        return self._listing(reversed(found), args)

    def replies(self, args: dict[str, Any]) -> web.Response:
        channel, ts = args.get("channel", ""), args.get("ts", "")
        if channel not in self.channels.values():
            return _error("channel_not_found")
        thread = [m for m in self.messages if m.channel == channel and ts in (m.ts, m.thread_ts)]
        if not thread:
            return _error("thread_not_found")
        return self._listing(thread, args)

    @staticmethod
    def _listing(found: Any, args: dict[str, Any]) -> web.Response:
        metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        messages = []
        for m in found:
            shown: dict[str, Any] = {"type": "message", "text": m.text, "ts": m.ts}
            if m.thread_ts:
                shown["thread_ts"] = m.thread_ts
            if metadata and m.metadata:
                shown["metadata"] = m.metadata
            messages.append(shown)
        return web.json_response({"ok": True, "messages": messages, "has_more": False})

    def auth_test(self, args: dict[str, Any]) -> web.Response:
        return web.json_response({"ok": True, **BOT, "is_enterprise_install": False})

    def post(self, args: dict[str, Any]) -> web.Response:
        channel = self._channel(args.get("channel", ""))
        if channel is None:
            return _error("channel_not_found")
        if channel in self.outside:
            return _error("not_in_channel")
        if not args.get("text") and not args.get("blocks") and not args.get("attachments"):
            return _error("no_text")
        try:
            metadata = _metadata(args.get("metadata"))
        except ValueError:
            return _error("invalid_metadata_format")
        thread = args.get("thread_ts")
        if thread and not any(m.ts == thread and m.channel == channel for m in self.messages):
            return _error("thread_not_found")
        self._ts += 1
        ts = f"{int(time.time())}.{self._ts:06d}"
        self.messages.append(
            Message(
                channel,
                ts,
                args.get("text", ""),
                _json(args.get("blocks")),
                _json(args.get("attachments")),
                thread,
                metadata=metadata,
            )
        )
        return web.json_response(
            {
                "ok": True,
                "channel": channel,
                "ts": ts,
                "message": {"text": args.get("text", ""), "ts": ts},
            }
        )

    def update(self, args: dict[str, Any]) -> web.Response:
        found = next(
            (
                m
                for m in self.messages
                if m.channel == args.get("channel") and m.ts == args.get("ts")
            ),
            None,
        )
        if found is None:
            return _error("message_not_found")
        found.updates.append(
            {
                "text": args.get("text", ""),
                "blocks": _json(args.get("blocks")),
                "attachments": _json(args.get("attachments")),
            }
        )
        return web.json_response({"ok": True, "channel": found.channel, "ts": found.ts})

    def group(self, args: dict[str, Any]) -> web.Response:
        group = args.get("usergroup", "")
        if group not in self.usergroups:
            return _error("no_such_subteam")
        return web.json_response({"ok": True, "users": self.usergroups[group]})

    # -- Socket Mode -----------------------------------------------------------------------------

    def connections_open(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not token.startswith("xapp-"):
            return _error("not_allowed_token_type")
        if token != APP_TOKEN:
            return _error("invalid_auth")
        url = f"ws://127.0.0.1:{self.port}/link/?ticket={uuid.uuid4()}&app_id=A0APP"
        return web.json_response({"ok": True, "url": url})

    async def link(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self.sockets.append(socket)
        await socket.send_json(
            {
                "type": "hello",
                "num_connections": len(self.sockets),
                "debug_info": {"host": "applink-standin", "approximate_connection_time": 18060},
                "connection_info": {"app_id": "A0APP"},
            }
        )
        async for message in socket:
            if message.type == web.WSMsgType.TEXT:
                ack = json.loads(message.data)
                async with self._acked:
                    self.acks[ack["envelope_id"]] = (time.monotonic(), ack)
                    self._acked.notify_all()
        self.sockets.remove(socket)
        return socket

    async def send_envelope(self, kind: str, payload: dict[str, Any]) -> tuple[str, float]:
        """Send one envelope to the connected app; (its envelope_id, when it was sent)."""
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "accepts_response_payload": kind == "slash_commands",
            "retry_attempt": 0,
            "retry_reason": "",
            "payload": payload,
        }
        sent = time.monotonic()
        await self.sockets[-1].send_json(envelope)
        return envelope_id, sent

    async def acked(self, envelope_id: str, timeout: float = 3.0) -> tuple[float, dict[str, Any]]:
        """The acknowledgement of an envelope (when it arrived, what it said), within `timeout`:
        Slack retries an envelope not acknowledged within three seconds."""
        async with asyncio.timeout(timeout), self._acked:
            await self._acked.wait_for(lambda: envelope_id in self.acks)
        return self.acks[envelope_id]

    async def response(self, request: web.Request) -> web.Response:
        self.responses.setdefault(request.match_info["name"], []).append(await request.json())
        return web.Response(text="ok")

    # -- reading what arrived ------------------------------------------------------------------

    def parents(self) -> list[Message]:
        return [m for m in self.messages if m.thread_ts is None]

    def thread(self, parent: Message) -> list[Message]:
        return [m for m in self.messages if m.thread_ts == parent.ts]

    def _channel(self, name: str) -> str | None:
        if name in self.channels.values():
            return name
        return self.channels.get(name) or self.channels.get(f"#{name}")

    def _allow(self) -> bool:
        now = time.monotonic()
        self._window = [t for t in self._window if now - t < 1.0]
        if self.rate_limit is not None and len(self._window) >= self.rate_limit:
            return False
        self._window.append(now)
        return True


def _metadata(value: Any) -> dict[str, Any] | None:
    """chat.postMessage's `metadata`: {event_type, event_payload}, as JSON text or an object;
    ValueError for anything else (Slack: invalid_metadata_format)."""
    if value in (None, ""):
        return None
    data = json.loads(value) if isinstance(value, str) else value
    if not isinstance(data, dict) or not {"event_type", "event_payload"} <= set(data):
        raise ValueError(f"invalid metadata {value!r}")
    return data


def _fresh(api: SlackAPI) -> web.Application:
    app = web.Application()
    app.router.add_post("/api/{method}", api.api)
    app.router.add_get("/api/{method}", api.api)
    app.router.add_post("/response/{name}", api.response)
    app.router.add_get("/link/", api.link)
    return app


async def _arguments(request: web.Request) -> dict[str, Any]:
    args: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        args.update(await request.json())
    elif request.can_read_body:
        args.update(dict(parse_qsl((await request.read()).decode())))
    return args


def _json(value: Any) -> list[Any]:
    if isinstance(value, str):
        loaded: list[Any] = json.loads(value)
        return loaded
    return list(value or [])


def _error(error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error})


# -- signing, exactly as Slack signs ---------------------------------------------------------


def signed(body: bytes, timestamp: int | str | None = None, secret: str = SECRET) -> dict[str, str]:
    """The headers Slack sends: v0 HMAC-SHA256 over `v0:{timestamp}:{raw body}`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


_TRIGGERS = itertools.count(1)


def _trigger_id() -> str:
    return f"{next(_TRIGGERS)}.2.3"


def command(
    text: str, user: str = "U0ADMIN", response_url: str = "", command_name: str = "/remediate"
) -> bytes:
    """A slash command's form body, with the fields Slack sends."""
    return urlencode(
        {
            "token": "deprecated",
            "team_id": "T0TEAM",
            "team_domain": "example",
            "channel_id": "C0ALERTS",
            "channel_name": "alerts",
            "user_id": user,
            "user_name": user.lower(),
            "command": command_name,
            "text": text,
            "api_app_id": "A0APP",
            "response_url": response_url,
            "trigger_id": _trigger_id(),  # unique per request, as Slack's
        }
    ).encode()


def click(
    action_id: str,
    value: str,
    user: str = "U0ADMIN",
    response_url: str = "",
    message_ts: str = "1.000001",
) -> bytes:
    """A block_actions interaction's form body."""
    payload = {
        "type": "block_actions",
        "trigger_id": _trigger_id(),
        "user": {"id": user, "username": user.lower()},
        "team": {"id": "T0TEAM"},
        "api_app_id": "A0APP",
        "response_url": response_url,
        "container": {"type": "message", "message_ts": message_ts, "channel_id": "C0ALERTS"},
        "actions": [
            {
                "action_id": action_id,
                "block_id": f"approval:{value}",
                "value": value,
                "type": "button",
                "action_ts": "1.2",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()
