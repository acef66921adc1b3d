"""`http`: one request to a configured target, the URL's host fixed by config.

Label values enter the URL only as percent-encoded path segments or query values, so `../`, `/`,
`?`, `#` or `%2F` in a label cannot change the host, add a path segment or start a query. Every
attempt carries an `Idempotency-Key` that stays the same across retries and restarts.

The kind sends with aiohttp's client (a quarter of httpx's CPU per request, measured in
bench/http_client.py), the URL exactly as prepared: yarl must not re-quote it. `send` and
`retry_after`, for the kinds that use httpx, stay here too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import httpx
import yarl

from remediator.actions import COMMON_KEYS, ActionCommon, ActionRegistry, ParseEnv
from remediator.actions.base import (
    AttemptContext,
    AttemptResult,
    Prepared,
    RenderContext,
    RetryPolicy,
    Template,
    parse_json_template,
    render_json,
)
from remediator.errors import RenderError
from remediator.schema import Node, decimal
from remediator.targets import Target

KEYS = COMMON_KEYS | {"target", "method", "path", "query", "headers", "body", "accept"}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Worth another attempt: the target is overloaded, restarting or mid-rebalance (Kafka Connect: 409).
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_OUTPUT = 2048
MAX_RETRY_AFTER = 300.0  # a target asking for longer gets our own backoff's patience, no more


@dataclass(frozen=True, slots=True)
class HttpAction:
    name: str
    timeout: float
    retry: RetryPolicy
    endpoint: Target
    method: str
    path: Template
    query: tuple[tuple[str, Template], ...]
    headers: dict[str, str]
    body: Any  # JSON-shaped, with Templates at the string leaves; None for no body
    accept: frozenset[int]  # empty: any 2xx
    description: str = ""
    kind: str = "http"

    @property
    def target(self) -> str:
        return self.endpoint.name

    def prepare(self, ctx: RenderContext) -> Prepared:
        url = self.endpoint.url + self.path.render(ctx, escape=path_segment)
        if self.query:
            url += "?" + urlencode([(k, t.render(ctx)) for k, t in self.query], quote_via=quote)
        body = None if self.body is None else render_json(self.body, ctx)
        return {"method": self.method, "url": url, "headers": self.headers, "body": body}

    def describe(self, prepared: Prepared) -> str:
        return f"{prepared['method']} {prepared['url']}"

    async def attempt(self, prepared: Prepared, ctx: AttemptContext) -> AttemptResult:
        headers = {**self.endpoint.headers, **prepared["headers"], **self.endpoint.auth_headers()}
        headers["Idempotency-Key"] = ctx.idempotency_key
        content = None
        if prepared["body"] is not None:
            content = json.dumps(prepared["body"]).encode()
            headers.setdefault("Content-Type", "application/json")
        session = ctx.aiohttp_session(self.kind)
        answer = await fetch(
            session, prepared["method"], prepared["url"], headers, content, ctx.timeout
        )
        if isinstance(answer, AttemptResult):
            return answer
        return self._outcome(answer)

    def _outcome(self, answer: Answer) -> AttemptResult:
        status = answer.status
        output = answer.text[:MAX_OUTPUT]
        ok = status in self.accept if self.accept else 200 <= status < 300
        detail = f"HTTP {status}" + (f": {error_message(output)}" if not ok and output else "")
        return AttemptResult(
            ok=ok,
            detail=detail,
            retryable=not ok and status in RETRYABLE_STATUS,
            status_code=status,
            output=output,
            retry_after=parse_retry_after(answer.retry_after),
        )


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    text: str
    retry_after: str | None  # the Retry-After header, if any


def path_segment(value: str) -> str:
    """A label value as a path segment: every reserved character encoded, and `.`/`..` encoded
    too so that no client or server can treat them as dot-segments."""
    if value == "":
        raise RenderError("an empty value cannot be a path segment")
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(value, safe="")


async def fetch(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str],
    content: bytes | None,
    seconds: float,
) -> Answer | AttemptResult:
    """One request with aiohttp, as `send` does it with httpx: `seconds` for the connection and
    for each read, no redirects followed, the body decoded as its charset says (else UTF-8); a
    timeout or a transport error is a retryable failed attempt, named as httpx names them."""
    timeout = aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)
    try:
        async with session.request(
            method,
            yarl.URL(url, encoded=True),  # already percent-encoded: sent as it is
            headers=headers,
            data=content,
            timeout=timeout,
            allow_redirects=False,
        ) as response:
            body = await response.read()
            return Answer(
                response.status,
                _decode(body, response.charset),
                response.headers.get("Retry-After"),
            )
    except TimeoutError:
        return AttemptResult(False, f"timed out after {seconds:g}s", retryable=True)
    except aiohttp.ClientConnectorError as e:
        return AttemptResult(False, f"ConnectError: {e}", retryable=True)
    except aiohttp.ClientError as e:
        return AttemptResult(False, f"{type(e).__name__}: {e}", retryable=True)


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


async def send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    headers: dict[str, str],
    content: bytes | None,
    seconds: float,
) -> httpx.Response | AttemptResult:
    """One request; a timeout or a transport error is a retryable failed attempt."""
    try:
        return await http.request(method, url, headers=headers, content=content, timeout=seconds)
    except httpx.TimeoutException:
        return AttemptResult(False, f"timed out after {seconds:g}s", retryable=True)
    except httpx.HTTPError as e:
        return AttemptResult(False, f"{type(e).__name__}: {e}", retryable=True)


def error_message(body: str) -> str:
    """Kafka Connect and many APIs answer errors as {"message": ...}; show that if present."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200]
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])[:200]
    return body[:200]


def failure(response: httpx.Response, detail: str) -> AttemptResult:
    """A failed answer from an HTTP API: retryable as its status says, its body kept (bounded),
    its Retry-After honoured."""
    status = response.status_code
    return AttemptResult(
        False,
        detail,
        retryable=status in RETRYABLE_STATUS,
        status_code=status,
        output=response.text[:MAX_OUTPUT],
        retry_after=retry_after(response),
    )


def answer_failure(answer: Answer, detail: str) -> AttemptResult:
    """`failure` for an answer aiohttp read (fetch)."""
    return AttemptResult(
        False,
        detail,
        retryable=answer.status in RETRYABLE_STATUS,
        status_code=answer.status,
        output=answer.text[:MAX_OUTPUT],
        retry_after=parse_retry_after(answer.retry_after),
    )


def retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


def parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    seconds = decimal(value.strip())
    if seconds is None:
        return None  # an HTTP date (rare from APIs) or junk: fall back to our own backoff
    return min(float(seconds), MAX_RETRY_AFTER)


def build(node: Node, common: ActionCommon, env: ParseEnv) -> HttpAction:
    node.mapping(KEYS)
    endpoint = env.url_target(node.require("target"))
    path_node = node.require("path")
    path = Template.parse(path_node)
    if not path.text.startswith("/"):
        raise path_node.fail(f"path must start with '/', got {path.text!r}")
    if "?" in path.text or "#" in path.text:
        raise path_node.fail("put query parameters under 'query', not in the path")
    query_node = node.get("query")
    query_items = [] if query_node is None else list(query_node.items())
    query = tuple((k, Template.parse(v)) for k, v in query_items)
    return HttpAction(
        name=common.name,
        timeout=common.timeout,
        retry=common.retry,
        endpoint=endpoint,
        method=node.opt("method", lambda n: n.choice(METHODS), "POST"),
        path=path,
        query=query,
        headers=node.string_map("headers"),
        body=node.opt("body", parse_json_template, None),
        accept=frozenset(_status_list(node)),
        description=common.description,
    )


def _status_list(node: Node) -> list[int]:
    codes = [item.integer(minimum=100) for item in node.children("accept")]
    if any(code > 599 for code in codes):
        raise node.child("accept").fail(f"HTTP status codes are 100-599, got {codes}")
    return codes


def register(registry: ActionRegistry) -> None:
    registry.register("http", build, timeout=10.0, retries=2)
