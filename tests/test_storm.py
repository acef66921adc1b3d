"""A storm: 10,000 alerts within 60 s across 500 incidents, against a live daemon with Slack.
The global budget holds, one storm summary replaces the per-incident messages, memory stays
bounded, and every alert is journaled and decided.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.conftest import Running, StartDaemon, base_config, slack_config
from tests.payloads import alert, notification
from tests.slack_standin import SlackAPI
from tests.standins import Recorder

INCIDENTS = 500
PER_NOTIFICATION = 50
NOTIFICATIONS = 200  # 200 x 50 = 10,000 alerts, 20 per incident
BUDGET = 20
RULES = """
actions:
  fix: {kind: http, target: service, method: POST, path: "/fix/{instance}", retries: 0}
rules:
  - name: storm
    match: '{alertname="Storm"}'
    incident_key: [alertname, instance]
    tiers:
      - actions: [fix]
"""


def rss_kib() -> int:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def batch(n: int) -> dict[str, object]:
    """Notification n: 50 alerts, each its own instance (pod), over the 500 incidents."""
    alerts = [
        alert("Storm", instance=f"i{(n * PER_NOTIFICATION + k) % INCIDENTS}", pod=f"p{n}-{k}")
        for k in range(PER_NOTIFICATION)
    ]
    return notification(*alerts)


async def test_a_storm_is_journaled_decided_budgeted_and_summarised(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    recorder: Callable[..., Awaitable[Recorder]],
    slack_api: SlackAPI,
) -> None:
    service = await recorder()
    extra = (
        "rule_files: [rules.yaml]\n"
        f"guardrails: {{budget: {{max: {BUDGET}, per: 1h}}}}\n" + slack_config(slack_api)
    )
    config = write_config(base_config({"service": service.server.url}, extra), rules=RULES)
    running = await start_daemon(config)
    before = rss_kib()
    started = time.monotonic()
    semaphore = asyncio.Semaphore(8)  # Alertmanager's few concurrent deliveries

    async def deliver(n: int) -> int:
        async with semaphore:
            r = await running.post_alerts(batch(n))
            return r.status_code

    statuses = await asyncio.gather(*(deliver(n) for n in range(NOTIFICATIONS)))
    assert time.monotonic() - started < 60
    assert statuses == [200] * NOTIFICATIONS  # every one acknowledged (journaled)
    await running.settle()
    store = running.daemon.store
    assert await store.unprocessed_journal() == []  # every one decided
    assert await store.quarantined_journal() == []
    assert await store.count_incidents("open") == INCIDENTS
    metrics = (await running.client.get("/metrics")).text
    assert 'remediator_alerts_received_total{status="firing"} 10000.0' in metrics
    assert len(service.server.requests("POST")) == BUDGET  # the budget held
    assert 'remediator_guardrail_refusals_total{guardrail="budget"} 480.0' in metrics
    assert running.daemon.engine.backlog_alerts == 0
    assert rss_kib() - before < 200 * 1024  # bounded: 10,000 alerts cost well under 200 MB
    async with asyncio.timeout(10):  # Slack: a storm summary, not 500 incident messages
        while not any("storm" in m.text.lower() for m in slack_api.messages):
            await asyncio.sleep(0.05)
    await drained(running)  # every line written so far is rendered and delivered
    texts = [m.text for m in slack_api.messages]
    assert len(texts) < 50, texts[:5]
    # Only the incidents opened before the storm began have a thread; nothing else is told
    # one by one (the 480 budget refusals and the storm's actions are in its summary).
    threads = [t for t in texts if "INCIDENT" in t]
    assert len(threads) <= 11, texts
    assert not [t for t in texts if "NOT ACTING" in t], texts
    assert len([t for t in texts if "ACTION TAKEN" in t]) <= len(threads), texts


async def drained(running: Running) -> None:
    """The Slack outbox has rendered every audit line and delivered every message."""
    async with asyncio.timeout(30):
        while True:
            await running.daemon.outbox.render_new()
            if (await running.daemon.store.outbox_stats())[0] == 0:
                return
            await asyncio.sleep(0.05)
