"""Claims started in the commit that makes them: what the executor offers an engine batch's apply.

Made by the engine's apply, a new incident's claim used to wait for a second transaction, the
executor's judge-and-start, before its request could leave: one more hand-off to the store and one
more commit on the path of every new incident. For each claim a batch is about to make whose turn
(turns.py) is free in this process, the leader reserves the turn and a slot (slots.py) before the
apply is queued, and offers the apply what starting the claim needs (judging.start_if). The apply
judges those claims on the facts it leaves, under the starts lock, as start_claims_if does, and
starts the allowed ones in its own commit, which is then durable (the start before the request).
The executor runs the claims started there; any other claim, offered or not, goes the usual way:
queued for its turn, judged again in a start of its own, and settled there (wait, refuse, hold,
ask, dry-run, or a firing action whose incident resolved)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from remediator import judging
from remediator.config import Config
from remediator.judging import RuntimeState
from remediator.store.records import Claim
from remediator.store.starts import StartIf
from remediator.turns import Turns


@dataclass(frozen=True, slots=True)
class Offer:
    """The turns (by key) and slots (by token) reserved for the claims an apply is about to make,
    in the Turns they were reserved in, with the config and time they are judged with."""

    turns: Turns
    tokens: Mapping[str, int]  # turn key: the token holding its turn and a slot
    config: Config
    state: RuntimeState
    now: float

    def start_if(self, claim: Claim) -> StartIf | None:
        """What starting the claim needs, if its turn was reserved and its request can be built
        from the claim alone (not from earlier results: those are read first, the usual way).
        Called by the store in the apply's transaction: reads, writes nothing."""
        if judging.turn_key(self.config, claim) not in self.tokens:
            return None
        action = self.config.actions.get(claim.action)
        if action is None:
            return None
        try:
            request = action.prepare(judging.render_context(claim))
        except Exception:  # MissingResult, RenderError, a fault: the usual way's to handle and
            return None  # report (it reads the earlier results first), never the batch's
        return judging.start_if(self.config, self.state, claim, request, self.now)
