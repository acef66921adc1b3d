"""The HTTP edge: what a request may cost before remediator looks at what it says.

* Compressed bodies are refused (415) before anything else: Alertmanager and Slack never
  compress, and inflating is CPU an unauthenticated client could spend (aiohttp's own inflation
  is switched off, so an unread body is never inflated either).
* A connection that has not sent a whole request header within `server.idle_timeout` (after it
  opened, or after its previous answer) is closed; a body must arrive within
  `server.body_timeout` (408) and within the route's size limit (413).
* At most `server.max_connections` connections are open at once (and never more than the
  process's file limit allows, less a reserve for the store and outgoing calls); more are
  closed as they arrive.
* A malformed request (bad request line, header, chunking) is answered with a JSON error like
  every other, and logged as one line naming the client and the kind of error: never the raw
  line, which may hold a credential. Repeated warnings are rate-limited.
* Every error is JSON naming the problem, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from remediator.config import ServerConfig
from remediator.wire import dumps

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CHUNK = 64 * 1024
FD_RESERVE = 64  # descriptors kept for the store, outgoing requests and logs
LINGER = 2.0  # seconds spent draining an unread body after answering, at most
LOG_EVERY = 10.0  # seconds between two warnings of one kind


class RequestError(Exception):
    """A request the edge refuses: answered with `status` and a JSON error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers, dumps=dumps)


def reply(data: Any, status: int = 200) -> web.Response:
    """A JSON answer (finite numbers only: NaN and Infinity are written as null)."""
    return web.json_response(data, status=status, dumps=dumps)


async def read_body(request: web.Request, limit: int, seconds: float) -> bytes:
    """The whole body: 413 above `limit` (checked before and while reading), 408 if it takes
    longer than `seconds`."""
    if request.content_length is not None and request.content_length > limit:
        raise RequestError(413, f"body larger than the limit of {limit} bytes")
    if request.content.is_eof():  # it came whole with the headers: no wait to bound (no timer)
        return await _read(request, limit)
    try:
        async with asyncio.timeout(seconds):
            return await _read(request, limit)
    except TimeoutError:
        raise RequestError(408, f"the body did not arrive within {seconds:g}s") from None


async def _read(request: web.Request, limit: int) -> bytes:
    body = bytearray()
    while chunk := await request.content.read(CHUNK):
        body += chunk
        if len(body) > limit:
            raise RequestError(413, f"body larger than the limit of {limit} bytes")
    return bytes(body)


@web.middleware
async def edge_checks(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refusals that cost nothing, before authentication and routing; every error as JSON."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        return _closing(
            error(415, "compressed bodies are not accepted: send the body without Content-Encoding")
        )
    if not request.headers.get("Authorization", "").isascii():
        return error(400, "Authorization: the header must be ASCII")
    try:
        return await handler(request)
    except RequestError as e:
        return (
            _closing(error(e.status, e.message))
            if e.status in (408, 413)
            else error(e.status, e.message)
        )
    except web.HTTPException as e:
        if e.status < 400:
            raise
        kept = {k: v for k, v in e.headers.items() if k.lower() in ("allow", "www-authenticate")}
        return error(e.status, e.reason, headers=kept)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error(500, "internal error; see the daemon's log")


def _closing(response: web.Response) -> web.Response:
    response.force_close()  # the rest of the body is not worth reading
    return response


class Quiet:
    """At most one warning of a kind per LOG_EVERY seconds; the next says how many it skipped."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -LOG_EVERY) < LOG_EVERY:
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return
        self._last[kind] = now
        skipped = self._skipped.pop(kind, 0)
        suffix = f" ({skipped} more like it not logged)" if skipped else ""
        log.warning(message + suffix, *args)


QUIET = Quiet()


class EdgeProtocol(RequestHandler):
    """aiohttp's connection handler, answering malformed requests with JSON and a safe log."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        QUIET.warning(
            "protocol",
            "malformed HTTP request from %s: %s (answered %d)",
            request.remote,
            type(exc).__name__ if exc else "unknown",
            status,
        )
        if request.writer.output_size > 0:
            raise ConnectionError("an answer is already partly sent")
        what = "malformed HTTP request" if status < 500 else "internal error"
        return _closing(error(status, f"{what} ({type(exc).__name__ if exc else status})"))


class _Refused(asyncio.Protocol):
    """A connection over the limit: closed at once, without reading it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]


class EdgeServer(web.Server):
    def __init__(self, *args: Any, max_connections: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections

    def __call__(self) -> RequestHandler:
        if len(self._connections) >= self.max_connections:
            QUIET.warning(
                "connections",
                "%d connections are open, the most allowed: closing new ones",
                self.max_connections,
            )
            return _Refused()  # type: ignore[return-value]
        return EdgeProtocol(self, loop=self._loop, **self._kwargs)


class EdgeRunner(web.AppRunner):
    """An AppRunner whose connections follow the limits above."""

    def __init__(self, app: web.Application, server: ServerConfig, **kwargs: Any) -> None:
        super().__init__(
            app,
            auto_decompress=False,
            keepalive_timeout=server.idle_timeout,
            lingering_time=LINGER,
            **kwargs,
        )
        self.max_connections = connection_limit(server.max_connections)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return EdgeServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            max_connections=self.max_connections,
            **server._kwargs,
        )


def connection_limit(configured: int) -> int:
    """The configured limit, lowered to fit the process's file descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(8, min(configured, soft - FD_RESERVE))
