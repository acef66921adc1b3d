"""JSON as it crosses the wire: what remediator accepts in a request body, and what it answers.

A body is accepted only if every part of it can be stored and read back the same way by both
store backends and by the journal's replay: UTF-8 without a byte-order mark (RFC 8259 section
8.1; UTF-16/32 bodies are refused, not guessed), strings without lone surrogates or NUL
(neither SQLite's UTF-8 nor PostgreSQL's text can hold them), integers within a signed 64-bit
column, no NaN or Infinity, and at most MAX_DEPTH levels of nesting. The refusal names the
first offending field, e.g. ``alerts[0].labels.job: contains a lone surrogate``.

What goes out is JSON too: a float that is not finite is written as null, never as the bare
``NaN`` or ``Infinity`` that strict parsers reject.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from remediator.errors import PayloadError
from remediator.schema import INT64_MAX

MAX_DEPTH = 32  # an Alertmanager notification is 4 deep; Slack's payloads are under 10
INT64_MIN = -(2**63)
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def decode(body: bytes | str) -> Any:
    """The JSON value of a request body, or a PayloadError naming what is wrong with it."""
    text = body if isinstance(body, str) else utf8(body)
    try:
        if text.startswith("\ufeff"):  # as json.loads says it (its decoder does not look)
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _DECODER.decode(text)
    except RecursionError:
        raise PayloadError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:
        raise PayloadError(f"invalid JSON: {e}") from None
    # check() builds every value's path: 3-4 times json.loads' CPU, on every webhook
    if not _fine(value, text):
        check(value)
    return value


def utf8(body: bytes) -> str:
    """The body as UTF-8 text; a BOM or any other encoding is a PayloadError."""
    if body.startswith(_BOMS) or body[:4] in (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00"):
        raise PayloadError("the body starts with a byte-order mark: send UTF-8 without one")
    if b"\x00" in body:  # never in JSON text: UTF-16 or UTF-32 without a byte-order mark
        raise PayloadError("the body holds NUL bytes (UTF-16 or UTF-32?): send UTF-8")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PayloadError(f"the body is not UTF-8 (byte {e.start})") from None


def check(value: Any) -> None:
    """Refuse what a store cannot hold: see the module's docstring."""
    for path, item, depth in _walk(value):
        if depth > MAX_DEPTH:
            raise PayloadError(f"{path or 'body'}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                raise PayloadError(f"{path or 'body'}: {problem}")
        elif isinstance(item, int) and not INT64_MIN <= item <= INT64_MAX:
            raise PayloadError(f"{path or 'body'}: integer outside the signed 64-bit range")


def text_problem(text: str) -> str | None:
    """Why a string cannot be stored, or None."""
    if text.isascii():
        return "contains a NUL character" if "\x00" in text else None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode)"
    return "contains a NUL character" if "\x00" in text else None


def _fine(value: Any, text: str) -> bool:
    """Nothing in `value` (decoded from `text`) that check() refuses, known without its paths:
    in a text without escapes and non-ASCII characters no string can hold a lone surrogate or
    a NUL (utf8 refused raw NULs), so only the depth and the integers are looked at."""
    if "\\u" in text or not text.isascii():
        return False  # check() looks at every string
    if type(value) is not dict and type(value) is not list:
        return type(value) is not int or INT64_MIN <= value <= INT64_MAX
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth >= MAX_DEPTH and item:  # its values lie deeper than MAX_DEPTH
            return False
        for child in item.values() if type(item) is dict else item:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is int and not INT64_MIN <= child <= INT64_MAX:
                return False
    return True


def _walk(value: Any) -> Iterator[tuple[str, Any, int]]:
    """Every value with its path and depth, iteratively (a deep body must not recurse)."""
    stack: list[tuple[str, Any, int]] = [("", value, 1)]
    while stack:
        path, item, depth = stack.pop()
        yield path, item, depth
        if isinstance(item, dict):
            for key, child in item.items():
                key_problem = text_problem(key)
                if key_problem:
                    raise PayloadError(f"{path or 'body'}: a key {key_problem}")
                stack.append((f"{path}.{key}" if path else key, child, depth + 1))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child, depth + 1) for i, child in enumerate(item))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# one decoder for every body: json.loads with an argument builds a new one (and its scanner)
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def dumps(value: Any) -> str:
    """JSON text; a float that is not finite (NaN, Infinity) becomes null."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
