"""Severities: which of two is higher, and what a pager calls them. Pure.

The incident-response runbook's levels are P0 (critical) to P3 (low); Prometheus rules often say
critical, warning or info instead. Both read here, so that an incident's severity can be the
highest of its alerts' and a pager gets its own word for it.
"""

from __future__ import annotations

import re

UNKNOWN = 100  # below every known severity
NAMES = {"CRITICAL": 0, "HIGH": 1, "ERROR": 1, "MAJOR": 1, "WARNING": 2, "MEDIUM": 2, "MINOR": 2}
NAMES |= {"LOW": 3, "INFO": 4, "NONE": 5}
LEVEL = re.compile(r"P([0-9])")
# PagerDuty Events v2 payload.severity, and Opsgenie's priority, for P0..P4 and above
PAGERDUTY = ("critical", "error", "warning", "info", "info")
OPSGENIE = ("P1", "P2", "P3", "P4", "P5")


def rank(severity: str) -> int:
    """0 for the most severe (P0, critical); larger is milder; UNKNOWN for anything else."""
    text = severity.strip().upper()
    level = LEVEL.fullmatch(text)
    if level is not None:
        return int(level.group(1))
    return NAMES.get(text, UNKNOWN)


def higher(a: str, b: str) -> str:
    """The more severe of two; `a` when they rank alike (the one already shown stays)."""
    return b if rank(b) < rank(a) else a


def pagerduty(severity: str) -> str:
    """PagerDuty's payload.severity: critical, error, warning or info (unknown: error)."""
    level = rank(severity)
    return PAGERDUTY[min(level, 4)] if level != UNKNOWN else "error"


def opsgenie(severity: str) -> str:
    """Opsgenie's priority, P1 (critical) to P5 (informational); unknown: P3, its default."""
    level = rank(severity)
    return OPSGENIE[min(level, 4)] if level != UNKNOWN else "P3"
