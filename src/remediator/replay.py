"""`remediator replay`: the notifications the daemon received between two times (its journal),
decided again through a given config in a sandbox (sandbox.py: the daemon's own engine,
guardrails and timers, a fake clock, recorders for targets), and, with `compare`, set beside what
really happened (the audit).

The live store is never written: its journal and audit are read from a copy taken with SQLite's
online backup, read-only (store/snapshot.py), and the sandbox decides on a scratch store of its
own.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remediator import report, wire
from remediator.alerts import parse_notification
from remediator.clock import iso
from remediator.config import Config
from remediator.errors import PayloadError
from remediator.progress import Progress
from remediator.report import Difference, Line, Summary
from remediator.sandbox import ASSUMPTIONS, Sandbox, fast_tmp, read_audit, read_keys
from remediator.store.snapshot import copy_sqlite
from remediator.store.sqlite import SqliteStore

Received = tuple[int, float, str]  # journal id, received at, body


@dataclass(slots=True)
class Result:
    """What a replay or a backtest found."""

    since: float
    until: float
    timeline: list[Line]
    summary: Summary
    assumptions: Sequence[str] = ASSUMPTIONS
    differences: list[Difference] | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": iso(self.since),
            "to": iso(self.until),
            "timeline": [line.as_dict() for line in self.timeline],
            "summary": self.summary.as_dict(),
            "assumptions": list(self.assumptions),
            "notes": self.notes,
            "compare": None
            if self.differences is None
            else [d.as_dict() for d in self.differences],
        }

    def text(self) -> list[str]:
        out = [f"From {iso(self.since)} to {iso(self.until)}", *self.notes, "", "Timeline:"]
        out += report.timeline_text(self.timeline) or ["  nothing happened"]
        out += ["", "Summary:", *report.summary_text(self.summary, self.assumptions)]
        if self.differences is not None:
            out += ["", *report.compare_text(self.differences)]
        return out


async def replay(
    config: Config, live: Path, since: float, until: float, compare: bool = False
) -> Result:
    """The journal of the store at `live` between `since` and `until`, through `config`."""
    journal, happened = await _read_live(config, live, since, until, compare)
    result = await decide(config, journal, since, until)
    if happened is not None:
        result.differences = report.compare(happened, result.timeline)
    return result


async def decide(config: Config, journal: Sequence[Received], since: float, until: float) -> Result:
    """Feed received notifications through the config in a sandbox, in order."""
    notes = []
    progress = Progress("replaying", len(journal))
    async with Sandbox(config) as box:
        for done, (journal_id, at, body) in enumerate(journal, 1):
            try:
                notification = parse_notification(wire.decode(body))  # as the engine reads it
            except (ValueError, PayloadError) as e:
                notes.append(f"journal entry {journal_id} is unreadable, skipped: {e}")
                continue
            await box.receive(at, body, notification)
            progress.update(done, iso(at) or "")
        await box.advance(until)
        progress.close()
        found = await _lines(config, box.store, since, until)
    return Result(since, until, found, report.summarise(found, len(journal)), notes=notes)


async def _read_live(
    config: Config, live: Path, since: float, until: float, compare: bool
) -> tuple[list[Received], list[Line] | None]:
    with tempfile.TemporaryDirectory(prefix="remediator-replay-", dir=fast_tmp()) as scratch:
        copy = Path(scratch) / "live.db"
        copy_sqlite(live, copy)
        store = SqliteStore(copy)
        await store.open()
        try:
            journal = await store.journal_between(since, until)
            happened = await _lines(config, store, since, until) if compare else None
        finally:
            await store.close()
    return journal, happened


async def _lines(config: Config, store: SqliteStore, since: float, until: float) -> list[Line]:
    entries = [e for e in await read_audit(store.audit_after) if since <= e.at <= until]
    keys = await read_keys(store.incident, {e.incident_id for e in entries if e.incident_id})
    targets = {name: action.target for name, action in config.actions.items()}
    return report.lines(entries, keys, targets, since, until)
