"""Alertmanager label matchers: ``job="api"``, ``severity!="info"``, ``instance=~"web-\\d+"``.

The syntax and semantics follow Alertmanager (pkg/labels and matcher/parse), so a rule's
``matchers:`` list means here what it means in an Alertmanager route:

* ``=`` and ``!=`` compare strings; ``=~`` and ``!~`` match a regex against the *whole* value
  (Alertmanager compiles ``^(?:re)$``; here ``Pattern.fullmatch`` does the anchoring).
* A label the alert lacks has the value ``""``: ``foo!="bar"``, ``foo=""`` and ``foo=~".*"``
  match an alert without ``foo``; ``foo=~".+"`` does not.
* A set is ``{a="x", b=~"y|z"}`` or ``a="x", b=~"y|z"``; commas and braces inside double
  quotes are text. A trailing comma is allowed, as in Alertmanager.
* Quoted text is decoded like Go's ``strconv.Unquote`` (``\\"``, ``\\\\``, ``\\n``, ``\\t``,
  ``\\xHH``, ``\\uXXXX``, ...). Text Go would reject, such as the regex ``"\\d+"``, is decoded
  the classic way instead (only ``\\n``, ``\\"`` and ``\\\\`` are escapes), which is what
  Alertmanager's default parser does when it falls back to the classic one.
* An unquoted value runs to the next comma and is trimmed. The operator is the whole run of
  ``=!~<>`` after the name (so ``foo==bar`` is an unknown operator), and braces or an
  unescaped double quote cannot appear unquoted: quote such values.
* Unquoted label names are classic names, ``[a-zA-Z_:][a-zA-Z0-9_:]*``; any other
  non-empty name is written quoted: ``"my.label"="x"``.

Regexes are compiled by RE2 (google-re2), the engine and syntax Alertmanager's Go regexp
follows: matching takes time linear in the value, whatever the pattern (``(a+)+$`` cannot stall
the daemon), ``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII-only, POSIX classes such as
``[[:alpha:]]`` work, and what RE2 rejects (lookaround, backreferences, atomic groups,
possessive quantifiers, the ``x`` flag) is a parse error, so a rule file valid here is valid for
Alertmanager and means the same.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import re2

__all__ = [
    "MatchOp",
    "Matcher",
    "MatcherError",
    "matches_all",
    "parse_matcher",
    "parse_matchers",
]


class MatcherError(ValueError):
    """A matcher or matcher set cannot be parsed; the message quotes the offending text."""


class MatchOp(enum.Enum):
    """The four matcher operators, valued by their spelling."""

    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


_CLASSIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher. Equality and hashing use name, op and value only."""

    name: str
    op: MatchOp
    value: str
    _regex: re2._Regexp[str] | None = field(
        init=False, default=None, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        op = MatchOp(self.op)  # accepts "=~" as well as MatchOp.RE
        object.__setattr__(self, "op", op)
        if not self.name:
            raise MatcherError(f"empty label name in matcher {str(self)!r}")
        if op in (MatchOp.RE, MatchOp.NRE):
            object.__setattr__(self, "_regex", _compile(self.value, str(self)))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the alert's labels satisfy this matcher; a missing label counts as ``""``."""
        value = labels.get(self.name, "")
        op = self.op
        if op is MatchOp.EQ:
            return value == self.value
        if op is MatchOp.NE:
            return value != self.value
        assert self._regex is not None  # compiled in __post_init__ for =~ and !~
        found = self._regex.fullmatch(value) is not None
        return found if op is MatchOp.RE else not found

    @property
    def is_equality(self) -> bool:
        """True for ``=`` matchers, the only ones a rule index can look up by value."""
        return self.op is MatchOp.EQ

    def __str__(self) -> str:
        """Canonical text that parses back to an equal matcher, e.g. ``job=~"api|web"``.

        Like Alertmanager's ``Matcher.String``: a classic name is bare and the value is
        escaped OpenMetrics-style; any other name is Go-quoted, and so is the value.
        """
        if _CLASSIC_NAME.fullmatch(self.name):
            return f'{self.name}{self.op.value}"{_openmetrics_escape(self.value)}"'
        return f"{_go_quote(self.name)}{self.op.value}{_go_quote(self.value)}"


def parse_matcher(text: str) -> Matcher:
    """Parse exactly one matcher, such as ``job="api"``, ``job=api`` or ``job=~"a|b"``.

    Braces are refused, as Alertmanager refuses them for a single matcher.
    """
    if text.strip().startswith("{"):
        raise MatcherError(f"a single matcher takes no braces: {text!r}")
    found = _parse_set(text)
    if len(found) != 1:
        raise MatcherError(f"expected exactly one matcher in {text!r}, found {len(found)}")
    return found[0]


def parse_matchers(spec: str | Sequence[str]) -> tuple[Matcher, ...]:
    """A string is a braced or comma-separated set; a sequence is a list whose items are each
    a single matcher or a braced/comma set (as in Alertmanager's `matchers:` config lists).

    ``""`` and ``"{}"`` are the empty set, which matches every alert.
    """
    if isinstance(spec, str):
        return tuple(_parse_set(spec))
    found: list[Matcher] = []
    for item in spec:
        if not isinstance(item, str):
            raise MatcherError(f"a matcher must be a string, not {item!r}")
        found.extend(_parse_set(item))
    return tuple(found)


def matches_all(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    """Whether every matcher matches; no matchers match everything."""
    return all(m.matches(labels) for m in matchers)


# --- parsing a set ----------------------------------------------------------------------


def _parse_set(spec: str) -> list[Matcher]:
    pieces = _split(spec)
    if pieces and not pieces[-1]:
        pieces.pop()  # a trailing comma, or nothing at all
    if "" in pieces:
        raise MatcherError(f"empty matcher (stray comma) in {spec!r}")
    return [_parse_piece(piece) for piece in pieces]


def _split(spec: str) -> list[str]:
    """Cut a set into stripped matcher texts at the commas outside double quotes.

    Checks the optional outer braces: ``{`` only first, ``}`` only last and only after ``{``.
    """
    text = spec.strip()
    braced = text.startswith("{")
    body = text[1:] if braced else text
    pieces: list[str] = []
    start = i = 0
    quoted = False
    while i < len(body):
        ch = body[i]
        if ch == "\\" and (quoted or body[i + 1 : i + 2] in ('"', "\\")):
            i += 2  # the escaped character neither opens, closes nor separates
            continue
        if ch == '"':
            quoted = not quoted
        elif quoted:
            pass
        elif ch == ",":
            pieces.append(body[start:i].strip())
            start = i + 1
        elif ch == "{":
            raise MatcherError(f"unexpected '{{' in {spec!r} (quote values containing braces)")
        elif ch == "}":
            _check_close(spec, braced, body[i + 1 :])
            return [*pieces, body[start:i].strip()]
        i += 1
    if quoted:
        raise MatcherError(f"unterminated quoted string in {spec!r}")
    if braced:
        raise MatcherError(f"missing closing '}}' in {spec!r}")
    return [*pieces, body[start:].strip()]


def _check_close(spec: str, braced: bool, after: str) -> None:
    if not braced:
        raise MatcherError(f"unexpected '}}' without an opening '{{' in {spec!r}")
    if after.strip():
        raise MatcherError(f"unexpected text {after.strip()!r} after '}}' in {spec!r}")


# --- parsing one matcher ----------------------------------------------------------------

_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_RAW_NAME = re.compile(r'[^\s=!~<>"]*')
_OPERATOR = re.compile(r"\s*([=!~<>]*)\s*")
_BARE_QUOTE = re.compile(r'\\.|(")', re.DOTALL)


def _parse_piece(piece: str) -> Matcher:
    """Parse one matcher's text (already cut from its set and stripped)."""
    name, pos = _parse_name(piece)
    op_match = _OPERATOR.match(piece, pos)
    assert op_match is not None  # the pattern can match the empty string
    spelled = op_match.group(1)
    if not spelled:
        raise MatcherError(
            f"expected an operator ('=', '!=', '=~' or '!~') after label name {name!r} "
            f"in matcher {piece!r}"
        )
    try:
        op = MatchOp(spelled)
    except ValueError:
        raise MatcherError(f"unknown operator {spelled!r} in matcher {piece!r}") from None
    value = _parse_value(piece[op_match.end() :], piece)
    if op in (MatchOp.RE, MatchOp.NRE):
        _compile(value, piece)  # fail naming the input; Matcher() then hits the cache
    return Matcher(name, op, value)


def _parse_name(piece: str) -> tuple[str, int]:
    """The label name and the index just past it."""
    if piece.startswith('"'):
        quoted = _QUOTED.match(piece)
        if quoted is None:
            raise MatcherError(f"unterminated quoted label name in matcher {piece!r}")
        name = _unquote(quoted.group(1))
        if not name:
            raise MatcherError(f"empty label name in matcher {piece!r}")
        return name, quoted.end()
    raw = _RAW_NAME.match(piece)
    assert raw is not None  # the pattern can match the empty string
    name = raw.group()
    if not name:
        raise MatcherError(f"missing label name in matcher {piece!r}")
    if not _CLASSIC_NAME.fullmatch(name):
        raise MatcherError(
            f"invalid label name {name!r} in matcher {piece!r}: an unquoted name must match "
            f'[a-zA-Z_:][a-zA-Z0-9_:]*; quote any other name, as in "{name}"=...'
        )
    return name, raw.end()


def _parse_value(rest: str, piece: str) -> str:
    """The value after the operator: quoted (Go escapes) or bare (trimmed, classic escapes)."""
    if rest.startswith('"'):
        quoted = _QUOTED.match(rest)
        if quoted is None:
            raise MatcherError(f"unterminated quoted value in matcher {piece!r}")
        after = rest[quoted.end() :].strip()
        if after:
            raise MatcherError(f"unexpected text {after!r} after quoted value in matcher {piece!r}")
        return _unquote(quoted.group(1))
    bare = rest.strip()
    if any(m.group(1) for m in _BARE_QUOTE.finditer(bare)):
        raise MatcherError(f"unquoted value {bare!r} contains a double quote in matcher {piece!r}")
    return _classic_unescape(bare)


# --- quoting ----------------------------------------------------------------------------

_GO_ESCAPE = re.compile(
    r'\\(?:[abfnrtv\\"]|x[0-9a-fA-F]{2}|[0-7]{3}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})|\\'
)
_GO_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_CLASSIC_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_CLASSIC_SIMPLE = {"n": "\n", '"': '"', "\\": "\\"}


def _unquote(body: str) -> str:
    """Decode the text between double quotes: Go's rules, else the classic parser's."""
    decoded = _go_unquote(body)
    return _classic_unescape(body) if decoded is None else decoded


def _go_unquote(body: str) -> str | None:
    """Go's ``strconv.Unquote`` of ``"body"`` (requiring valid UTF-8); None where Go fails."""
    if "\n" in body:
        return None  # Go refuses a raw line feed inside double quotes
    out = bytearray()
    pos = 0
    for m in _GO_ESCAPE.finditer(body):
        decoded = _go_escape(m.group())
        if decoded is None:
            return None
        out += body[pos : m.start()].encode("utf-8", "surrogatepass") + decoded
        pos = m.end()
    out += body[pos:].encode("utf-8", "surrogatepass")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _go_escape(escape: str) -> bytes | None:
    """The bytes one Go escape sequence stands for; None if Go rejects it."""
    kind, digits = escape[1:2], escape[2:]
    if kind in _GO_SIMPLE:
        return _GO_SIMPLE[kind].encode()
    if kind in ('"', "\\"):
        return kind.encode()
    if kind == "x":
        return bytes([int(digits, 16)])
    if kind in ("u", "U"):
        code = int(digits, 16)
        valid = code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF
        return chr(code).encode() if valid else None
    if kind.isdigit():
        code = int(escape[1:], 8)
        return bytes([code]) if code <= 0xFF else None
    return None  # a backslash starting no Go escape


def _classic_unescape(text: str) -> str:
    r"""Alertmanager's classic unescape: ``\n``, ``\"`` and ``\\``; other backslashes stay."""
    return _CLASSIC_ESCAPE.sub(lambda m: _CLASSIC_SIMPLE.get(m.group(1), m.group()), text)


def _openmetrics_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


_GO_QUOTE_SIMPLE = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def _go_quote(text: str) -> str:
    """Double-quote like Go's ``strconv.Quote``: printable characters as they are."""
    return '"' + "".join(_go_quote_char(ch) for ch in text) + '"'


def _go_quote_char(ch: str) -> str:
    if ch in _GO_QUOTE_SIMPLE:
        return _GO_QUOTE_SIMPLE[ch]
    if ch.isprintable():
        return ch
    code = ord(ch)
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


# --- regexes ----------------------------------------------------------------------------


def _compile(value: str, where: str) -> re2._Regexp[str]:
    """The compiled regex, or a MatcherError naming the regex and the matcher it is in."""
    try:
        return _compile_cached(value)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise MatcherError(f"invalid regex {value!r} in matcher {where!r}: {reason}") from None


@functools.lru_cache(maxsize=4096)
def _compile_cached(value: str) -> re2._Regexp[str]:
    return re2.compile(value, _RE2_OPTIONS)


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error is raised, naming the matcher; no stderr line
