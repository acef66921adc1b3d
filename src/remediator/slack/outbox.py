"""The Slack outbox: every message is queued in the store before anyone tries to send it.

The renderer turns new audit lines into messages (the cursor past them moves in the same
transaction, so each line is told exactly once, crash or not). The deliverer sends the first
pending message of each thread, so every thread stays in order; a 429 pauses delivery for its
Retry-After, a 5xx, a timeout or a refused connection backs off, and a message Slack refuses for
good (a channel that does not exist) is marked failed without holding its thread. A Slack outage
delays messages; it never blocks or fails an action, and a restart loses none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from remediator.config import Config
from remediator.errors import StoreError
from remediator.metrics import Metrics
from remediator.schema import decimal
from remediator.slack.fixes import explain
from remediator.slack.messages import Composer, Facts
from remediator.slack.templates import Templates
from remediator.store.records import AuditEntry, Delivered, OutboxItem, OutboxRow
from remediator.tasks import cancel_and_wait
from remediator.types import SlackOutboxStore

log = logging.getLogger(__name__)

BATCH = 200
CONCURRENCY = 8
IDLE_WAIT = 5.0
CURSOR_EVERY = 5.0  # seconds: a cursor past lines that told nothing is written at most this
# often (a commit per pass was 0.2 per new incident in a storm, issue 17); after a crash those
# lines are read again and tell nothing again, and every line that told something was queued
# with its cursor
POSTED_KEPT = 10_000  # posted messages whose (channel, ts) are kept in memory (the store has all)
PASS_GAP = 0.05  # seconds between two passes, at least: a storm's lines are told a pass at a time
# (a pass per publish was half a pass per new incident, three reads each, issue 17)
MARKER_EVENT = "remediator_message"  # the metadata event type that names the outbox row
Known = dict[int, tuple[dict[str, Any] | None, list[str]]]  # incident id -> (its view, ran)
FIND_SLACK = 300.0  # look this much before the row was queued: clocks differ
RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


class Retry(Exception):
    """Not delivered now. `unsure`: Slack may have taken it anyway (a lost answer, a 5xx), so a
    post is looked for before it is sent again; a 429 is sure: Slack did not take it."""

    def __init__(self, reason: str, after: float | None = None, unsure: bool = True) -> None:
        super().__init__(reason)
        self.after = after
        self.unsure = unsure


class Refused(Exception):
    """Slack will not take this message, now or later."""


class Sender(Protocol):
    async def post(
        self, channel: str, payload: Mapping[str, Any], thread_ts: str | None, marker: int = 0
    ) -> tuple[str, str]:
        """Post; returns (channel id, ts). `marker` (the outbox row) goes in the message's
        metadata, so that find() can tell whether an earlier attempt was posted."""
        ...

    async def update(self, channel: str, ts: str, payload: Mapping[str, Any]) -> None: ...

    async def find(
        self, channel: str, thread_ts: str | None, marker: int, since: float
    ) -> tuple[str, str] | None:
        """The (channel id, ts) of a message posted since `since` carrying `marker`, if Slack
        shows one; None when it does not (or cannot say: then the message is posted again)."""
        ...


class SlackSender:
    """Slack's Web API through slack_sdk; `base_url` may point at a proxy or a stand-in."""

    def __init__(self, token: str, base_url: str, timeout: float = 10.0) -> None:
        # no retries of slack_sdk's own (by default it re-sends once on a connection error,
        # which posts twice when the first answer was lost): the outbox retries, looking first
        self.client = AsyncWebClient(
            token=token, base_url=base_url, timeout=int(timeout), retry_handlers=[]
        )

    async def post(
        self, channel: str, payload: Mapping[str, Any], thread_ts: str | None, marker: int = 0
    ) -> tuple[str, str]:
        metadata = {"event_type": MARKER_EVENT, "event_payload": {"outbox_id": marker}}
        response = await self._call(
            self.client.chat_postMessage,
            channel=channel,
            thread_ts=thread_ts,
            metadata=metadata if marker else None,
            **payload,
        )
        return str(response["channel"]), str(response["ts"])

    async def update(self, channel: str, ts: str, payload: Mapping[str, Any]) -> None:
        await self._call(self.client.chat_update, channel=channel, ts=ts, **payload)

    async def find(
        self, channel: str, thread_ts: str | None, marker: int, since: float
    ) -> tuple[str, str] | None:
        """conversations.replies of the thread, or conversations.history of the channel since
        `since`, with their metadata (needs the channels:history scope; a channel given by name
        cannot be read: Slack takes IDs there). Slack refusing to show it (missing_scope,
        channel_not_found): not found. Slack unavailable or rate limiting: Retry, so that a
        look-up that could not be made never turns into a second post."""
        args: dict[str, Any] = {"channel": channel, "include_all_metadata": True, "limit": 200}
        try:
            if thread_ts:
                response = await self.client.conversations_replies(ts=thread_ts, **args)
            else:
                response = await self.client.conversations_history(
                    oldest=f"{since - FIND_SLACK:.6f}", **args
                )
        except SlackApiError as e:
            problem = _classify(e)
            if isinstance(problem, Retry):
                raise problem from None
            log.info("slack: cannot look for message %d in %s: %s", marker, channel, problem)
            return None
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
            raise Retry(f"looking for message {marker}: {type(e).__name__}: {e}") from None
        for message in response.get("messages") or []:
            meta = message.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if meta.get("event_type") == MARKER_EVENT and payload.get("outbox_id") == marker:
                return channel, str(message["ts"])
        return None

    async def _call(self, method: Any, **kwargs: Any) -> Any:
        try:
            return await method(**{k: v for k, v in kwargs.items() if v is not None})
        except SlackApiError as e:
            raise _classify(e) from None
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
            raise Retry(f"{type(e).__name__}: {e}") from None

    async def close(self) -> None:
        session = getattr(self.client, "session", None)
        if session is not None:
            await session.close()


def _classify(e: SlackApiError) -> Exception:
    status = getattr(e.response, "status_code", 200)
    error = needed = ""
    with contextlib.suppress(Exception):
        error = str(e.response.get("error", ""))
        needed = str(e.response.get("needed", ""))
    if status == 429:
        after = decimal(str(e.response.headers.get("Retry-After", "1")))
        return Retry("rate limited (429)", 1.0 if after is None else float(after), unsure=False)
    if status >= 500 or error in RETRYABLE_ERRORS:
        return Retry(f"HTTP {status}: {error or 'server error'}", unsure=error != "ratelimited")
    return Refused(explain(error, needed) if error else f"HTTP {status}")


class LogSender:
    """Without a token: every message goes to the log, through the same queue."""

    def __init__(self) -> None:
        self._n = 0

    async def post(
        self, channel: str, payload: Mapping[str, Any], thread_ts: str | None, marker: int = 0
    ) -> tuple[str, str]:
        self._n += 1
        where = f"{channel or 'default'}" + (f" thread {thread_ts}" if thread_ts else "")
        log.info("slack (no token) [%s]: %s", where, whole_text(payload))
        return channel or "log", f"log.{self._n}"

    async def update(self, channel: str, ts: str, payload: Mapping[str, Any]) -> None:
        log.info("slack (no token) [%s update %s]: %s", channel, ts, whole_text(payload))

    async def find(
        self, channel: str, thread_ts: str | None, marker: int, since: float
    ) -> tuple[str, str] | None:
        return None  # the log never loses an answer


def whole_text(payload: Mapping[str, Any]) -> str:
    """Everything a message says, as people would read it: its blocks' and attachments' text
    (headers, sections, fields, context, buttons), or its `text` when it has no blocks."""
    texts: list[str] = []
    _collect(payload.get("blocks", []), texts)
    for attachment in payload.get("attachments", []):
        _collect(attachment.get("blocks", []), texts)
    return "\n".join(texts) if texts else str(payload.get("text", ""))


def _collect(node: Any, texts: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _collect(item, texts)
    elif isinstance(node, dict):
        text = node.get("text")
        if isinstance(text, str):
            texts.append(text)
        for key in ("text", "fields", "elements", "accessory"):
            if not isinstance(node.get(key), str):
                _collect(node.get(key), texts)


class Outbox:
    """The Notifier: publish() only wakes it; it reads what to say from the audit trail."""

    def __init__(
        self,
        config: Config,
        store: SlackOutboxStore,
        metrics: Metrics,
        sender: Sender | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.composer = Composer(config, Templates(config.slack.templates_dir))
        token = config.slack.token
        self.sender: Sender = sender or (
            SlackSender(token.reveal(), config.slack.base_url) if token else LogSender()
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._cursor = 0
        self._cursor_written = 0.0  # when the cursor was last written (time.time())
        self._first_due: float | None = 0.0  # when the first queued message is due, as last read or
        # queued (None: nothing queued; 0: read it again)
        self._paused_until = 0.0
        self._channel_ids: dict[str, str] = {}  # a channel's name -> the ID Slack answered
        self._unsure: set[int] = set()  # rows whose last attempt may have been posted
        self._posted: dict[str, tuple[str, str]] = {}  # ref -> (channel, ts), once recorded
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._rendering = asyncio.Lock()
        self._delivering = asyncio.Lock()

    def reconfigure(self, config: Config) -> None:
        """A reloaded config: its channels, templates and rules (the sender is kept: its token
        and base URL take a restart)."""
        self.config = config
        self.composer = Composer(config, Templates(config.slack.templates_dir))

    async def publish(self, entries: list[AuditEntry]) -> None:
        self._wake.set()

    async def start(self) -> None:
        stored = await self.store.get_setting("slack_cursor")
        if stored is None:  # a first start, or a store from before Slack: only what is new
            latest = (await self.store.history(1, None)).items
            stored = latest[0]["id"] if latest else 0
            await self.store.enqueue_slack([], int(stored), time.time())
        self._cursor, self._cursor_written = int(stored), time.time()
        self._posted.clear()  # another leader may have posted since this one last led
        self._first_due = 0.0  # what a previous leader left queued is in the store
        self._task = asyncio.create_task(self._run(), name="remediator-slack-outbox")

    async def halt(self) -> None:
        """Stop delivering (a deposed leader): the next leader resumes where this stopped."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def stop(self) -> None:
        await self.halt()
        close = getattr(self.sender, "close", None)
        if close is not None:
            await close()

    async def drain(self) -> None:
        """Render what is new and deliver until a pass delivers nothing: everything that can be
        sent now is sent (for tests and tools; retries still wait for their time)."""
        await self.render_new()
        while await self.deliver_due():
            await self.render_new()

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # a line published during the pass wakes the next at once
            wait = IDLE_WAIT
            try:
                await self.render_new()
                if await self._deliver_if_due():
                    continue
                if self._first_due is not None:
                    wait = min(IDLE_WAIT, max(0.0, self._first_due - time.time()))
            except StoreError as e:
                log.error("slack outbox: store unavailable: %s", e)
                self._first_due = 0.0
            with contextlib.suppress(TimeoutError):
                # not wait_for: Python 3.11's can swallow a cancel and hang the shutdown
                async with asyncio.timeout(max(wait, 0.01)):
                    await self._wake.wait()
            await asyncio.sleep(PASS_GAP)

    async def _deliver_if_due(self) -> int:
        """Deliver if a message may be due (queued since, or due as last read); after a pass
        that sent nothing, read when the next one is due."""
        if self._first_due is None or self._first_due > time.time():
            return 0
        sent = await self.deliver_due()
        if not sent:
            self._first_due = await self._next_due()
        return sent

    async def _next_due(self) -> float | None:
        pending, due = await self.store.outbox_stats()
        self.metrics.slack_outbox_depth.set(pending)
        return max(due, self._paused_until) if due is not None else None

    # -- rendering -----------------------------------------------------------------------------

    async def render_new(self) -> None:
        async with self._rendering:
            await self._render_new()

    async def _render_new(self) -> None:
        while True:
            entries = await self.store.audit_after(self._cursor, BATCH)
            if not entries:
                return
            items: list[OutboxItem] = []
            incidents = await self._incidents(entries)
            for entry in entries:
                items.extend(await self._compose(entry, incidents))
            last = entries[-1].id or self._cursor
            now = time.time()
            if items or now - self._cursor_written >= CURSOR_EVERY:
                await self.store.enqueue_slack(items, last, now)
                self._cursor_written = now
            if items:
                self._first_due = 0.0
            self._cursor = last
            if len(entries) < BATCH:
                return  # the trail's end when read: a line published since wakes the next pass

    async def _incidents(self, entries: list[AuditEntry]) -> Known:
        """The incidents these lines tell, and their actions that ran, in two reads for the
        batch (storm lines need none: the summary tells them)."""
        ids = sorted(
            {e.incident_id for e in entries if e.incident_id is not None and not _storm(e)}
        )
        if not ids:
            return {}
        views = await self.store.incidents(ids)
        ran = await self.store.ran_actions_of(ids)
        return {i: (views.get(i), sorted(ran[i])) for i in ids}

    async def _compose(self, entry: AuditEntry, incidents: Known) -> list[OutboxItem]:
        """The messages for one audit line. `incidents`: this batch's, read once for it."""
        if _storm(entry):
            return []  # a storm's lines are told by its summary: no reads for them
        incident = approval = None
        taken: list[str] = []
        if entry.incident_id is not None:
            incident, taken = incidents[entry.incident_id]
        approval_id = entry.detail.get("approval_id")
        if isinstance(approval_id, int):
            approval = await self.store.approval(approval_id)
        rule = self.config.rule(entry.rule) if entry.rule else None
        try:
            return self.composer.messages(Facts(entry, incident, approval, taken, rule))
        except Exception:  # a broken override template must not stop every later message
            log.exception("cannot compose the Slack message for audit line %s", entry.id)
            return []

    # -- delivery ------------------------------------------------------------------------------

    async def deliver_due(self) -> int:
        """One pass: the first due message of every thread. One pass at a time per process,
        or two could send the same message."""
        async with self._delivering:
            now = time.time()
            if now < self._paused_until:
                return 0
            rows = await self.store.outbox_due(now, BATCH)
            done: list[Delivered] = []
            await asyncio.gather(*(self._deliver(row, done) for row in rows))
            await self._record(done)
            return len(done)

    async def _record(self, done: list[Delivered]) -> None:
        """A pass's deliveries in one commit. Until it commits they are pending: if it fails,
        each is looked for in Slack before it is posted again."""
        if not done:
            return
        try:
            await self.store.outbox_delivered(done)
        except StoreError:
            self._unsure.update(d.row_id for d in done if d.status == "sent")
            raise
        for d in done:
            self._unsure.discard(d.row_id)
            if d.sent is not None:
                self._remember(d.sent)
        self.metrics.slack_deliveries.labels("sent").inc(sum(d.status == "sent" for d in done))

    def _remember(self, sent: tuple[str, str, str]) -> None:
        """A posted message's (channel, ts), for its replies and updates without a read."""
        ref, channel, ts = sent
        self._posted.pop(ref, None)
        self._posted[ref] = (channel, ts)
        if len(self._posted) > POSTED_KEPT:  # the oldest first (dicts keep insertion order)
            del self._posted[next(iter(self._posted))]

    async def _posted_message(self, ref: str) -> tuple[str, str] | None:
        return self._posted.get(ref) or await self.store.slack_message(ref)

    async def _deliver(self, row: OutboxRow, done: list[Delivered]) -> None:
        async with self._slots:
            if time.time() < self._paused_until:
                return
            try:
                sent = await self._send(row)
            except Retry as e:
                if e.unsure and row.method != "update":
                    self._unsure.add(row.id)
                await self._retry(row, e)
                return
            except Refused as e:
                log.error("slack refused message %d for %s: %s", row.id, row.thread, e)
                self.metrics.slack_deliveries.labels("failed").inc()
                done.append(Delivered(row.id, "failed", time.time(), str(e)))
                return
            done.append(Delivered(row.id, "sent", time.time(), sent=sent))

    async def _send(self, row: OutboxRow) -> tuple[str, str, str] | None:
        if row.method == "update":
            known = await self._posted_message(row.ref or "")
            if known is None:
                return None  # the message to update was never posted (a storm, a refusal)
            await self.sender.update(known[0], known[1], row.payload)
            return None
        thread_ts, channel = None, row.channel
        if row.method == "reply" and row.parent:
            parent = await self._posted_message(row.parent)
            if parent is not None:
                channel, thread_ts = parent
        found = None
        if row.id in self._unsure:  # an earlier attempt may have been posted, its answer lost
            where = self._channel_ids.get(channel, channel)  # Slack reads history by ID only
            found = await self.sender.find(where, thread_ts, row.id, row.created_at)
        if found is not None:
            log.info("slack: message %d was posted by an earlier attempt: not again", row.id)
        channel_id, ts = found or await self.sender.post(channel, row.payload, thread_ts, row.id)
        self._channel_ids[channel] = channel_id
        ref = row.ref if row.method == "post" or row.ref else None
        return (ref, channel_id, ts) if ref else None

    async def _retry(self, row: OutboxRow, e: Retry) -> None:
        now = time.time()
        if now - row.created_at > self.config.slack.max_age:
            log.error(
                "slack: giving up on message %d after %d attempts: %s", row.id, row.attempts + 1, e
            )
            self.metrics.slack_deliveries.labels("failed").inc()
            await self.store.outbox_done(row.id, "failed", now, f"gave up: {e}")
            return
        s = self.config.slack
        backoff = min(s.retry_max, s.retry_initial * 2 ** min(row.attempts, 16))
        delay = backoff * (0.5 + random.random() / 2)  # noqa: S311 (jitter, not a secret)
        if e.after is not None:
            delay = max(delay, e.after)
            self._paused_until = max(self._paused_until, now + e.after)
        self.metrics.slack_deliveries.labels("retried").inc()
        log.warning(
            "slack: message %d (%s) not delivered (%s); retrying in %.1fs",
            row.id,
            row.thread,
            e,
            delay,
        )
        await self.store.outbox_retry(row.id, now + delay, str(e))
        self._wake.set()


def _storm(entry: AuditEntry) -> bool:
    return bool(entry.detail.get("storm"))
