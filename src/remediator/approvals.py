"""What an approval means, with its wording (pure): when it can still be decided, what its claim
becomes after a decision, an expiry or its incident's resolution. The store applies these; both
backends share them."""

from __future__ import annotations

from dataclasses import dataclass

from remediator.clock import iso
from remediator.store.records import (
    CLAIMED,
    OUTLIVE_RESOLUTION,
    REFUSED,
    SKIPPED,
    Approval,
    AuditEntry,
)

WAITING = "waiting for a human's approval"
CANCELLED_BECAUSE = (
    "the incident resolved before anyone approved; a firing action never runs for a resolved alert"
)


@dataclass(frozen=True, slots=True)
class ClaimAfter:
    """What a claim awaiting approval becomes: its status, detail, and whether it finished."""

    status: str
    detail: str
    finished: bool


def undecidable(approval: Approval, at: float) -> str:
    """Why `approval` can no longer be approved or denied at `at`; "" if it can."""
    if approval.status != "pending":
        return f"approval {approval.id} is already {approval.status}"
    if at >= approval.expires_at:
        return f"approval {approval.id} expired at {iso(approval.expires_at)}"
    return ""


def after_decision(approved: bool, by: str, reason: str) -> ClaimAfter:
    if approved:
        return ClaimAfter(CLAIMED, f"approved by {by}", finished=False)
    because = f": {reason}" if reason else ""
    return ClaimAfter(REFUSED, f"approval: denied by {by}{because}", finished=True)


def after_expiry(approval: Approval) -> ClaimAfter:
    detail = f"approval: approval {approval.id} expired unanswered; an expired approval never runs"
    return ClaimAfter(REFUSED, detail, finished=True)


def cancelled_on_resolution(step: str) -> bool:
    """A firing action's pending approval is cancelled when its incident resolves: nobody is
    asked to approve what can no longer run. An undo's or a person's request keeps its approval:
    it may run after the resolution."""
    return step not in OUTLIVE_RESOLUTION


def after_cancellation(approval: Approval) -> ClaimAfter:
    return ClaimAfter(
        SKIPPED, f"approval {approval.id} cancelled: {CANCELLED_BECAUSE}", finished=True
    )


def cancellation_audit(approval: Approval, step: str, at: float) -> AuditEntry:
    return AuditEntry(
        kind="action",
        event="approval_cancelled",
        message=f"Approval {approval.id} for {approval.action} cancelled: {CANCELLED_BECAUSE}",
        at=at,
        incident_id=approval.incident_id,
        rule=approval.rule,
        tier=step,
        action=approval.action,
        detail={"approval_id": approval.id, "claim_id": approval.claim_id},
    )
