"""Slash commands (`POST /slack/commands`) and buttons (`POST /slack/interactions`).

Every request is checked before it is read: Slack's v0 signature over the raw body, within five
minutes of now; a missing, malformed or wrong signature is a 401. Then the verb is authorised
(allowlists of user IDs and user groups per verb), and an unauthorised attempt is answered with an
ephemeral refusal and audited. Slack wants an answer within three seconds: everything here is a
store read or write, and a manual action's outcome follows through `response_url`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from aiohttp import web
from slack_sdk.signature import Clock as SlackClock
from slack_sdk.signature import SignatureVerifier

from remediator import commands, wire
from remediator.clock import Clock, iso
from remediator.config import READ_VERBS, Config
from remediator.control import Control
from remediator.edge import RequestError, error, read_body
from remediator.errors import ControlError, PayloadError
from remediator.metrics import Metrics
from remediator.schema import decimal, parse_duration
from remediator.slack.fixes import explain
from remediator.slack.templates import slack_escape
from remediator.store.records import FINISHED, AuditEntry, Claim
from remediator.trust import default_tls
from remediator.types import SlackAppStore

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
REPLAY_WINDOW = 300.0  # Slack's own: older timestamps fail the signature check
MAX_SEEN = 100_000
GROUP_CACHE = 60.0
MANUAL_REPORT_TIMEOUT = 600.0
STATUS_SHOWN = 20  # open incidents listed by `status`, newest first
COMMAND_FIELDS = ("user_id", "text", "response_url")  # what a slash command reads
HELP = """*{command}* verbs:
`status [incident|target]` · `history [n]` · `ack <incident>` · `close <incident> <reason>`
`pause|resume|restart|rollback <target> [label=value ...]` (targets: {targets})
`approve <id>` · `deny <id> [reason]`
`mute <rule|target> <duration> <reason>` · `unmute <id>`
`killswitch on|off|status [reason]`"""

Handler = Callable[["SlackApp", "Request", list[str]], Awaitable[str]]


class Request:
    """Who asked what, from where: the parts of a slash command or click that matter."""

    def __init__(self, user_id: str, response_url: str) -> None:
        self.user_id = user_id
        self.response_url = response_url

    @property
    def actor(self) -> str:
        return f"slack:{self.user_id}"


class SlackApp:
    def __init__(
        self,
        config: Config,
        store: SlackAppStore,
        control: Control,
        metrics: Metrics,
        clock: Clock,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self.slack = config.slack
        self.store = store
        self.control = control
        self.metrics = metrics
        self.clock = clock
        self.http = http or httpx.AsyncClient(trust_env=False, timeout=10.0, verify=default_tls())
        secret = self.slack.signing_secret  # None: Socket Mode only, no HTTP endpoints
        self.verifier = (
            None if secret is None else SignatureVerifier(secret.reveal(), clock=_SlackClock(clock))
        )
        self.replays = Replays(clock)
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def reconfigure(self, config: Config) -> None:
        """A reloaded config: verbs, access and rules (the signing secret takes a restart)."""
        self.config = config
        self.slack = config.slack

    def register(self, app: web.Application) -> None:
        if self.verifier is None:
            return
        app.router.add_post("/slack/commands", self.commands)
        app.router.add_post("/slack/interactions", self.interactions)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http.aclose()

    # -- the two endpoints ---------------------------------------------------------------------

    async def commands(self, request: web.Request) -> web.Response:
        form = await self._verified_form(request, "commands")
        if isinstance(form, web.Response):
            return form
        return await self.command(form)

    async def interactions(self, request: web.Request) -> web.Response:
        form = await self._verified_form(request, "interactions")
        if isinstance(form, web.Response):
            return form
        try:
            payload = wire.decode(form.get("payload", ""))
        except PayloadError as e:
            self.metrics.slack_requests.labels("interactions", "invalid").inc()
            return error(400, f"not a block_actions payload: {e}")
        return await self.interaction(payload)

    # -- a command or a click, however it arrived (HTTP, or Socket Mode's websocket) -------------

    async def command(self, form: Mapping[str, str]) -> web.Response:
        """A slash command's fields, as Slack sends them; the answer is the ephemeral reply."""
        who = Request(form.get("user_id", ""), form.get("response_url", ""))
        words = form.get("text", "").split()
        verb, args = (words[0].lower(), words[1:]) if words else ("help", [])
        handler = VERBS.get(verb)
        if handler is None:
            self.metrics.slack_requests.labels("commands", "invalid").inc()
            return ephemeral(f"Unknown verb {slack_escape(repr(verb))}.\n" + self._help())
        if not await self._authorised(verb, who):
            return await self._refuse(verb, who, "commands")
        self.metrics.slack_requests.labels("commands", "ok").inc()
        try:
            text = await handler(self, who, args)
        except (ControlError, UsageError) as e:
            return ephemeral(f":warning: {slack_escape(str(e))}")
        return ephemeral(text)

    async def socket_command(self, payload: Any) -> web.Response:
        """A slash command over Socket Mode: JSON rather than a form, so held to what a form may
        carry first (socket_form); a refusal is the ephemeral reply."""
        try:
            form = socket_form(payload)
        except PayloadError as e:
            self.metrics.slack_requests.labels("commands", "invalid").inc()
            return ephemeral(f":warning: this command cannot be read: {slack_escape(str(e))}")
        return await self.command(form)

    async def interaction(self, payload: Any) -> web.Response:
        """A click's payload (block_actions); the answer only acknowledges it."""
        try:
            verb, approval_id, who = _block_action(payload)
        except (PayloadError, KeyError, IndexError, TypeError) as e:
            self.metrics.slack_requests.labels("interactions", "invalid").inc()
            detail = f": {e}" if isinstance(e, PayloadError) else ""
            return error(400, f"not a block_actions payload{detail}")
        if payload.get("type") != "block_actions" or verb not in ("approve", "deny"):
            self.metrics.slack_requests.labels("interactions", "invalid").inc()
            return web.Response(status=200)
        if not await self._authorised(verb, who):
            await self._refuse(verb, who, "interactions")
            self._later(self._respond(who, f":no_entry_sign: You may not {verb} actions."))
            return web.Response(status=200)
        self.metrics.slack_requests.labels("interactions", "ok").inc()
        try:
            await self.control.decide(approval_id, verb == "approve", who.actor)
        except ControlError as e:  # expired, already decided, unknown: say so to the clicker
            self._later(self._respond(who, f":warning: {slack_escape(str(e))}"))
        return web.Response(status=200)  # the message itself is updated through the outbox

    # -- checks --------------------------------------------------------------------------------

    async def _verified_form(
        self, request: web.Request, endpoint: str
    ) -> dict[str, str] | web.Response:
        try:  # the whole body, however many segments it came in, before the signature is checked
            body = await read_body(request, MAX_BODY, self.config.server.body_timeout)
        except RequestError as e:
            self.metrics.slack_requests.labels(endpoint, "invalid").inc()
            return error(e.status, e.message)
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        try:
            assert self.verifier is not None  # the routes exist only with a signing secret
            valid = bool(timestamp and signature) and self.verifier.is_valid(
                body, timestamp, signature
            )
        except (ValueError, TypeError):
            # ValueError: a non-numeric timestamp (slack_sdk calls int() on it unguarded);
            # TypeError: a non-ASCII signature (hmac.compare_digest refuses to compare it)
            valid = False
        if not valid:
            self.metrics.slack_requests.labels(endpoint, "unauthorized").inc()
            return error(401, "missing, stale or wrong Slack signature")
        if not self.replays.first(signature, float(timestamp)):
            self.metrics.slack_requests.labels(endpoint, "unauthorized").inc()
            return error(401, "this signed request was already received (a replay)")
        try:
            return _form(body)
        except PayloadError as e:
            self.metrics.slack_requests.labels(endpoint, "invalid").inc()
            return error(400, str(e))

    async def _authorised(self, verb: str, who: Request) -> bool:
        access = self.slack.access.get(verb)
        if access is None and verb in READ_VERBS:
            return True  # reading is open unless the verb itself is listed
        access = access or self.slack.access.get("*")
        if access is None:
            return False  # writing needs an explicit allowlist
        if who.user_id in access.users:
            return True
        for group in access.groups:
            if who.user_id in await self._members(group):
                return True
        return False

    async def _members(self, group: str) -> frozenset[str]:
        cached = self._groups.get(group)
        if cached is not None and time.monotonic() - cached[0] < GROUP_CACHE:
            return cached[1]
        members: frozenset[str] = frozenset()
        token = self.slack.token
        if token is None:
            log.warning("slack: user group %s cannot be checked without a bot token", group)
            return members
        try:
            r = await self.http.get(
                f"{self.slack.base_url}usergroups.users.list",
                params={"usergroup": group},
                headers={"Authorization": f"Bearer {token.reveal()}"},
            )
            data = r.json()
            if data.get("ok"):
                members = frozenset(data.get("users", []))
            else:
                problem = explain(str(data.get("error")), str(data.get("needed", "")))
                log.warning("slack: usergroups.users.list %s: %s", group, problem)
        except (httpx.HTTPError, ValueError) as e:
            log.warning("slack: cannot list user group %s: %s", group, e)
            return cached[1] if cached else members
        self._groups[group] = (time.monotonic(), members)
        return members

    async def _refuse(self, verb: str, who: Request, endpoint: str) -> web.Response:
        self.metrics.slack_requests.labels(endpoint, "forbidden").inc()
        await self.control.record(
            AuditEntry(
                kind="audit",
                event="slack_refused",
                message=f"{who.actor} may not {verb}",
                at=self.clock.now(),
                actor=who.actor,
                detail={"verb": verb},
            )
        )
        return ephemeral(
            f":no_entry_sign: You are not allowed to `{verb}`. Ask an admin to "
            f"add you to `slack.access.{verb}`."
        )

    # -- responses -----------------------------------------------------------------------------

    def _later(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _respond(self, who: Request, text: str, public: bool = False) -> None:
        if not response_url_allowed(who.response_url, self.slack.base_url):
            log.warning("slack: not answering through a response_url outside Slack's hosts")
            return
        body = {
            "response_type": "in_channel" if public else "ephemeral",
            "replace_original": False,
            "text": text,
        }
        try:
            await self.http.post(who.response_url, json=body)
        except httpx.HTTPError as e:
            log.warning("slack: cannot answer through response_url: %s", e)

    async def _report_when_done(self, who: Request, claim: Claim, what: str) -> None:
        """A manual action's outcome, through response_url when it is known."""
        async with asyncio.timeout(MANUAL_REPORT_TIMEOUT):
            while True:
                current = await self.store.claim(claim.id)
                if current is None or current.status in FINISHED:
                    break
                await asyncio.sleep(0.2)
        outcome = f"{current.status}: {slack_escape(current.detail)}" if current else "unknown"
        await self._respond(who, f"{what}: {outcome}", public=True)

    def _help(self) -> str:
        targets = sorted({t for verbs in self.slack.verbs.values() for t in verbs})
        return HELP.format(command=self.slack.command, targets=", ".join(targets) or "none")


class UsageError(Exception):
    pass


class Replays:
    """Signatures seen within Slack's five-minute window: the same signed request is taken
    once. Held in memory (a restart forgets them; the window bounds what a replay could do
    after one); at most MAX_SEEN, oldest first out."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._seen: dict[str, float] = {}

    def first(self, signature: str, timestamp: float) -> bool:
        now = self.clock.now()
        while self._seen and (
            len(self._seen) >= MAX_SEEN or next(iter(self._seen.values())) < now - REPLAY_WINDOW
        ):
            del self._seen[next(iter(self._seen))]
        if signature in self._seen:
            return False
        self._seen[signature] = max(timestamp, now)
        return True


def response_url_allowed(url: str, base_url: str) -> bool:
    """Slack's response URLs are https on hooks.slack.com; the host of a configured base_url
    (a Slack stand-in, an Enterprise Grid proxy) is trusted the same way."""
    parts = urlsplit(url)
    trusted = {"hooks.slack.com", urlsplit(base_url).hostname}
    secure = parts.scheme == "https" or urlsplit(base_url).scheme == "http"
    return secure and parts.hostname in trusted and parts.username is None


def _form(body: bytes) -> dict[str, str]:
    """A signed form body's fields (the first of each), refusing what cannot be stored."""
    text = wire.utf8(body)
    try:
        parsed = parse_qs(text, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise PayloadError("a form field is not UTF-8") from None
    form = {k: v[0] for k, v in parsed.items()}
    wire.check(form)
    return form


def socket_form(payload: Any) -> dict[str, str]:
    """A slash command's fields as Socket Mode carries them (a JSON object), refusing what an
    HTTP form could not carry or the store could not hold: the fields a command reads must be
    strings, and no value a lone surrogate, a NUL or an integer past 64 bits."""
    if not isinstance(payload, dict):
        raise PayloadError(f"expected an object, got {type(payload).__name__}")
    wire.check(payload)
    for key in COMMAND_FIELDS:
        value = payload.get(key, "")
        if not isinstance(value, str):
            raise PayloadError(f"{key}: expected a string, got {type(value).__name__}")
    return {k: v for k, v in payload.items() if isinstance(v, str)}


def _block_action(payload: Any) -> tuple[str, int, Request]:
    """verb, approval id and who of a button click's payload; PayloadError or a lookup error if
    it is not one."""
    wire.check(payload)  # what Socket Mode delivers, too, must be storable
    action = payload["actions"][0]
    verb, value, user = action["action_id"], action["value"], payload["user"]["id"]
    response_url = payload.get("response_url", "")
    if not all(isinstance(v, str) for v in (verb, value, user, response_url)):
        raise PayloadError("actions[0].action_id, actions[0].value, user.id: expected strings")
    approval_id = decimal(value)
    if approval_id is None:
        raise PayloadError(f"actions[0].value: expected an approval id, got {value!r}")
    return verb, approval_id, Request(user, response_url)


class _SlackClock(SlackClock):
    """Our clock, as slack_sdk's SignatureVerifier takes one (for the replay window)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def now(self) -> float:
        return self.clock.now()


def ephemeral(text: str) -> web.Response:
    return web.json_response({"response_type": "ephemeral", "text": text})


# -- verbs -------------------------------------------------------------------------------------


async def _help(app: SlackApp, who: Request, args: list[str]) -> str:
    return app._help()


async def _status(app: SlackApp, who: Request, args: list[str]) -> str:
    incident_id = decimal(args[0]) if args else None
    if incident_id is not None:
        return await _incident_status(app, incident_id)
    if args:
        return await _target_status(app, args[0])
    switch = await app.control.killswitch()
    page = await app.store.list_incidents(STATUS_SHOWN, None, "open")
    open_count = await app.store.count_incidents("open")
    pending, _ = await app.store.pending_approvals()
    lines = [
        f"Kill switch: *{'ON' if switch.on else 'off'}* · open incidents: "
        f"{open_count} · approvals waiting: {pending}"
    ]
    lines += [
        f"• incident {i['id']} `{slack_escape(i['rule'])}` {_key(i['key'])} tier {i['tier']}"
        for i in page.items
    ]
    if open_count > len(page.items):
        more = open_count - len(page.items)
        lines.append(f"… and {more} older (all of them: GET /api/v1/incidents?status=open)")
    return "\n".join(lines)


async def _incident_status(app: SlackApp, incident_id: int) -> str:
    incident = await app.store.incident(incident_id)
    if incident is None:
        raise UsageError(f"no incident {incident_id}")
    rule = app.config.rule(incident["rule"])
    tier_name = (rule.tier_name(incident["tier"]) if rule else None) or "none"
    ran = sorted(await app.store.ran_actions(incident_id))
    owner = f" · owner {slack_escape(incident['acked_by'])}" if incident["acked_by"] else ""
    return (
        f"Incident {incident_id} `{slack_escape(incident['rule'])}` {_key(incident['key'])}: "
        f"*{incident['status']}*, tier `{slack_escape(tier_name)}`{owner}\n"
        f"Opened {incident['opened_at']} · actions run: {slack_escape(', '.join(ran) or 'none')}"
    )


async def _target_status(app: SlackApp, target: str) -> str:
    circuits = {c["target"]: c for c in await app.control.circuits()}
    if target not in circuits:
        raise UsageError(
            f"unknown target or incident {slack_escape(repr(target))} "
            f"(targets: {', '.join(sorted(circuits))})"
        )
    c = circuits[target]
    mutes = [m for m in await app.control.mutes() if m["target"] == target]
    reason = slack_escape(mutes[0]["reason"]) if mutes else ""
    muted = f" · muted until {mutes[0]['until']} ({reason})" if mutes else ""
    return f"Target `{target}`: circuit *{c['state']}* ({c['failures']} failures){muted}"


async def _history(app: SlackApp, who: Request, args: list[str]) -> str:
    n = decimal(args[0]) if args else 10
    if n is None:
        raise UsageError(f"usage: {app.slack.command} history [n]")
    page = await app.store.history(max(1, min(n, 50)), None)
    lines = [
        f"`{e['at']}` {slack_escape(e['rule'] or '-')} *{e['event']}* {slack_escape(e['message'])}"
        for e in page.items
    ]
    return "\n".join(lines) or "no history yet"


def _manual(verb: str) -> Handler:
    async def run(app: SlackApp, who: Request, args: list[str]) -> str:
        usage = f"usage: {app.slack.command} {verb} <target> [label=value ...]"
        if not args:
            raise UsageError(usage)
        try:
            params = commands.parameters(args[1:])
        except ValueError as e:
            raise UsageError(f"{e}; {usage}") from None
        claim = await app.control.manual_action(verb, args[0], who.actor, params)
        target = slack_escape(args[0])
        what = f"{verb} {target} ({claim.action}), asked by <@{slack_escape(who.user_id)}>"
        app._later(app._report_when_done(who, claim, what))
        return (
            f"Requested {verb} of `{target}` ({claim.action}), through the usual "
            f"guardrails; incident {claim.incident_id}. The outcome will follow here."
        )

    return run


async def _close(app: SlackApp, who: Request, args: list[str]) -> str:
    incident_id = _number(args, f"{app.slack.command} close <incident> <reason>")
    if len(args) < 2:
        raise UsageError(f"usage: {app.slack.command} close <incident> <reason>")
    await app.control.close(incident_id, " ".join(args[1:]), who.actor)
    return f"Incident {incident_id} closed; nothing was run for it."


async def _approve(app: SlackApp, who: Request, args: list[str]) -> str:
    approval = await app.control.decide(
        _number(args, f"{app.slack.command} approve <id>"), True, who.actor
    )
    return (
        f"Approved {approval.action} on `{slack_escape(approval.target)}` (approval {approval.id})."
    )


async def _deny(app: SlackApp, who: Request, args: list[str]) -> str:
    reason = " ".join(args[1:])
    approval = await app.control.decide(
        _number(args, f"{app.slack.command} deny <id> [reason]"), False, who.actor, reason
    )
    return (
        f"Denied {approval.action} on `{slack_escape(approval.target)}` (approval {approval.id})."
    )


async def _ack(app: SlackApp, who: Request, args: list[str]) -> str:
    incident_id = _number(args, f"{app.slack.command} ack <incident>")
    await app.control.ack(incident_id, who.actor)
    return f"You own incident {incident_id} now; remediator stops paging it on time."


async def _mute(app: SlackApp, who: Request, args: list[str]) -> str:
    if len(args) < 3:
        raise UsageError(f"usage: {app.slack.command} mute <rule|target> <duration> <reason>")
    name, duration, reason = args[0], args[1], " ".join(args[2:])
    try:
        seconds = parse_duration(duration)
    except ValueError:
        raise UsageError(f"invalid duration {duration!r} (e.g. 30m, 2h)") from None
    is_rule = app.config.rule(name) is not None
    mute = await app.control.add_mute(
        rule=name if is_rule else None,
        target=None if is_rule else name,
        matchers=None,
        duration=seconds,
        reason=reason,
        by=who.actor,
    )
    kind = "rule" if is_rule else "target"
    return f"Mute {mute.id} on {kind} `{slack_escape(name)}` until {iso(mute.until)}."


async def _unmute(app: SlackApp, who: Request, args: list[str]) -> str:
    mute_id = _number(args, f"{app.slack.command} unmute <id>")
    await app.control.end_mute(mute_id, who.actor)
    return f"Mute {mute_id} ended."


async def _killswitch(app: SlackApp, who: Request, args: list[str]) -> str:
    state = args[0].lower() if args else "status"
    if state == "status":
        switch = await app.control.killswitch()
    elif state in ("on", "off"):
        switch = await app.control.set_killswitch(state == "on", who.actor, " ".join(args[1:]))
    else:
        raise UsageError(f"usage: {app.slack.command} killswitch on|off|status [reason]")
    by = f" (set by {slack_escape(switch.by)} at {switch.at})" if switch.source == "runtime" else ""
    return f"Kill switch is *{'ON' if switch.on else 'off'}*{by}."


def _number(args: list[str], usage: str) -> int:
    number = decimal(args[0]) if args else None
    if number is None:
        raise UsageError(f"usage: {usage}")
    return number


def _key(key: Mapping[str, Any]) -> str:
    return slack_escape(" ".join(f"{k}={v}" for k, v in key.items()))


VERBS: dict[str, Handler] = {
    "help": _help,
    "status": _status,
    "history": _history,
    "approve": _approve,
    "deny": _deny,
    "ack": _ack,
    "mute": _mute,
    "unmute": _unmute,
    "killswitch": _killswitch,
    "close": _close,
    **{verb: _manual(verb) for verb in ("pause", "resume", "restart", "rollback")},
}
