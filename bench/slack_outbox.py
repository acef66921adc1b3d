"""Benchmark 6, the Slack outbox: 1,000 messages across 50 incidents through a rate-limited Slack.

The daemon's own Outbox (src/remediator/slack/outbox.py) and SQLite store deliver, through
slack_sdk, to the Slack Web API stand-in of the tests (tests/slack_standin.py) on 127.0.0.1, set
to allow 50 calls per second and to answer 429 with `Retry-After: 1` beyond that. The outbox runs
with the default retry settings. The 1,000 messages are queued in the store before the outbox
starts: per incident, its parent message and 19 replies in its thread.

Figures: every message delivered; every thread in order (each reply under its parent, in the
order queued); the delivery rate, first call to last delivery, against the allowed rate (the
baseline). Target: at least 90 % of it. In process, one event loop, pinned to SERVER_CPU.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from bench.common import SERVER_CPU, Figure, Section, Workdir, median
from remediator.config import load_config
from remediator.metrics import Metrics
from remediator.slack.outbox import Outbox
from remediator.store.records import OutboxItem
from remediator.store.sqlite import SqliteStore
from tests.slack_standin import TOKEN, SlackAPI

INCIDENTS = 50
PER_INCIDENT = 20  # the parent and 19 replies
ALLOWED = 50  # calls per second before 429
RETRY_AFTER = 1
LIMIT = 120.0  # seconds before a run is given up


@dataclass
class Run:
    delivered: int
    seconds: float
    out_of_order: int  # threads whose replies are not all there, in order, under their parent
    calls: int
    rate_limited: int  # 429 answers

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0


def messages() -> list[OutboxItem]:
    items = []
    for i in range(INCIDENTS):
        thread = ref = f"incident:{i}"
        items.append(OutboxItem(thread, "#alerts", "post", {"text": f"{i}:0"}, ref=ref))
        for k in range(1, PER_INCIDENT):
            items.append(OutboxItem(thread, "#alerts", "reply", {"text": f"{i}:{k}"}, parent=ref))
    return items


def out_of_order(api: SlackAPI) -> int:
    bad = 0
    for parent in api.parents():
        incident = parent.text.split(":")[0]
        expected = [f"{incident}:{k}" for k in range(1, PER_INCIDENT)]
        if [m.text for m in api.thread(parent)] != expected:
            bad += 1
    return bad + INCIDENTS - len(api.parents())


async def deliver(work: Workdir) -> Run:
    api = SlackAPI()
    api.rate_limit, api.retry_after = ALLOWED, RETRY_AFTER
    await api.start()
    config_path = work.path / "remediator.yaml"
    config_path.write_text(
        "store: {sqlite: {path: state/remediator.db}}\n"
        f"slack: {{bot_token_env: BENCH_SLACK_TOKEN, base_url: '{api.base_url}', "
        "channel: '#alerts'}\n"
    )
    os.environ["BENCH_SLACK_TOKEN"] = TOKEN
    config = load_config(config_path)
    store = SqliteStore(config.store_path)
    await store.open()
    outbox = Outbox(config, store, Metrics(CollectorRegistry()))
    try:
        items = messages()
        await store.enqueue_slack(items, 0, time.time())
        started = time.monotonic()
        await outbox.start()
        pending = len(items)
        while pending and time.monotonic() - started < LIMIT:
            await asyncio.sleep(0.02)
            pending, _ = await store.outbox_stats()
        seconds = time.monotonic() - started
    finally:
        await outbox.stop()
        await store.close()
        await api.stop()
    return Run(
        delivered=len(api.messages),
        seconds=seconds,
        out_of_order=out_of_order(api),
        calls=len(api.calls),
        rate_limited=sum(1 for _, status in api.calls if status == 429),
    )


def run(quick: bool = False) -> Section:
    started = time.monotonic()
    section = Section("slack", "6. Slack outbox: 1,000 messages, 50 incidents, 50 calls/s allowed")
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        before: set[int] | None = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {int(SERVER_CPU)})
    else:
        before = None
    runs: list[Run] = []
    logging.getLogger("remediator.slack").setLevel(logging.ERROR)  # not a line per 429
    try:
        for i in range(1 if quick else 3):
            with Workdir.make(f"slack-{i}") as work:
                runs.append(asyncio.run(deliver(work)))
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
    total = INCIDENTS * PER_INCIDENT
    rate = median([r.rate for r in runs])
    lost = sum(total - r.delivered for r in runs)
    disorder = sum(r.out_of_order for r in runs)
    section.figures += [
        Figure(
            "slack: delivery rate", rate, "/s", ">= 0.9x allowed", rate >= 0.9 * ALLOWED,
            float(ALLOWED), "allowed by the stand-in", [r.rate for r in runs],
        ),
        Figure(
            "slack: messages not delivered", float(lost), "", "0", lost == 0,
            float(total * len(runs)), "queued (all runs)",
        ),
        Figure(
            "slack: threads out of order", float(disorder), "", "0", disorder == 0,
            float(INCIDENTS * len(runs)), "threads (all runs)",
        ),
    ]  # fmt: skip
    rows = ["| run | delivered | seconds | messages/s | calls | 429s | threads out of order |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for i, r in enumerate(runs, 1):
        rows.append(
            f"| {i} | {r.delivered:,} | {r.seconds:.2f} | {r.rate:.1f} | {r.calls:,} | "
            f"{r.rate_limited:,} | {r.out_of_order} |"
        )
    section.details.append("\n".join(rows))
    section.notes.append(
        f"{len(runs)} runs, median rate. Rate = messages delivered / seconds from the outbox's "
        f"start to the last delivery; the stand-in allows {ALLOWED} calls in any 1 s window and "
        f"answers 429 with Retry-After: {RETRY_AFTER} beyond it. Default retry settings."
    )
    section.seconds = time.monotonic() - started
    return section


if __name__ == "__main__":
    from bench.common import print_section

    s = run(quick=True)
    print_section(s)
    print("\n".join(s.details))
