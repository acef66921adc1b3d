"""The interfaces, in one place: what an action kind, a store and a notifier must provide."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from remediator.actions.base import (
        AttemptContext,
        AttemptResult,
        Prepared,
        RenderContext,
        RetryPolicy,
    )
    from remediator.guardrails import Verdict
    from remediator.incidents import Incident
    from remediator.paging.records import PageEvent, PageRow, PageState, Unacked
    from remediator.store.leadership import Leadership, Replica
    from remediator.store.records import (
        Applied,
        Approval,
        Attempt,
        AuditEntry,
        Changes,
        Claim,
        Delivered,
        GuardrailState,
        MuteRow,
        Needed,
        OutboxItem,
        OutboxRow,
        Page,
        TargetHistory,
    )
    from remediator.store.starts import Offer

    InstanceKey = tuple[str, str, float]  # (rule, fingerprint, startsAt)


class Action(Protocol):
    """A configured action: `restart_connector`, of kind `http`.

    prepare() runs once, at claim time, and must be pure: it fills placeholders from the alert and
    returns a JSON-able request that is stored with the claim. attempt() sends that request once;
    the executor owns timeouts around it, retries, backoff and the record of every attempt."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def target(self) -> str:
        """The configured target's name: cooldowns, budgets and breakers count per target."""
        ...

    @property
    def timeout(self) -> float: ...
    @property
    def retry(self) -> RetryPolicy: ...

    def prepare(self, ctx: RenderContext) -> Prepared: ...

    def describe(self, prepared: Prepared) -> str:
        """One line for humans: `POST http://connect:8083/connectors/sink/restart`."""
        ...

    async def attempt(self, prepared: Prepared, ctx: AttemptContext) -> AttemptResult: ...


class Notifier(Protocol):
    """Tells people what happened. Receives audit entries after they are committed."""

    async def publish(self, entries: list[AuditEntry]) -> None: ...


class Journal(Protocol):
    """The journal: written by the webhook before its acknowledgement, read by the engine."""

    async def append_journal(self, body: str, at: float) -> int: ...
    async def unprocessed_journal(self) -> list[tuple[int, str]]: ...
    async def unprocessed_ids(self, limit: int) -> list[int]: ...
    async def journal_bodies(self, ids: list[int]) -> list[tuple[int, str]]: ...
    # a notification that cannot be decided: marked processed, its reason kept, audited
    async def quarantine_journal(self, journal_id: int, reason: str, audit: AuditEntry) -> None: ...
    async def quarantined_journal(self) -> list[tuple[int, str]]: ...
    async def journal_between(self, since: float, until: float) -> list[tuple[int, float, str]]:
        """(id, received_at, body) received in [since, until], in order: for replay."""
        ...


class Incidents(Protocol):
    """Incidents and alert instances, as the engine reads and commits them."""

    starts_offered: bool  # whether the engine offers apply the claims it makes to start

    async def load_open_incidents(self) -> list[Incident]: ...
    async def resolved_instances(self, keys: list[InstanceKey]) -> set[InstanceKey]: ...
    async def recent_starts(self, rule: str, key: tuple[str, ...], since: float) -> list[float]:
        """startsAt of every instance of (rule, key) since `since`: for `repeats`."""
        ...

    async def ran_actions(self, incident_id: int) -> set[str]: ...
    async def ran_actions_of(self, incident_ids: list[int]) -> dict[int, set[str]]: ...
    async def done_actions(self, incident_id: int) -> set[str]:
        """Actions of the incident that took or may take effect (once_per_incident)."""
        ...

    async def incident_status(self, incident_id: int) -> str | None: ...
    async def incident_results(self, incident_id: int) -> dict[str, str]:
        """What each action that succeeded for this incident returned (for `$results`)."""
        ...

    async def incident_alert(self, incident_id: int) -> tuple[dict[str, str], dict[str, str]]:
        """Labels and annotations of the incident's latest alert."""
        ...

    async def rename_rule(
        self, old: str, new: str, audit: Callable[[int], AuditEntry]
    ) -> AuditEntry | None:
        """Move what was recorded under a rule's previous name to its new name; the audit line
        (made from the number of incidents moved) is written only if anything moved."""
        ...

    async def apply(self, changes: Changes, offer: Offer | None = None) -> Applied:
        """Commit a batch's changes with its journal entries; pending approvals of firing
        actions of incidents it resolves are cancelled (remediator.approvals says which).
        `offer`: each claim made that it returns a start for is judged and, if allowed,
        started in the same transaction, as start_claim_if would (Applied.started), and the
        commit is durable."""
        ...


class Claims(Protocol):
    """Claims, attempts and verification, as the executor runs them."""

    async def claim(self, claim_id: int) -> Claim | None: ...
    async def claims_in(self, statuses: tuple[str, ...]) -> list[Claim]: ...
    async def start_claim(self, claim_id: int, at: float, request: Mapping[str, Any]) -> bool: ...
    async def start_claim_if(
        self,
        claim: Claim,
        request: Mapping[str, Any],
        now: float,
        since: float,
        judge: Callable[[TargetHistory, list[MuteRow]], Verdict | None],
        lane: str | None = None,
        sent: bool = False,
        needed: Needed = ...,
    ) -> tuple[Verdict | None, bool]:
        """Judge the claim on the store's facts (its target's history since `since`, the mutes
        active at `now`, its incident's status) and, if the verdict allows, start it, in one
        transaction holding a lock that every start takes: no other claim, in this process or
        another on the same database, is judged or started in between, so budgets and busy
        targets cannot race. Returns the verdict (None: the judge says it must not start at
        all) and whether the claim started (False also if it was no longer `claimed`).
        `lane` (lanes.py): the claim holds only that lane of its target, and waits only for a
        running claim of the same lane or one holding the whole target (None: the whole
        target). `sent`: its request leaves at once, so its `sent_at` is the start's.
        `needed`: the facts its policy judges it on (guardrails.needed; default all of them):
        the others are not read, and the judge gets them empty."""
        ...

    async def set_claim(
        self,
        claim_id: int,
        status: str,
        detail: str,
        audit: AuditEntry | None,
        from_statuses: tuple[str, ...],
        hold_until: float | None = None,
    ) -> bool: ...
    async def mark_sent(self, claim_id: int, at: float) -> bool:
        """Record that the running claim's request may leave from now on (its `sent_at`);
        False if it is no longer running."""
        ...

    async def rerun_claim(self, claim_id: int, detail: str, audit: AuditEntry) -> bool:
        """Put an interrupted running claim back to `claimed` (request and times cleared, one
        more interruption counted) with its audit line; False if it was no longer running."""
        ...

    async def renew_leases(self, claim_ids: Sequence[int], now: float, until: float) -> int:
        """Renew the leases of the running claims among these to `until`; how many."""
        ...

    async def claims_lease_expired(self, now: float) -> list[Claim]:
        """Running claims whose lease ran out before `now`: their holder died (or lost the
        store) while the action ran."""
        ...

    async def record_attempt(self, attempt: Attempt) -> None: ...
    async def finish_claim(
        self,
        claim_id: int,
        status: str,
        detail: str,
        at: float,
        audit: AuditEntry,
        from_statuses: tuple[str, ...] = ...,
        last_attempt: Attempt | None = None,
        ordered: bool = True,
    ) -> AuditEntry | None:
        """Move a claim that is in one of `from_statuses` (default: not finished) to `status`,
        with its audit line and its last attempt (recorded in any case); None if the claim was
        not in such a state. `ordered`: committed in order with start_claim_if's (a claim handed
        the target's turn before this commit is judged after it); False: it may commit beside
        them, for a caller that hands the turn on only once it has committed."""
        ...

    async def set_verification(
        self,
        claim_id: int,
        status: str,
        detail: str,
        next_at: float | None,
        deadline: float | None,
        audit: AuditEntry | None = None,
    ) -> AuditEntry | None: ...
    async def claims_verifying(self) -> list[Claim]: ...
    async def target_failures(self, target: str) -> list[float]:
        """The target's failures since its last success or reset (guardrails.BREAKER_OUTCOMES)."""
        ...


class Controls(Protocol):
    """What people steer: the kill switch (settings), mutes, approvals, circuits, acks."""

    async def get_setting(self, name: str) -> Any: ...
    async def put_setting(
        self, name: str, value: Any, at: float, audit: AuditEntry
    ) -> AuditEntry: ...
    async def add_mute(
        self, mute: MuteRow, audit: Callable[[MuteRow], AuditEntry]
    ) -> tuple[MuteRow, AuditEntry]: ...
    async def end_mute(self, mute_id: int, by: str, at: float, audit: AuditEntry) -> bool: ...
    async def mutes(self, now: float, include_inactive: bool = False) -> list[MuteRow]: ...
    async def request_approval(
        self,
        claim: Claim,
        request: Mapping[str, Any],
        at: float,
        expires_at: float,
        audit: AuditEntry,
    ) -> Approval | None: ...
    async def decide_approval(
        self,
        approval_id: int,
        approved: bool,
        by: str,
        reason: str,
        at: float,
        audit: AuditEntry,
    ) -> tuple[Approval | None, str]: ...
    async def expire_approvals(self, now: float) -> list[Approval]: ...
    async def approval(self, approval_id: int) -> Approval | None: ...
    async def approvals(self, status: str | None = None) -> list[Approval]: ...
    async def pending_approvals(self) -> tuple[int, float | None]: ...
    async def reset_circuit(self, target: str, by: str, at: float, audit: AuditEntry) -> None: ...
    async def ack_incident(
        self, incident_id: int, by: str, at: float, audit: AuditEntry
    ) -> bool: ...


class PagerOutbox(Protocol):
    """Pages (store/pages.py): an incident's escalation level and pagers, and the pager
    outbox, as the pager desk reads and writes them."""

    async def record_pages(
        self,
        events: list[PageEvent],
        states: list[PageState],
        audit: list[AuditEntry],
        cursor: int,
        at: float,
    ) -> list[AuditEntry]: ...
    async def audit_events_after(
        self, after: int, limit: int, events: tuple[str, ...]
    ) -> tuple[list[AuditEntry], int]: ...
    async def page_state(self, incident_id: int) -> PageState | None: ...
    async def unacked_pages(self) -> list[Unacked]: ...
    async def escalate_page(
        self, state: PageState, to_level: int, at: float, audit: AuditEntry
    ) -> AuditEntry | None: ...
    async def pages_due(self, now: float, limit: int) -> list[PageRow]: ...
    async def page_done(self, row_id: int, status: str, at: float, error: str = "") -> None: ...
    async def page_retry(self, row_id: int, next_at: float, error: str) -> None: ...
    async def page_stats(self) -> tuple[int, float | None]: ...


class SlackOutbox(Protocol):
    """The Slack outbox: audit lines become messages once, delivered in order per thread."""

    async def audit_after(self, after: int, limit: int) -> list[AuditEntry]: ...
    async def enqueue_slack(self, items: list[OutboxItem], cursor: int, at: float) -> None: ...
    async def outbox_due(self, now: float, limit: int) -> list[OutboxRow]: ...
    async def outbox_done(
        self,
        row_id: int,
        status: str,
        at: float,
        error: str = "",
        sent: tuple[str, str, str] | None = None,
    ) -> None: ...
    async def outbox_delivered(self, done: list[Delivered]) -> None: ...
    async def outbox_retry(self, row_id: int, next_at: float, error: str) -> None: ...
    async def outbox_stats(self) -> tuple[int, float | None]: ...
    async def slack_message(self, ref: str) -> tuple[str, str] | None: ...


class Reads(Protocol):
    """Reading for people (the API, Slack, the CLI): pages newest first, as remediator.views
    shows them."""

    async def incident(self, incident_id: int) -> dict[str, Any] | None: ...
    async def incidents(self, incident_ids: list[int]) -> dict[int, dict[str, Any]]: ...
    async def count_incidents(self, status: str) -> int: ...
    async def list_incidents(self, limit: int, before: int | None, status: str | None) -> Page: ...
    async def list_actions(self, limit: int, before: int | None) -> Page: ...
    async def incident_record(self, incident_id: int) -> dict[str, Any] | None:
        """An incident with its claims (each with its attempts) and its audit trail, oldest
        first: everything /api/v1/incidents/{id} shows."""
        ...

    async def history(self, limit: int, before: int | None) -> Page: ...
    async def guardrail_state(self, since: float) -> GuardrailState:
        """The actions started since `since`, oldest first, and the targets an action is
        running on: what cooldowns, budgets and one-at-a-time read."""
        ...


class Retention(Protocol):
    """Deleting what is old enough, a small batch per call (remediator.retention decides)."""

    async def prune_journal(self, decided_before: float, limit: int) -> int: ...
    async def prune_incidents(self, resolved_before: float, limit: int) -> dict[str, int]: ...
    async def prune_outbox(self, before: float, limit: int) -> int: ...
    async def prune_pages(self, before: float, limit: int) -> dict[str, int]: ...


class Leaders(Protocol):
    """The leadership epoch that fences a deposed leader, and each replica's heartbeat
    (store/leadership.py). `epoch`: the one this process decides in; None: not fenced."""

    epoch: int | None

    async def take_leadership(self, replica: str, at: float) -> int: ...
    async def leadership(self) -> Leadership: ...
    async def beat(self, replica: Replica) -> None: ...
    async def replicas(self) -> list[Replica]: ...


# What each caller of more than one of the protocols above uses, and nothing more: mypy proves
# that the caller touches no other part of the store (a test may hand it a store of that shape).


class FeedStore(Journal, Claims, Protocol):
    """feed.py: the journal's new rows, and the claims to hand the executor."""


class EngineStore(Journal, Incidents, Reads, Protocol):
    """engine.py: the journal it decides, the incidents it opens and changes."""


class ExecutorStore(Claims, Incidents, Controls, Protocol):
    """executor.py: the claims it runs, their incidents, the approvals it asks for."""


class ControlStore(Controls, Claims, Incidents, Reads, Protocol):
    """control.py: the controls people set, with the claims and incidents they act on."""


class ApiStore(Reads, Leaders, Protocol):
    """api.py: the read models, and the replicas."""


class SlackAppStore(Claims, Controls, Incidents, Reads, Protocol):
    """slack/app.py: what the slash commands and buttons read."""


class SlackOutboxStore(SlackOutbox, Controls, Incidents, Reads, Protocol):
    """slack/outbox.py: the outbox, and what its messages are written from."""


class DeskStore(PagerOutbox, SlackOutbox, Controls, Incidents, Reads, Protocol):
    """paging/desk.py: the pages, the audit it follows, and what a page says."""


class Store(
    Journal,
    Incidents,
    Claims,
    Controls,
    SlackOutbox,
    PagerOutbox,
    Reads,
    Retention,
    Leaders,
    Protocol,
):
    """Where the truth lives: every protocol above, on SQLite (one replica) or PostgreSQL,
    built by store.factory.build_store. Every write that returns has been committed durably;
    every failure is a remediator.errors.StoreError."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
