"""Text from outside (labels, reasons, a target's error) made safe for a log line or a terminal.

A newline in a label must not forge a log line, and an escape sequence in a mute reason must
not drive the operator's terminal: control characters (C0, DEL, C1) and the Unicode bidi
overrides are written as escapes (``\\n``, ``\\x1b``, ``\\u202e``). Everything else, including
non-ASCII letters, is kept as it is.
"""

from __future__ import annotations

import logging
import re

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: str) -> str:
    """`text` with every control character escaped."""
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class OneLine(logging.Filter):
    """A log record's message, arguments included, as one line of visible text (a traceback
    attached to the record is formatted apart, as it should be)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = visible(message)
        if safe != message or record.args:
            record.msg, record.args = safe, None
        return True
