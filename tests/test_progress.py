"""The progress bar: nothing off a terminal, nothing for a short run, then a bar on stderr."""

from __future__ import annotations

import io
import time

import pytest

from remediator.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_nothing_is_drawn() -> None:
    stream = io.StringIO()
    bar = Progress("replaying", 10, stream)
    for done in range(11):
        bar.update(done)
    bar.close()
    assert stream.getvalue() == ""


def test_on_a_terminal_a_long_run_draws_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    stream = Terminal()
    bar = Progress("replaying", 4, stream)
    bar.update(1, "early")  # within the first half second: a short run draws nothing
    now[0] += 1.0
    bar.update(2, "2026-11-22T10:00:00Z")
    bar.close()
    drawn = "\r" + "replaying [" + "#" * 15 + "." * 15 + "]  50% 2/4 2026-11-22T10:00:00Z\n"
    assert stream.getvalue() == drawn
