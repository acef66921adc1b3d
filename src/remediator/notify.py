"""Telling people. Until Slack is configured, messages go to the log."""

from __future__ import annotations

import logging

from remediator.store.records import AuditEntry

log = logging.getLogger("remediator.slack")


class LogNotifier:
    """The Notifier used when no Slack token is set: every audit line, logged."""

    async def publish(self, entries: list[AuditEntry]) -> None:
        for entry in entries:
            incident = f"incident {entry.incident_id} " if entry.incident_id else ""
            log.info("slack (no token): [%s%s] %s", incident, entry.rule, entry.message)
