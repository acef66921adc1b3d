"""What a request body may hold (exactly what a store can hold), and JSON out without NaN."""

from __future__ import annotations

import json
import sqlite3

import pytest

from remediator import wire
from remediator.errors import PayloadError


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"labels": {"job": "\\ud800"}}', "labels.job: contains a lone surrogate"),
        (b'{"fingerprint": "ab\\udc00"}', "fingerprint: contains a lone surrogate"),
        (b'{"a": ["x", "\\u0000"]}', "a[1]: contains a NUL character"),
        (b'{"\\ud800": 1}', "body: a key contains a lone surrogate"),
        (b'{"n": 9223372036854775808}', "n: integer outside the signed 64-bit range"),
        (b'{"n": -9223372036854775809}', "n: integer outside the signed 64-bit range"),
        (b'{"n": NaN}', "invalid JSON: NaN is not JSON"),
        (b'{"n": Infinity}', "invalid JSON: Infinity is not JSON"),
        (b"\xef\xbb\xbf{}", "the body starts with a byte-order mark"),
        ('{"a": 1}'.encode("utf-16"), "the body starts with a byte-order mark"),
        ('{"a": 1}'.encode("utf-16-le"), "the body holds NUL bytes (UTF-16 or UTF-32?)"),
        ('{"a": 1}'.encode("utf-32"), "the body starts with a byte-order mark"),
        ('{"a": 1}'.encode("utf-32-be"), "the body holds NUL bytes (UTF-16 or UTF-32?)"),
        (b'{"a": "\xed\xa0\x80"}', "the body is not UTF-8 (byte 7)"),  # a surrogate in UTF-8
        (b"[" * 990 + b"]" * 990, "nested deeper than 32 levels"),
        (b"[" * 100_000, "nested deeper than 32 levels"),
    ],
)
def test_refuses_what_a_store_cannot_hold_naming_the_field(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        wire.decode(body)
    assert str(caught.value).startswith(message)


def test_accepts_unicode_that_round_trips_through_sqlite() -> None:
    body = '{"labels": {"job": "ingestión 🚀", "n": 9223372036854775807}}'.encode()
    value = wire.decode(body)
    with sqlite3.connect(":memory:") as conn:
        conn.execute("CREATE TABLE t (body TEXT)")
        conn.execute("INSERT INTO t VALUES (?)", (json.dumps(value, ensure_ascii=False),))
        [(stored,)] = conn.execute("SELECT body FROM t").fetchall()
    assert json.loads(stored) == value


def test_the_depth_limit_counts_levels() -> None:
    assert wire.decode(b"[" * 32 + b"]" * 32) is not None
    with pytest.raises(PayloadError):
        wire.decode(b"[" * 33 + b"]" * 33)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 31 + "1" + "]" * 31,  # a value at level 32
        "[" * 32 + "1" + "]" * 32,  # at level 33
        '{"a": ' * 32 + '"x"' + "}" * 32,
        '{"a": ' * 31 + "{}" + "}" * 31,
        '{"n": [0, 9223372036854775807, -9223372036854775808, 9223372036854775808]}',
        '{"n": -9223372036854775809}',
        "9223372036854775808",
        '{"k": "a\\u0000b"}',
        '{"a\\u0000": 1}',
        '{"k": "ingesti\u00f3n"}',
        '{"ok": [true, null, 1.5, "x", {"y": []}]}',
    ],
)
def test_decode_refuses_exactly_what_the_full_check_refuses(text: str) -> None:
    """decode skips the full walk when a cheaper look shows it would find nothing."""
    try:
        wire.check(json.loads(text))
        refused = None
    except PayloadError as e:
        refused = str(e)
    try:
        wire.decode(text.encode())
        decoded = None
    except PayloadError as e:
        decoded = str(e)
    assert decoded == refused


def test_answers_are_json_without_nan_or_infinity() -> None:
    text = wire.dumps({"a": float("nan"), "b": [float("inf"), 1.5], "c": -float("inf")})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {
        "a": None,
        "b": [None, 1.5],
        "c": None,
    }
