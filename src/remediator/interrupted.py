"""What happens to a claim whose holder died while it was running.

A running claim whose request could not have left yet (`sent_at` unset: its guardrails passed,
its precondition check was at most in flight) did nothing to its target: it runs again, once,
through every guardrail. A running claim whose request may have been sent is handled by its
action's `on_interrupted` policy:

- `retry`: run it again (safe, idempotent actions);
- `verify`: read the target's state, then decide: with a `verify` check, a check that holds
  means the action took effect (not repeated), otherwise it runs again; with only a
  `precondition`, a precondition that still holds means the target still needs it (runs again),
  otherwise it is not repeated;
- `escalate`: recorded `interrupted`, not repeated, and a human is told to check the target.

Every outcome is an audit line published to Slack: never silently dropped, never silently
repeated. A claim already run again MAX_RERUNS times escalates instead of running again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

RETRY, VERIFY, ESCALATE = "retry", "verify", "escalate"
POLICIES = (RETRY, VERIFY, ESCALATE)
# kafka_connect's pause, resume and restart leave the same state when sent twice; the other kinds
# may not (a second rollout, a second silence, a scale that records the count it replaced, any
# HTTP call, command or statement): a human decides, unless the action says otherwise
KIND_DEFAULTS: Mapping[str, str] = {"kafka_connect": RETRY}
MAX_RERUNS = 3


def policy_for(kind: str, configured: str | None) -> str:
    """The action's `on_interrupted`, or its kind's default."""
    return configured or KIND_DEFAULTS.get(kind, ESCALATE)


@dataclass(frozen=True, slots=True)
class Decision:
    rerun: bool
    detail: str


def never_sent() -> Decision:
    return Decision(
        True,
        "the daemon stopped before this action's request could leave (its precondition check "
        "was at most in flight); running it again",
    )


def too_many(reruns: int) -> Decision:
    return Decision(
        False,
        f"the daemon stopped during this action again after {reruns} reruns; it was not "
        "repeated: a human must check the target",
    )


def retry() -> Decision:
    return Decision(
        True,
        "the daemon stopped during this action, after its request may have been sent; running "
        "it again (on_interrupted: retry)",
    )


def escalate(target: str) -> Decision:
    return Decision(
        False,
        "the daemon stopped during this action, after its request may have been sent; it was "
        f"not repeated: a human must check {target} (on_interrupted: escalate)",
    )


def verified(effect_seen: bool, check: str, detail: str) -> Decision:
    """`verify` with the action's verify check: it holds if the action took effect."""
    if effect_seen:
        return Decision(
            False,
            f"the daemon stopped during this action; {check} shows it took effect ({detail}); "
            "it was not repeated (on_interrupted: verify)",
        )
    return Decision(
        True,
        f"the daemon stopped during this action; {check} does not show its effect ({detail}); "
        "running it again (on_interrupted: verify)",
    )


def still_needed(holds: bool, check: str, detail: str) -> Decision:
    """`verify` with only a precondition: it holds if the target still needs the action."""
    if holds:
        return Decision(
            True,
            f"the daemon stopped during this action; the target still needs it ({check}: "
            f"{detail}); running it again (on_interrupted: verify)",
        )
    return Decision(
        False,
        f"the daemon stopped during this action; its precondition no longer holds ({detail}); "
        "it was not repeated (on_interrupted: verify)",
    )
