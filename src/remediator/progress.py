"""A progress bar on stderr for long replays and backtests: drawn only on a terminal, only once
the work has lasted half a second, and at most ten times a second."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30
FIRST_DRAW = 0.5  # seconds: a short run draws nothing
REDRAW = 0.1


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self._drawn = False

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._started < FIRST_DRAW or now - self._drawn_at < REDRAW:
            return
        self._drawn_at, self._drawn = now, True
        self.stream.write("\r" + self.render(done, note))
        self.stream.flush()

    def render(self, done: int, note: str = "") -> str:
        share = min(done / self.total, 1.0)
        filled = int(share * WIDTH)
        bar = "#" * filled + "." * (WIDTH - filled)
        return f"{self.label} [{bar}] {share:4.0%} {done}/{self.total} {note}".rstrip()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
