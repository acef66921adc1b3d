"""Slack delivery through the outbox: one parent per incident updated in place, every step in its
thread, in order; a Slack outage delays messages and never an action; a restart loses none."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from remediator.store.records import AuditEntry, Changes, OutboxItem
from tests.conftest import Running, StartDaemon, base_config, slack_config
from tests.payloads import alert, notification
from tests.slack_standin import Message, SlackAPI
from tests.standins import Recorder
from tests.store.test_contract import new_incident

RULES = """
actions:
  pause_ingestion: {kind: http, target: t, method: PUT, path: /pause, retries: 0}
  resume_ingestion: {kind: http, target: t, method: PUT, path: /resume, retries: 0}
  rollback_flag: {kind: http, target: t, method: PATCH, path: /flag, retries: 0,
                  destructive: true}
rules:
  - name: ingestion
    match: '{alertname="IngestionHighErrorRate"}'
    incident_key: [alertname, service]
    value: {annotation: error_rate}
    tiers:
      - {name: notify, when: "> 5%"}
      - {name: pause, when: "> 10%", actions: [pause_ingestion]}
      - {name: rollback, when: "> 20%", actions: [rollback_flag]}
    on_resolved: [{action: resume_ingestion, if_ran: [pause_ingestion]}]
  - name: cdc
    match: '{alertname="ConnectorDown"}'
    incident_key: [alertname, connector]
    slack: {channel: '#cdc'}
    tiers: [{actions: [pause_ingestion]}]
"""


@pytest.fixture
async def target(recorder: Callable[..., Awaitable[Recorder]]) -> Recorder:
    return await recorder()


@pytest.fixture
def config(write_config: Callable[..., Path], slack_api: SlackAPI, target: Recorder) -> Path:
    return write_config(
        base_config(
            {"t": target.server.url}, "rule_files: [rules.yaml]\n" + slack_config(slack_api)
        ),
        rules=RULES,
    )


def rate(
    value: str, status: str = "firing", service: str = "ingestion", severity: str = "P1"
) -> dict[str, Any]:
    return notification(
        alert(
            "IngestionHighErrorRate",
            status,
            service=service,
            severity=severity,
            annotations={"error_rate": value, "summary": "Ingestion errors"},
        )
    )


async def delivered(running: Running, timeout: float = 10.0) -> None:
    """Until the outbox is empty (retries included)."""
    async with asyncio.timeout(timeout):
        while True:
            await running.settle()
            await running.daemon.outbox.drain()
            pending, _ = await running.daemon.store.outbox_stats()
            if pending == 0:
                return
            await asyncio.sleep(0.05)


def _context(parent: Message) -> str:
    return str(parent.attachments[0]["blocks"][3]["elements"][0]["text"])


def color(message: Message) -> str:
    attachments = message.updates[-1]["attachments"] if message.updates else message.attachments
    return str(attachments[0]["color"])


async def test_one_thread_per_incident_with_the_parent_updated_in_place(
    config: Path,
    start_daemon: StartDaemon,
    slack_api: SlackAPI,
) -> None:
    running = await start_daemon(config)
    await running.post_alerts(rate("0.12"))
    await delivered(running)
    [parent] = slack_api.parents()
    assert parent.channel == "C0ALERTS"
    assert parent.text.startswith("🚨 INCIDENT: P1 - Ingestion errors")
    blocks = parent.attachments[0]["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "🚨 INCIDENT: P1 - Ingestion errors"},
    }
    assert "<!subteam^S0PAGE>" in blocks[1]["text"]["text"]  # P1 mentions the paging group
    context = blocks[3]["elements"][0]["text"]
    assert "rule `ingestion`" in context
    assert "<http://alertmanager.test:9093|Alertmanager>" in context
    assert "<http://prometheus.test:9090/graph?g0.expr=up|Prometheus>" in context
    assert color(parent) == "#f9a825"  # amber: acting
    [taken] = slack_api.thread(parent)
    assert taken.text.startswith(":warning: *INGESTION PAUSED*")

    await running.post_alerts(rate("0.03", "resolved"))
    await delivered(running)
    assert [m.text.split("\n")[0] for m in slack_api.thread(parent)] == [
        ":warning: *INGESTION PAUSED*",
        ":white_check_mark: *RESOLVED: Ingestion errors*",
        ":white_check_mark: *INGESTION RESUMED*",
    ]
    assert color(parent) == "#2e7d32"  # green: resolved
    assert len(slack_api.parents()) == 1  # the resolution updated the parent, no new message


async def test_an_escalation_updates_and_replies(
    config: Path,
    start_daemon: StartDaemon,
    slack_api: SlackAPI,
) -> None:
    running = await start_daemon(config)
    await running.post_alerts(rate("0.07", severity="P3"))
    await delivered(running)
    [parent] = slack_api.parents()
    assert "<!subteam" not in parent.attachments[0]["blocks"][1]["text"]["text"]  # P3: no page
    assert color(parent) == "#d32f2f"  # red: firing, nothing to do yet
    await running.post_alerts(rate("0.25", severity="P3"))
    await delivered(running)
    texts = [m.text.split("\n")[0] for m in slack_api.thread(parent)]
    assert texts == [
        ":bar_chart: *UPDATE: Ingestion errors*",
        ":raised_hand: *APPROVAL NEEDED: rollback_flag* on `t`",
    ]
    approval = slack_api.thread(parent)[1]
    buttons = approval.blocks[1]["elements"]
    assert [(b["action_id"], b["style"]) for b in buttons] == [
        ("approve", "primary"),
        ("deny", "danger"),
    ]
    assert buttons[0]["confirm"]["title"]["text"] == "Run a destructive action?"


async def test_a_rule_chooses_its_channel(
    config: Path,
    start_daemon: StartDaemon,
    slack_api: SlackAPI,
) -> None:
    running = await start_daemon(config)
    await running.post_alerts(notification(alert("ConnectorDown", connector="sink")))
    await delivered(running)
    assert [m.channel for m in slack_api.parents()] == ["C0CDC"]


@pytest.mark.parametrize(
    ("hostile", "shown", "never"),
    [
        ("<!channel>", "&lt;!channel&gt;", "<!channel>"),
        ("<https://evil.example|click>", "&lt;https://evil.example|click&gt;", "<https://evil"),
        ("{{ 7*7 }}", "{{ 7*7 }}", "*49*"),  # shown as written: never evaluated
        ("{% raw %}", "{% raw %}", "<!"),
    ],
)
async def test_hostile_labels_come_out_inert_in_every_message(
    config: Path,
    start_daemon: StartDaemon,
    slack_api: SlackAPI,
    hostile: str,
    shown: str,
    never: str,
) -> None:
    running = await start_daemon(config)
    body = notification(
        alert(
            "IngestionHighErrorRate",
            service=hostile,
            severity=hostile,
            annotations={"error_rate": "0.12", "summary": hostile, "description": hostile},
        )
    )
    await running.post_alerts(body)
    await running.post_alerts(rate("0.01", "resolved", service=hostile, severity=hostile))
    await delivered(running)
    assert len(slack_api.messages) >= 3
    everything = json.dumps(
        [(m.text, m.blocks, m.attachments, m.updates) for m in slack_api.messages],
        ensure_ascii=False,
    )
    assert shown in everything
    assert never not in everything


async def test_a_slack_outage_delays_messages_and_never_an_action(
    config: Path,
    start_daemon: StartDaemon,
    slack_api: SlackAPI,
    target: Recorder,
) -> None:
    running = await start_daemon(config)
    await slack_api.stop()
    started = time.monotonic()
    for service in ("a", "b", "c"):
        await running.post_alerts(rate("0.12", service=service))
    await running.settle()
    assert time.monotonic() - started < 2.0  # actions did not wait for Slack
    assert [s.path for s in target.server.seen] == ["/pause", "/pause", "/pause"]
    actions = (await running.api("/api/v1/actions"))["items"]
    assert [a["status"] for a in actions] == ["succeeded"] * 3
    await running.daemon.outbox.drain()
    pending, _ = await running.daemon.store.outbox_stats()
    assert pending > 0
    metrics = (await running.client.get("/metrics")).text
    assert 'remediator_slack_deliveries_total{outcome="retried"} 0.0' not in metrics

    await slack_api.start()  # Slack is back, on the same address
    await delivered(running)
    parents = slack_api.parents()
    assert len(parents) == 3
    for parent in parents:
        thread = [m.text.split("\n")[0] for m in slack_api.thread(parent)]
        assert thread in (
            [":warning: *A PAUSED*"],
            [":warning: *B PAUSED*"],
            [":warning: *C PAUSED*"],
        )
        assert len(parent.updates) >= 1  # the "acting" update arrived after the post


async def test_429_retry_after_is_honoured_and_every_thread_stays_in_order(
    config: Path,
    start_daemon: StartDaemon,
    slack_api: SlackAPI,
) -> None:
    slack_api.rate_limit, slack_api.retry_after = 2, 1
    running = await start_daemon(config)
    for service in ("alpha", "beta"):
        await running.post_alerts(rate("0.12", service=service))
        await running.settle()
        await running.post_alerts(rate("0.01", "resolved", service=service))
    await delivered(running, timeout=30)
    assert any(status == 429 for _, status in slack_api.calls)
    assert len(slack_api.parents()) == 2
    for parent in slack_api.parents():
        system = "ALPHA" if "incident 1" in _context(parent) else "BETA"
        assert [m.text.split("\n")[0] for m in slack_api.thread(parent)] == [
            f":warning: *{system} PAUSED*",
            ":white_check_mark: *RESOLVED: Ingestion errors*",
            f":white_check_mark: *{system} RESUMED*",
        ]
    metrics = (await running.client.get("/metrics")).text
    assert 'remediator_slack_deliveries_total{outcome="retried"} 0.0' not in metrics


async def test_a_resolution_during_the_pause_still_resumes_after_it(
    config: Path,
    start_daemon: StartDaemon,
    slack_api: SlackAPI,
    target: Recorder,
) -> None:
    """The alert resolves while the pause is in flight: the pause may take effect, so the
    resume runs, and one action at a time per target puts it after the pause."""
    target.delay = 0.3
    running = await start_daemon(config)
    await running.post_alerts(rate("0.12"))
    await running.daemon.engine.idle()
    async with asyncio.timeout(5):
        while not target.server.seen:
            await asyncio.sleep(0.01)
    await running.post_alerts(rate("0.01", "resolved"))
    await delivered(running)
    assert [s.path for s in target.server.seen] == ["/pause", "/resume"]
    [parent] = slack_api.parents()
    assert [m.text.split("\n")[0] for m in slack_api.thread(parent)] == [
        ":white_check_mark: *RESOLVED: Ingestion errors*",
        ":warning: *INGESTION PAUSED*",
        ":white_check_mark: *INGESTION RESUMED*",
    ]


async def test_server_errors_are_retried(
    config: Path,
    start_daemon: StartDaemon,
    slack_api: SlackAPI,
) -> None:
    slack_api.failures = 3
    running = await start_daemon(config)
    await running.post_alerts(rate("0.12"))
    await delivered(running)
    assert [s for _, s in slack_api.calls[:3]] == [500, 500, 500]
    [parent] = slack_api.parents()
    assert len(slack_api.thread(parent)) == 1


async def test_a_message_slack_refuses_for_good_does_not_hold_the_others(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    slack_api: SlackAPI,
    target: Recorder,
) -> None:
    config = write_config(
        base_config(
            {"t": target.server.url},
            "rule_files: [rules.yaml]\n"
            + slack_config(slack_api).replace("'#alerts'", "'#nowhere'"),
        ),
        rules=RULES,
    )
    running = await start_daemon(config)
    await running.post_alerts(rate("0.12"))
    await running.post_alerts(notification(alert("ConnectorDown", connector="sink")))
    await delivered(running)
    assert [m.channel for m in slack_api.parents()] == ["C0CDC"]  # #cdc works, #nowhere not
    metrics = (await running.client.get("/metrics")).text
    assert 'remediator_slack_deliveries_total{outcome="failed"} 0.0' not in metrics


async def test_a_restart_loses_no_message(
    config: Path,
    start_daemon: StartDaemon,
    slack_api: SlackAPI,
) -> None:
    first = await start_daemon(config)
    await slack_api.stop()
    await first.post_alerts(rate("0.12"))
    await first.settle()
    await first.daemon.stop()
    await slack_api.start()
    second = await start_daemon(config)
    await delivered(second)
    [parent] = slack_api.parents()
    assert [m.text.split("\n")[0] for m in slack_api.thread(parent)] == [
        ":warning: *INGESTION PAUSED*"
    ]


async def test_lines_that_tell_nothing_cost_no_commit_and_a_restart_tells_each_line_once(
    config: Path, start_daemon: StartDaemon, slack_api: SlackAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: in a storm the outbox committed its cursor and read what was due after every
    pass, though a storm's lines are told by its summary. A line that told something is queued
    with its cursor; the lines after it are read again after a restart and tell nothing again."""
    first = await start_daemon(config)
    outbox, store = first.daemon.outbox, first.daemon.store
    calls: Counter[str] = Counter()
    for name in ("enqueue_slack", "outbox_due", "outbox_stats"):
        monkeypatch.setattr(store, name, counted(calls, name, getattr(store, name)))

    async def tell(*entries: AuditEntry) -> int:
        applied = await store.apply(Changes(at=time.time(), audit=list(entries)))
        await outbox.publish(applied.audit)
        last = applied.audit[-1].id or 0
        async with asyncio.timeout(5):
            while outbox._cursor < last:
                await asyncio.sleep(0.01)
        return last

    storm = AuditEntry("action", "claimed", "told by the summary", 0.0, detail={"storm": True})
    async with asyncio.timeout(5):
        while outbox._first_due is not None:  # the first pass: nothing was queued
            await asyncio.sleep(0.01)
    calls.clear()
    for _ in range(5):
        await tell(storm)
    assert calls == {}
    told = await tell(AuditEntry("control", "muted", "Muted rule cdc for 1h", 0.0, actor="ann"))
    await delivered(first)
    assert calls["enqueue_slack"] == 1
    assert [m.text for m in slack_api.messages] == [":control_knobs: Muted rule cdc for 1h"]
    last = await tell(storm, storm)
    assert await store.get_setting("slack_cursor") == told
    await first.daemon.stop()
    second = await start_daemon(config)
    async with asyncio.timeout(5):
        while second.daemon.outbox._cursor < last:
            await asyncio.sleep(0.01)
    await delivered(second)
    assert [m.text for m in slack_api.messages] == [":control_knobs: Muted rule cdc for 1h"]


async def test_a_pass_records_its_deliveries_in_one_commit_and_replies_need_no_read(
    config: Path, start_daemon: StartDaemon, slack_api: SlackAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: a commit per message delivered, and a read of its parent's (channel, ts) per
    reply, were most of the outbox's store operations outside a storm."""
    running = await start_daemon(config)
    outbox, store = running.daemon.outbox, running.daemon.store
    calls: Counter[str] = Counter()
    for name in ("outbox_delivered", "slack_message"):
        monkeypatch.setattr(store, name, counted(calls, name, getattr(store, name)))
    items = []
    for n in range(5):
        thread, ref = f"incident:{n}", f"incident:{n}"
        items += [
            OutboxItem(thread, "#alerts", "post", {"text": f"parent {n}"}, ref=ref),
            OutboxItem(thread, "#alerts", "reply", {"text": f"reply {n}"}, parent=ref),
            OutboxItem(thread, "#alerts", "update", {"text": f"parent {n}, updated"}, ref=ref),
        ]
    await store.enqueue_slack(items, outbox._cursor, time.time())
    await delivered(running)
    assert calls == {"outbox_delivered": 3}  # the parents, the replies, the updates
    for parent in slack_api.parents():
        number = parent.text.split()[1]
        assert parent.current_text == f"parent {number}, updated"
        assert [m.text for m in slack_api.thread(parent)] == [f"reply {number}"]


async def test_a_pass_reads_its_incidents_and_their_actions_once(
    config: Path, start_daemon: StartDaemon, slack_api: SlackAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: every incident a pass told was two reads (the incident, its actions)."""
    running = await start_daemon(config)
    store = running.daemon.store
    calls: Counter[str] = Counter()
    for name in ("incident", "incidents", "ran_actions", "ran_actions_of"):
        monkeypatch.setattr(store, name, counted(calls, name, getattr(store, name)))
    writes = [new_incident(-1 - n, f"c{n}") for n in range(5)]
    writes = [replace(w, incident=replace(w.incident, rule="cdc")) for w in writes]
    opened = [
        AuditEntry("decision", "opened", "opened", 1.0, incident_id=w.incident.id, rule="cdc")
        for w in writes
    ]
    await store.apply(Changes(at=time.time(), incidents=writes, audit=opened))
    await delivered(running)
    assert calls == {"incidents": 1, "ran_actions_of": 1}
    assert len(slack_api.parents()) == 5


def counted(
    calls: Counter[str], name: str, method: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    async def call(*args: Any) -> Any:
        calls[name] += 1
        return await method(*args)

    return call


async def test_without_a_token_messages_go_to_the_log(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    target: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = write_config(
        base_config({"t": target.server.url}, "rule_files: [rules.yaml]\n"), rules=RULES
    )
    running = await start_daemon(config)
    with caplog.at_level("INFO", logger="remediator.slack.outbox"):
        await running.post_alerts(rate("0.12"))
        await delivered(running)
    logged = [r.getMessage() for r in caplog.records]
    assert any(
        "slack (no token) [default]: 🚨 INCIDENT: P1 - Ingestion errors" in m for m in logged
    )
    assert any(":warning: *INGESTION PAUSED*" in m for m in logged)


@pytest.mark.parametrize("channel", ["C0ALERTS", "#alerts"])
async def test_a_lost_answer_does_not_post_a_second_parent(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    slack_api: SlackAPI,
    target: Recorder,
    channel: str,
) -> None:
    """Slack posted the parent, but its answer never arrived: the retry looks for the message
    (its metadata names the outbox row) before posting again. A channel given by name is found
    once a post there told its ID (Slack reads history by ID only)."""
    main = base_config({"t": target.server.url}, "rule_files: [rules.yaml]\n")
    settings = slack_config(slack_api).replace("'#alerts'", f"'{channel}'")
    config = write_config(main + settings, rules=RULES)
    running = await start_daemon(config)
    earlier = 0
    if channel.startswith("#"):  # an earlier incident told the channel's ID
        await running.post_alerts(rate("0.07", service="warmup"))
        await delivered(running)
        earlier = len(slack_api.parents())
    slack_api.lose_answers = 2  # the parent and its first reply: posted, answers lost
    await running.post_alerts(rate("0.12"))
    await delivered(running)
    parents = slack_api.parents()[earlier:]
    [parent] = parents
    assert parent.metadata is not None
    assert parent.metadata["event_type"] == "remediator_message"
    texts = [m.text for m in slack_api.thread(parent)]
    assert len(texts) == len(set(texts)), texts
    histories = [m for m, _ in slack_api.calls if m.startswith("conversations.")]
    assert histories == ["conversations.history", "conversations.replies"]
