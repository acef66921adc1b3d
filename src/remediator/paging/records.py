"""What the store keeps for paging, as immutable values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TRIGGER, ACKNOWLEDGE, RESOLVE = "trigger", "acknowledge", "resolve"


@dataclass(frozen=True, slots=True)
class PageState:
    """An incident's page: the policy's level called last, when, and every pager triggered."""

    incident_id: int
    policy: str
    level: int  # 1-based
    level_at: float
    pagers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PageEvent:
    """An event for a pager, to deliver in order with the incident's others to that pager."""

    incident_id: int
    pager: str
    event: str  # trigger | acknowledge | resolve
    payload: Mapping[str, Any]  # the request body without the key


@dataclass(frozen=True, slots=True)
class PageRow:
    id: int
    incident_id: int
    pager: str
    event: str
    payload: Mapping[str, Any]
    attempts: int
    created_at: float


@dataclass(frozen=True, slots=True)
class Unacked:
    """A paged incident still open and unacknowledged: its escalation may come due."""

    state: PageState
    labels: Mapping[str, str] = field(default_factory=dict)
