"""`alertmanager_silence`: create a silence through Alertmanager's v2 API, or expire one.

    silence_sink_down:                       # after pausing the sink on purpose
      kind: alertmanager_silence
      alertmanager: alertmanager
      operation: create
      matchers: ['alertname="ConnectorDown"', 'connector="postgres-sink-connector"']
      duration: 4h
    unsilence_sink_down:                     # on resolve, with the id create returned
      kind: alertmanager_silence
      alertmanager: alertmanager
      operation: expire
      silence_id: "{$results.silence_sink_down.silenceID}"

Matchers use Alertmanager's syntax, one per item; a placeholder fills part of a value (in a regex
matcher its value is regex-escaped, so a label cannot widen the match). A silence every matcher
of which matches the empty string would mute every alert: Alertmanager answers 400, and the
action refuses it before asking.

A silence mutes an alert for every receiver, remediator's webhook included, resolutions too:
while it lasts remediator does not hear that a silenced alert resolved, so the incident acting on
it never closes and its on_resolved actions never run. The action therefore refuses a silence
that matches the alert of the incident it acts for, unless `silence_own_alert: true` says that
is meant (and then the duration should end before the alert is expected to resolve).

Alertmanager has no idempotency key. The comment carries the claim's, and a retry looks for the
silence an earlier attempt may have created before creating another.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from remediator.actions import COMMON_KEYS, ActionCommon, ActionRegistry, ParseEnv
from remediator.actions.base import (
    AttemptContext,
    AttemptResult,
    Prepared,
    RenderContext,
    RetryPolicy,
    Template,
)
from remediator.actions.http import (
    MAX_OUTPUT,
    failure,
    path_segment,
    send,
)
from remediator.errors import RenderError
from remediator.matchers import Matcher, MatcherError, MatchOp
from remediator.schema import Node, format_duration
from remediator.targets import Target

KEYS = COMMON_KEYS | {
    "alertmanager",
    "operation",
    "matchers",
    "duration",
    "comment",
    "silence_id",
    "silence_own_alert",
}
CREATE_ONLY = ("matchers", "duration", "comment", "silence_own_alert")
CREATED_BY = "remediator"
DEFAULT_COMMENT = "remediator: rule {$rule}, incident {$incident_id}"
_MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*", re.DOTALL)
_REGEX_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")  # Go's regexp.QuoteMeta


@dataclass(frozen=True, slots=True)
class MatcherTemplate:
    name: str
    op: MatchOp
    value: Template

    def render(self, ctx: RenderContext) -> Matcher:
        regex = self.op in (MatchOp.RE, MatchOp.NRE)
        value = self.value.render(ctx, escape=quote_meta if regex else str)
        try:
            return Matcher(self.name, self.op, value)
        except MatcherError as e:
            raise RenderError(str(e)) from None


@dataclass(frozen=True, slots=True)
class SilenceAction:
    name: str
    timeout: float
    retry: RetryPolicy
    alertmanager: Target
    operation: str
    matchers: tuple[MatcherTemplate, ...] = ()
    duration: float = 0.0
    comment: Template | None = None
    silence_id: Template | None = None
    silence_own_alert: bool = False
    description: str = ""
    kind: str = "alertmanager_silence"

    @property
    def target(self) -> str:
        return self.alertmanager.name

    def prepare(self, ctx: RenderContext) -> Prepared:
        if self.operation == "expire":
            assert self.silence_id is not None
            silence = self.silence_id.render(ctx)
            url = f"{self.alertmanager.url}/api/v2/silence/{path_segment(silence)}"
            return {"operation": "expire", "method": "DELETE", "url": url, "silence_id": silence}
        assert self.comment is not None
        matchers = [m.render(ctx) for m in self.matchers]
        _check_matchers(matchers, ctx.labels, self.silence_own_alert)
        return {
            "operation": "create",
            "method": "POST",
            "url": f"{self.alertmanager.url}/api/v2/silences",
            "matchers": [_api_matcher(m) for m in matchers],
            "duration": self.duration,
            "comment": self.comment.render(ctx),
        }

    def describe(self, prepared: Prepared) -> str:
        if prepared["operation"] == "expire":
            return f"expire silence {prepared['silence_id']} on {self.alertmanager.name}"
        shown = ", ".join(_shown(m) for m in prepared["matchers"])
        duration = format_duration(prepared["duration"])
        return f"silence {{{shown}}} for {duration} on {self.alertmanager.name}"

    async def attempt(self, prepared: Prepared, ctx: AttemptContext) -> AttemptResult:
        headers = self.alertmanager.request_headers()
        if prepared["operation"] == "expire":
            response = await send(ctx.http, "DELETE", prepared["url"], headers, None, ctx.timeout)
            return (
                response
                if isinstance(response, AttemptResult)
                else self._expired(prepared, response)
            )
        comment = f"{prepared['comment']} (idempotency key {ctx.idempotency_key})"
        if ctx.attempt > 1:
            earlier = await self._earlier(ctx, headers, comment)
            if earlier is not None:
                return AttemptResult(
                    True,
                    f"silence {earlier} exists: an earlier attempt created it",
                    output=json.dumps({"silenceID": earlier}),
                )
        now = datetime.now(UTC)
        body = {
            "matchers": prepared["matchers"],
            "startsAt": _rfc3339(now),
            "endsAt": _rfc3339(now + timedelta(seconds=prepared["duration"])),
            "createdBy": CREATED_BY,
            "comment": comment,
        }
        headers["Content-Type"] = "application/json"
        content = json.dumps(body).encode()
        response = await send(ctx.http, "POST", prepared["url"], headers, content, ctx.timeout)
        return response if isinstance(response, AttemptResult) else self._created(body, response)

    async def _earlier(
        self, ctx: AttemptContext, headers: dict[str, str], comment: str
    ) -> str | None:
        """The id of a live silence whose comment carries this claim's idempotency key."""
        url = f"{self.alertmanager.url}/api/v2/silences"
        response = await send(ctx.http, "GET", url, headers, None, ctx.timeout)
        if isinstance(response, AttemptResult) or response.status_code != 200:
            return None
        try:
            silences = response.json()
            return next(
                (
                    str(s["id"])
                    for s in silences
                    if s.get("comment") == comment
                    and s.get("status", {}).get("state") in ("active", "pending")
                ),
                None,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def _created(self, body: dict[str, Any], response: httpx.Response) -> AttemptResult:
        if response.status_code != 200:
            return self._failure("create the silence", response)
        try:
            silence = str(response.json()["silenceID"])
        except (ValueError, KeyError, TypeError):
            return AttemptResult(
                False, f"HTTP 200 without a silenceID: {response.text[:200]!r}", status_code=200
            )
        return AttemptResult(
            True,
            f"silence {silence} until {body['endsAt']}",
            status_code=200,
            output=json.dumps({"silenceID": silence, "endsAt": body["endsAt"]}),
        )

    def _expired(self, prepared: Prepared, response: httpx.Response) -> AttemptResult:
        silence = prepared["silence_id"]
        if response.status_code == 200:
            output = json.dumps({"silenceID": silence, "expired": True})
            return AttemptResult(True, f"silence {silence} expired", status_code=200, output=output)
        if "silence not found" in response.text or response.status_code == 404:
            # Alertmanager before 0.27 answers 500 "silence not found", later ones 404
            return AttemptResult(
                False,
                f"HTTP {response.status_code}: silence {silence} not found on "
                f"{self.alertmanager.name!r}",
                status_code=response.status_code,
                output=response.text[:MAX_OUTPUT],
            )
        return self._failure(f"expire silence {silence}", response)

    def _failure(self, what: str, response: httpx.Response) -> AttemptResult:
        return failure(
            response,
            f"HTTP {response.status_code}: cannot {what} on {self.alertmanager.name!r}: "
            f"{_message(response)}",
        )


def quote_meta(value: str) -> str:
    """A label value inside a regex matcher matches itself only (Go's regexp.QuoteMeta)."""
    return _REGEX_SPECIAL.sub(r"\\\1", value)


def _check_matchers(matchers: list[Matcher], labels: Any, own_alert_allowed: bool) -> None:
    if all(m.matches({}) for m in matchers):
        shown = ", ".join(str(m) for m in matchers)
        raise RenderError(
            f"every matcher of {{{shown}}} matches the empty string: such a silence would "
            "mute alerts it was not meant for, and Alertmanager refuses it"
        )
    if labels and not own_alert_allowed and all(m.matches(labels) for m in matchers):
        raise RenderError(
            "this silence would mute the incident's own alert, and remediator would never "
            "hear it resolve (a silence mutes resolutions for every receiver); silence other "
            "alerts, or set silence_own_alert: true"
        )


def _api_matcher(m: Matcher) -> dict[str, Any]:
    return {
        "name": m.name,
        "value": m.value,
        "isRegex": m.op in (MatchOp.RE, MatchOp.NRE),
        "isEqual": m.op in (MatchOp.EQ, MatchOp.RE),
    }


_OPS = {(True, False): "=", (False, False): "!=", (True, True): "=~", (False, True): "!~"}


def _shown(m: dict[str, Any]) -> str:
    return f"{m['name']}{_OPS[(m['isEqual'], m['isRegex'])]}{json.dumps(m['value'])}"


def _message(response: httpx.Response) -> str:
    """Alertmanager's errors are a JSON string, or {"code", "message"} from its API layer."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:200] or "no body"
    if isinstance(data, dict):
        return str(data.get("message", data))[:200]
    return str(data)[:200]


def _rfc3339(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- config ----------------------------------------------------------------------------------


def _matcher(node: Node) -> MatcherTemplate:
    text = node.string()
    m = _MATCHER.fullmatch(text)
    if m is None:
        raise node.fail(f'expected one matcher like name="value", got {text!r}')
    name, op, raw = m.groups()
    if raw.startswith('"'):
        try:
            value = json.loads(raw)
        except ValueError:
            raise node.fail(f"invalid quoted value in {text!r}") from None
        if not isinstance(value, str):
            raise node.fail(f"invalid quoted value in {text!r}")
    elif any(c in raw for c in '",'):
        raise node.fail(f"quote the value in {text!r}")
    else:
        value = raw
    return MatcherTemplate(name, MatchOp(op), Template.parse(Node(value, node.file, node.path)))


def build(node: Node, common: ActionCommon, env: ParseEnv) -> SilenceAction:
    node.mapping(KEYS)
    alertmanager = env.url_target(node.require("alertmanager"))
    operation = node.require("operation").choice(("create", "expire"))
    if operation == "expire":
        for key in CREATE_ONLY:
            if node.has(key):
                raise node.child(key).fail("only for operation create")
        return SilenceAction(
            common.name,
            common.timeout,
            common.retry,
            alertmanager,
            operation,
            silence_id=Template.parse(node.require("silence_id")),
            description=common.description,
        )
    if node.has("silence_id"):
        raise node.child("silence_id").fail("only for operation expire")
    matchers_node = node.require("matchers")
    matchers = tuple(_matcher(item) for item in matchers_node.sequence())
    if not matchers:
        raise matchers_node.fail("give at least one matcher")
    if all(not m.value.refs for m in matchers):  # no placeholders: check them now
        try:
            _check_matchers([m.render(RenderContext({})) for m in matchers], {}, True)
        except RenderError as e:
            raise matchers_node.fail(str(e)) from None
    duration_node = node.require("duration")
    duration = duration_node.duration()
    if duration <= 0:
        raise duration_node.fail("a silence needs a positive duration")
    return SilenceAction(
        common.name,
        common.timeout,
        common.retry,
        alertmanager,
        operation,
        matchers=matchers,
        duration=duration,
        comment=Template.parse(node.get("comment") or Node(DEFAULT_COMMENT, "", "")),
        silence_own_alert=node.opt("silence_own_alert", Node.boolean, False),
        description=common.description,
    )


def register(registry: ActionRegistry) -> None:
    registry.register("alertmanager_silence", build, timeout=10.0, retries=2)
