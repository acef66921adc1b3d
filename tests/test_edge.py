"""The HTTP edge against a live daemon: compressed bodies, slow and surplus connections,
malformed requests and bytes httpx would not send, each answered with a JSON 4xx."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import API_TOKEN, WEBHOOK_TOKEN, Running, StartDaemon, base_config
from tests.payloads import alert, notification

EDGE = "server: {idle_timeout: 500ms, body_timeout: 500ms, max_connections: 8}\n"


@pytest.fixture
async def daemon(write_config: Callable[..., Path], start_daemon: StartDaemon) -> Running:
    return await start_daemon(write_config(base_config({}, EDGE)))


async def raw(port: int, request: bytes, timeout: float = 5.0) -> tuple[int, Any]:
    """Send bytes as they are; the status and the JSON body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(timeout):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), answer
    return status, json.loads(body)


def post(path: str, body: bytes, *headers: bytes) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1".encode(),
        b"Host: remediator",
        b"Content-Type: application/json",
        f"Content-Length: {len(body)}".encode(),
        b"Connection: close",
        *headers,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


BEARER = f"Authorization: Bearer {WEBHOOK_TOKEN}".encode()


def webhook(job: str = "api") -> bytes:
    return json.dumps(notification(alert("A", job=job))).encode()


async def test_a_gzip_bomb_is_refused_before_auth_without_inflating_it(daemon: Running) -> None:
    bomb = gzip.compress(b"[" * (50 << 20))  # 50 MB of JSON-ish text, 50 kB compressed
    cpu = time.process_time()
    for path in ("/alerts", "/api/v1/incidents", "/nowhere"):
        status, answer = await raw(daemon.daemon.port, post(path, bomb, b"Content-Encoding: gzip"))
        assert status == 415
        assert answer == {
            "error": "compressed bodies are not accepted: send the body without Content-Encoding"
        }
    assert time.process_time() - cpu < 0.5  # inflating it once costs more than that


async def test_a_gzip_header_on_a_plain_body_is_a_415(daemon: Running) -> None:
    status, _ = await raw(
        daemon.daemon.port, post("/alerts", webhook(), BEARER, b"Content-Encoding: gzip")
    )
    assert status == 415


@pytest.mark.parametrize("path", ["/alerts", "/api/v1/incidents", "/slack/commands", "/x"])
async def test_a_non_ascii_authorization_header_is_a_400(daemon: Running, path: str) -> None:
    request = post(path, webhook(), b"Authorization: Bearer \xff\xfe\xc3\xa9")
    assert await raw(daemon.daemon.port, request) == (
        400,
        {"error": "Authorization: the header must be ASCII"},
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (webhook(job="\ud800"), "alerts[0].labels.job: contains a lone surrogate"),
        (webhook(job="a\x00b"), "alerts[0].labels.job: contains a NUL character"),
        (b"[" * 990 + b"]" * 990, "nested deeper than 32 levels"),
        (b"\xef\xbb\xbf" + webhook(), "the body starts with a byte-order mark"),
        (webhook().decode().encode("utf-16"), "the body starts with a byte-order mark"),
        (webhook().decode().encode("utf-32-le"), "the body holds NUL bytes"),
        (webhook().replace(b'"A"', b'"\xed\xa0\x80"'), "the body is not UTF-8"),
    ],
)
async def test_bodies_a_store_cannot_hold_are_a_400_naming_why(
    daemon: Running, body: bytes, message: str
) -> None:
    status, answer = await raw(daemon.daemon.port, post("/alerts", body, BEARER))
    assert status == 400
    assert answer["error"].startswith(message)
    assert await daemon.daemon.store.unprocessed_journal() == []


async def test_a_poisoned_fingerprint_is_a_400(daemon: Running) -> None:
    payload = notification(alert("A"))
    payload["alerts"][0]["fingerprint"] = "\udfff"
    status, answer = await raw(
        daemon.daemon.port, post("/alerts", json.dumps(payload).encode(), BEARER)
    )
    assert (status, answer["error"]) == (
        400,
        "alerts[0].fingerprint: contains a lone surrogate (not valid Unicode)",
    )


async def test_the_journal_holds_exactly_the_text_the_decision_read(daemon: Running) -> None:
    body = webhook(job="ingestión 🚀")
    r = await daemon.client.post(
        "/alerts",
        content=body,
        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"},
    )
    assert r.status_code == 200
    with sqlite3.connect(daemon.daemon.config.store_path) as conn:
        [(text,)] = conn.execute("SELECT body FROM journal WHERE id = ?", (r.json()["journal_id"],))
    assert text == body.decode()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/incidents?before=9223372036854775808", None),
        ("GET", "/api/v1/actions?before=99999999999999999999999", None),
        ("GET", "/api/v1/incidents?limit=9223372036854775808", None),
        ("POST", "/api/v1/approvals/9223372036854775808", {"decision": "approve"}),
        ("DELETE", "/api/v1/mutes/18446744073709551616", {}),
        ("POST", "/api/v1/mutes", {"duration": "1h", "matchers": 'job="x"', "reason": "\ud800"}),
        ("PUT", "/api/v1/killswitch", {"on": True, "by": "\udc80"}),
        ("PUT", "/api/v1/killswitch", {"on": True, "reason": "a\x00"}),
        ("PUT", "/api/v1/killswitch", {"on": True, "n": 2**64}),
    ],
)
async def test_api_input_a_store_cannot_hold_is_a_400(
    daemon: Running, method: str, path: str, body: Any
) -> None:
    content = None if body is None else json.dumps(body).encode()
    r = await daemon.client.request(
        method, path, content=content, headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]


async def test_a_slow_header_is_closed_after_the_idle_timeout(daemon: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.daemon.port)
    writer.write(b"POST /alerts HTTP/1.1\r\nHost: x\r\n")  # and never the rest
    started = time.monotonic()
    async with asyncio.timeout(5):
        assert await reader.read() == b""  # closed by the daemon
    assert time.monotonic() - started < 3
    writer.close()


async def test_a_slow_body_is_a_408(daemon: Running) -> None:
    request = post("/alerts", webhook(), BEARER)
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.daemon.port)
    writer.write(request[:-10])  # the headers and most of the body, not the end
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"the body did not arrive within 0.5s" in answer


async def test_connections_over_the_limit_are_closed_and_logs_stay_quiet(
    daemon: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    opened = [await asyncio.open_connection("127.0.0.1", daemon.daemon.port) for _ in range(150)]
    for _, writer in opened:
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # a slow header each
    await asyncio.sleep(0.1)
    closed = 0
    for reader, _ in opened:
        try:
            async with asyncio.timeout(0.05):
                closed += await reader.read() == b""
        except TimeoutError:
            pass
        except ConnectionResetError:
            closed += 1
    assert closed >= 150 - 8  # all but max_connections closed at once
    await asyncio.sleep(0.8)  # the idle timeout frees the rest
    r = await daemon.post_alerts(notification(alert("A")))
    assert r.status_code == 200
    for _, writer in opened:
        writer.close()
    assert len(caplog.records) <= 3  # one line per kind per 10 s, not one per connection


async def test_a_malformed_request_is_a_json_400_and_its_line_is_not_logged(
    daemon: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = f"Authorization: Bearer {WEBHOOK_TOKEN}\x01".encode()
    status, answer = await raw(daemon.daemon.port, post("/alerts", webhook(), secret))
    assert status == 400
    assert answer["error"].startswith("malformed HTTP request")
    assert WEBHOOK_TOKEN not in caplog.text
    assert WEBHOOK_TOKEN not in json.dumps(answer)
