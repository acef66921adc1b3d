"""Control characters from outside never reach a log line or a terminal raw."""

from __future__ import annotations

import logging

from remediator.safetext import OneLine, visible


def test_control_characters_are_escaped_and_text_kept() -> None:
    assert visible("a\nb\r\tc\x1b[31mred\x00\x7f\x9b") == "a\\nb\\r\\tc\\x1b[31mred\\x00\\x7f\\x9b"
    assert visible("ingestión 🚀 <!channel>") == "ingestión 🚀 <!channel>"
    assert visible("evil\u202egnp.exe") == "evil\\u202egnp.exe"


def test_a_newline_in_a_label_cannot_forge_a_log_line() -> None:
    record = logging.LogRecord(
        "remediator.x", logging.INFO, __file__, 1, "alert %s fired", ("a\n2026 ERROR forged",), None
    )
    assert OneLine().filter(record)
    assert record.getMessage() == "alert a\\n2026 ERROR forged fired"
