"""How the daemon logs: text for people or JSON lines for machines, both with UTC timestamps.

In JSON every record is one object on one line: `time` (RFC 3339, UTC), `level`, `logger`,
`message`, and the ids a record carries as fields (`incident_id`, `rule`, `claim_id`, `action`,
`target`, passed with `extra=`). json.dumps escapes every control character, so a label value
holding a newline stays inside its line. In text, newlines inside a message are escaped (`\\n`)
for the same reason. APScheduler's lines about each timer are DEBUG detail: shown only at
`--log-level debug`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from remediator.safetext import OneLine

FIELDS = ("incident_id", "rule", "claim_id", "action", "target")
FORMATS = ("text", "json")
QUIET_AT_INFO = ("httpx",)  # one line per request: DEBUG detail


def utc(created: float) -> str:
    """RFC 3339 in UTC with milliseconds: 2026-12-03T09:40:07.123Z."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def fields(record: logging.LogRecord) -> dict[str, Any]:
    return {f: getattr(record, f) for f in FIELDS if getattr(record, f, None) is not None}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\r", "\\r").replace("\n", "\\n")
        extra = "".join(f" {k}={v}" for k, v in fields(record).items())
        line = f"{utc(record.created)} {record.levelname} {record.name}: {message}{extra}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def lean_records() -> None:
    """Records without what our formatters never show (the logging HOWTO's "Optimization"):
    the caller's file and line, a walk up the stack that was half of a line's CPU (31 -> 15 us
    a line; the daemon writes one per action), and the thread's and process's names."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def setup(level: str = "info", fmt: str = "text") -> None:
    """Log to stderr at `level` in `fmt` (text or json), replacing any handler set before."""
    lean_records()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    if fmt != "json":  # JSON escapes every control character itself
        handler.addFilter(OneLine())  # a newline in a label cannot forge a log line
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    detail = logging.DEBUG if level == "debug" else logging.WARNING
    for name in QUIET_AT_INFO:
        logging.getLogger(name).setLevel(detail)
