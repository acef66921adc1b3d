"""Slash commands and buttons through a running daemon, signed exactly as Slack signs them.

The daemon runs on a FakeClock (the signature's replay window, approvals, mutes and escalations
move with it); targets and Slack's Web API are real HTTP stand-ins on 127.0.0.1. Every verb is
driven, with its refusals: bad signatures, unauthorised users, unknown targets, expired approvals.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest

from remediator.clock import FakeClock, iso
from remediator.slack.app import HELP
from remediator.slack.templates import slack_escape
from tests.conftest import Running, StartDaemon, base_config, slack_config
from tests.payloads import alert, notification
from tests.slack_standin import Message, SlackAPI, click, command, signed
from tests.standins import KafkaConnect, Recorder

T0 = 1_795_000_000.0
NOW = iso(T0)  # 2026-11-19T06:26:40.000Z
ADMIN, ONCALL, STRANGER = "U0ADMIN", "U0ONCALL", "U0STRANGER"  # ONCALL: in group S0ONCALL
SINK = "/connectors/postgres-sink-connector"
STARTS = "2026-11-19T06:00:00Z"

RULES = f"""
actions:
  pause_sink: {{kind: http, target: connect, method: PUT, path: {SINK}/pause, retries: 0}}
  resume_sink: {{kind: http, target: connect, method: PUT, path: {SINK}/resume, retries: 0}}
  restart_sink: {{kind: http, target: connect, method: POST, path: {SINK}/restart, retries: 0}}
  rollback_ingestion: {{kind: http, target: flags, method: PUT, path: /ingestion_v2, retries: 0}}
  rollback_flag: {{kind: http, target: flags, method: PATCH, path: /flag, retries: 0,
                  destructive: true}}
  poke: {{kind: http, target: flags, method: POST, path: /poke, retries: 0}}
  page_oncall: {{kind: http, target: pager, path: /page, retries: 0}}
rules:
  - name: connector-down
    match: '{{alertname="ConnectorDown"}}'
    incident_key: [alertname, connector]
    tiers:
      - {{name: restart, actions: [restart_sink], escalate_after: 15m}}
      - {{name: page, actions: [page_oncall]}}
  - name: flag
    match: '{{alertname="BadFlag"}}'
    incident_key: [alertname, flag]
    tiers:
      - actions: [rollback_flag]
  - name: poke
    match: '{{alertname="Poke"}}'
    tiers:
      - {{actions: [poke], approval: required}}
"""
WRITE_VERBS = (
    "pause",
    "resume",
    "restart",
    "rollback",
    "ack",
    "mute",
    "unmute",
    "killswitch",
    "close",
)
ACCESS = "\n".join(
    [f"{verb}: {{users: [{ADMIN}]}}" for verb in WRITE_VERBS]
    + [f"{verb}: {{users: [{ADMIN}], groups: [S0ONCALL]}}" for verb in ("approve", "deny")]
)
VERBS = """
pause: {ingestion: pause_sink}
resume: {ingestion: resume_sink}
restart: {ingestion: restart_sink}
rollback: {ingestion: rollback_ingestion}
"""
HELP_TEXT = HELP.format(command="/remediate", targets="ingestion")


class World:
    """A daemon on a fake clock, Slack's stand-in, the targets, and shortcuts."""

    def __init__(
        self,
        running: Running,
        clock: FakeClock,
        slack: SlackAPI,
        connect: KafkaConnect,
        pager: Recorder,
        flags: Recorder,
        config: Path,
    ) -> None:
        self.running, self.clock, self.slack = running, clock, slack
        self.connect, self.pager, self.flags, self.config = connect, pager, flags, config

    async def post(
        self, endpoint: str, body: bytes, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        headers = signed(body, int(self.clock.now())) if headers is None else headers
        return await self.running.client.post(f"/slack/{endpoint}", content=body, headers=headers)

    async def ask(self, text: str, user: str = ADMIN, response: str = "cmd") -> str:
        """A slash command; its immediate (ephemeral) answer."""
        r = await self.post("commands", command(text, user, self.slack.response_url(response)))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["response_type"] == "ephemeral"
        return str(body["text"])

    async def click(self, action_id: str, approval_id: int = 1, user: str = ONCALL) -> None:
        body = click(action_id, str(approval_id), user, self.slack.response_url("click"))
        r = await self.post("interactions", body)
        assert (r.status_code, r.text) == (200, "")
        await self.running.settle()

    async def responses(self, name: str = "cmd", count: int = 1) -> list[str]:
        """What arrived at a response_url, once `count` posts have (polling, 5 s at most)."""
        async with asyncio.timeout(5):
            while len(self.slack.responses.get(name, [])) < count:
                await asyncio.sleep(0.02)
        return [r["text"] for r in self.slack.responses[name]]

    async def fire(self, name: str, **labels: str) -> None:
        body = alert(name, starts_at=STARTS, ends_at=None, annotations=None, **labels)
        r = await self.running.post_alerts(notification(body))
        assert r.status_code == 200, r.text
        await self.running.settle()

    async def later(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.running.daemon.timers.run_due()
        await self.running.settle()

    async def actions(self) -> list[dict[str, Any]]:
        return list(reversed((await self.running.api("/api/v1/actions"))["items"]))

    async def approval_status(self) -> str:
        items = (await self.running.api("/api/v1/approvals?status=all"))["items"]
        return str(items[0]["status"])

    async def refusals(self) -> list[tuple[str, str, dict[str, Any]]]:
        page = await self.running.daemon.store.history(50, None)
        return [
            (e["actor"], e["message"], e["detail"])
            for e in page.items
            if e["event"] == "slack_refused"
        ]

    async def requests(self, endpoint: str) -> dict[str, float]:
        """remediator_slack_requests_total for one endpoint, by outcome."""
        text = (await self.running.client.get("/metrics")).text
        prefix = f'remediator_slack_requests_total{{endpoint="{endpoint}",outcome="'
        return {
            line[len(prefix) :].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(prefix)
        }

    def seen(self, standin: KafkaConnect | Recorder) -> list[tuple[str, str]]:
        return [(s.method, s.path) for s in standin.server.seen]

    def approval_message(self) -> Message:
        return next(
            m
            for m in self.slack.messages
            if any(b.get("block_id") == "approval:1" for b in m.blocks)
        )


MakeWorld = Callable[..., Awaitable[World]]


@pytest.fixture
async def make_world(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    kafka_connect: KafkaConnect,
    recorder: Callable[..., Awaitable[Recorder]],
    slack_api: SlackAPI,
) -> MakeWorld:
    async def make(access: str = ACCESS) -> World:
        pager, flags = await recorder(), await recorder()
        targets = {
            "connect": kafka_connect.server.url,
            "pager": pager.server.url,
            "flags": flags.server.url,
        }
        slack = slack_config(slack_api, f"access:\n{_indent(access)}\nverbs:\n{_indent(VERBS)}")
        extra = "rule_files: [rules.yaml]\nguardrails: {approval_timeout: 30m}\n" + slack
        config = write_config(base_config(targets, extra), rules=RULES)
        clock = FakeClock(T0)
        running = await start_daemon(config, clock)
        return World(running, clock, slack_api, kafka_connect, pager, flags, config)

    return make


@pytest.fixture
async def world(make_world: MakeWorld) -> World:
    return await make_world()


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.strip().splitlines())


# -- the signature -----------------------------------------------------------------------------


@pytest.mark.parametrize("skew", [0, -300, 300])
async def test_a_correctly_signed_command_within_five_minutes_is_answered(
    world: World, skew: int
) -> None:
    body = command("killswitch on")
    r = await world.post("commands", body, signed(body, int(T0) + skew))
    assert r.json() == {
        "response_type": "ephemeral",
        "text": f"Kill switch is *ON* (set by slack:{ADMIN} at {NOW}).",
    }


def _drop(header: str) -> Callable[[bytes], tuple[bytes, dict[str, Any]]]:
    def forge(body: bytes) -> tuple[bytes, dict[str, Any]]:
        headers: dict[str, Any] = signed(body, int(T0))
        del headers[header]
        return body, headers

    return forge


def _replace(header: str, value: str | bytes) -> Callable[[bytes], tuple[bytes, dict[str, Any]]]:
    def forge(body: bytes) -> tuple[bytes, dict[str, Any]]:
        return body, {**signed(body, int(T0)), header: value}

    return forge


FORGERIES: dict[str, Callable[[bytes], tuple[bytes, dict[str, Any]]]] = {
    "missing signature": _drop("X-Slack-Signature"),
    "missing timestamp": _drop("X-Slack-Request-Timestamp"),
    "empty signature": _replace("X-Slack-Signature", ""),
    "wrong signature": _replace("X-Slack-Signature", "v0=" + "0" * 64),
    "signature without v0=": lambda b: (
        b,
        {**signed(b, int(T0)), "X-Slack-Signature": signed(b, int(T0))["X-Slack-Signature"][3:]},
    ),
    "non-ASCII signature": _replace("X-Slack-Signature", "v0=é".encode()),
    "another secret": lambda b: (b, signed(b, int(T0), secret="another-secret")),
    "body altered after signing": lambda b: (b + b"&text=x", signed(b, int(T0))),
    "stale, 5 minutes and 1 s old": lambda b: (b, signed(b, int(T0) - 301)),
    "5 minutes and 1 s in the future": lambda b: (b, signed(b, int(T0) + 301)),
    "non-numeric timestamp": lambda b: (b, signed(b, "yesterday")),
    "fractional timestamp": lambda b: (b, signed(b, f"{T0:.3f}")),
}


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_a_missing_stale_or_wrong_signature_is_a_401_never_a_500(
    world: World, forgery: str
) -> None:
    await world.fire("BadFlag", flag="f")  # an approval a forged click could decide
    for endpoint, original in (
        ("commands", command("killswitch on")),
        ("interactions", click("approve", "1")),
    ):
        body, headers = FORGERIES[forgery](original)
        r = await world.post(endpoint, body, headers)
        assert (r.status_code, r.json()) == (
            401,
            {"error": "missing, stale or wrong Slack signature"},
        )
        assert await world.requests(endpoint) == {
            "ok": 0.0,
            "unauthorized": 1.0,
            "forbidden": 0.0,
            "invalid": 0.0,
        }
    assert (await world.running.api("/api/v1/killswitch"))["on"] is False
    assert await world.approval_status() == "pending"


# -- authorisation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("help", HELP_TEXT),
        ("", HELP_TEXT),
        ("status", "Kill switch: *off* · open incidents: 0 · approvals waiting: 0"),
        ("history", "no history yet"),
    ],
)
async def test_read_verbs_are_open_to_anyone_by_default(
    world: World, text: str, answer: str
) -> None:
    assert await world.ask(text, user=STRANGER) == answer
    assert (await world.requests("commands"))["ok"] == 1.0


@pytest.mark.parametrize(
    "text",
    [
        "pause ingestion",
        "resume ingestion",
        "restart ingestion",
        "rollback ingestion",
        "approve 1",
        "deny 1",
        "ack 1",
        "mute connect 1h upgrade",
        "unmute 1",
        "killswitch on",
        "KILLSWITCH off",
    ],
)
async def test_an_unauthorised_user_is_refused_and_audited(world: World, text: str) -> None:
    await world.fire("BadFlag", flag="f")  # approval 1 and incident 1 exist
    verb = text.split()[0].lower()
    assert await world.ask(text, user=STRANGER) == (
        f":no_entry_sign: You are not allowed to `{verb}`. Ask an admin to add you to "
        f"`slack.access.{verb}`."
    )
    assert await world.refusals() == [
        (f"slack:{STRANGER}", f"slack:{STRANGER} may not {verb}", {"verb": verb})
    ]
    assert (await world.requests("commands"))["forbidden"] == 1.0
    await world.running.settle()
    assert world.seen(world.connect) == []
    assert world.seen(world.flags) == []
    assert await world.approval_status() == "pending"
    assert (await world.running.api("/api/v1/killswitch"))["source"] == "config"
    assert (await world.running.api("/api/v1/mutes"))["items"] == []


async def test_user_groups_are_resolved_through_slack(world: World) -> None:
    await world.fire("BadFlag", flag="f")
    assert await world.ask("approve 1", user=ONCALL) == (
        "Approved rollback_flag on `flags` (approval 1)."
    )
    assert ("usergroups.users.list", 200) in world.slack.calls
    assert await world.ask("pause ingestion", user=ONCALL) == (
        ":no_entry_sign: You are not allowed to `pause`. Ask an admin to add you to "
        "`slack.access.pause`."
    )


async def test_a_wildcard_allowlist_covers_the_verbs_without_their_own(
    make_world: MakeWorld,
) -> None:
    world = await make_world(f'"*": {{users: [{ADMIN}]}}\npause: {{groups: [S0ONCALL]}}')
    assert await world.ask("killswitch status") == "Kill switch is *off*."
    assert await world.ask("killswitch status", user=ONCALL) == (
        ":no_entry_sign: You are not allowed to `killswitch`. Ask an admin to add you to "
        "`slack.access.killswitch`."
    )
    assert (await world.ask("pause ingestion", user=ONCALL)).startswith("Requested pause")
    assert (await world.ask("pause ingestion")).startswith(":no_entry_sign:")


async def test_without_an_allowlist_no_one_may_write(make_world: MakeWorld) -> None:
    world = await make_world("{}")
    assert await world.ask("killswitch on") == (
        ":no_entry_sign: You are not allowed to `killswitch`. Ask an admin to add you to "
        "`slack.access.killswitch`."
    )


# -- help, unknown verbs, usage ------------------------------------------------------------------


async def test_an_unknown_verb_answers_with_help(world: World) -> None:
    assert await world.ask("frobnicate everything") == f"Unknown verb 'frobnicate'.\n{HELP_TEXT}"
    assert (await world.requests("commands"))["invalid"] == 1.0


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("pause", "usage: /remediate pause <target> [label=value ...]"),
        (
            "restart ingestion now",
            "expected label=value, got 'now'; usage: /remediate restart <target> [label=value ...]",
        ),
        ("close", "usage: /remediate close <incident> <reason>"),
        ("close 1", "usage: /remediate close <incident> <reason>"),
        ("approve", "usage: /remediate approve <id>"),
        ("approve one", "usage: /remediate approve <id>"),
        ("deny", "usage: /remediate deny <id> [reason]"),
        ("ack #1", "usage: /remediate ack <incident>"),
        ("mute connect 1h", "usage: /remediate mute <rule|target> <duration> <reason>"),
        ("mute connect soon upgrade", "invalid duration 'soon' (e.g. 30m, 2h)"),
        ("mute connect 90d upgrade", "duration must be between 1s and 30d"),
        ("unmute", "usage: /remediate unmute <id>"),
        ("killswitch maybe", "usage: /remediate killswitch on|off|status [reason]"),
        ("history abc", "usage: /remediate history [n]"),
        # digits int() refuses (superscript two) or reads (Arabic-Indic three): not numbers here
        ("history \u00b2", "usage: /remediate history [n]"),
        ("approve \u0663", "usage: /remediate approve <id>"),
        ("ack \u00b2", "usage: /remediate ack <incident>"),
    ],
)
async def test_malformed_arguments_answer_with_usage(world: World, text: str, answer: str) -> None:
    assert await world.ask(text) == f":warning: {slack_escape(answer)}"  # <id> would be a link


# -- status and history ------------------------------------------------------------------------


async def test_status_shows_the_kill_switch_open_incidents_and_waiting_approvals(
    world: World,
) -> None:
    await world.fire("BadFlag", flag="f")
    await world.fire("ConnectorDown", connector="sink")
    await world.ask("killswitch on")
    assert await world.ask("status", user=STRANGER) == (
        "Kill switch: *ON* · open incidents: 2 · approvals waiting: 1\n"
        "• incident 2 `connector-down` alertname=ConnectorDown connector=sink tier 0\n"
        "• incident 1 `flag` alertname=BadFlag flag=f tier 0"
    )


async def test_status_counts_every_open_incident_and_lists_the_newest(world: World) -> None:
    await world.ask("killswitch on")  # nothing acts: only incidents are opened
    down = [
        alert("ConnectorDown", starts_at=STARTS, annotations=None, connector=f"c{n:02d}")
        for n in range(22)
    ]
    assert (await world.running.post_alerts(notification(*down))).status_code == 200
    await world.running.settle()
    lines = (await world.ask("status")).splitlines()
    assert lines[0] == "Kill switch: *ON* · open incidents: 22 · approvals waiting: 0"
    assert len(lines) == 1 + 20 + 1
    assert lines[1].startswith("• incident 22 `connector-down`")
    assert lines[-1] == "… and 2 older (all of them: GET /api/v1/incidents?status=open)"


async def test_status_of_an_incident(world: World) -> None:
    await world.fire("ConnectorDown", connector="sink")
    await world.ask("ack 1")
    assert await world.ask("status 1") == (
        f"Incident 1 `connector-down` alertname=ConnectorDown connector=sink: *open*, "
        f"tier `restart` · owner slack:{ADMIN}\nOpened {NOW} · actions run: restart_sink"
    )


async def test_status_of_a_target(world: World) -> None:
    assert await world.ask("status connect") == "Target `connect`: circuit *closed* (0 failures)"
    await world.ask("mute connect 2h Connect upgrade")
    assert await world.ask("status connect") == (
        "Target `connect`: circuit *closed* (0 failures) · muted until "
        f"{iso(T0 + 7200)} (Connect upgrade)"
    )


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("status 99", ":warning: no incident 99"),
        (
            "status nope",
            ":warning: unknown target or incident 'nope' (targets: connect, flags, pager)",
        ),
        (
            "status \u00b2",
            ":warning: unknown target or incident '\u00b2' (targets: connect, flags, pager)",
        ),
    ],
)
async def test_status_of_something_unknown_says_so(world: World, text: str, answer: str) -> None:
    assert await world.ask(text) == answer


async def test_history_shows_the_latest_audit_lines_newest_first(world: World) -> None:
    await world.fire("BadFlag", flag="f")
    assert await world.ask("history 2", user=STRANGER) == (
        f"`{NOW}` flag *approval_requested* rollback_flag: approval_requested: rollback_flag "
        f"needs a human's approval: PATCH {world.flags.server.url}/flag\n"
        f"`{NOW}` flag *claimed* Claimed rollback_flag (http on flags)"
    )
    assert len((await world.ask("history")).splitlines()) == 3


# -- manual actions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verb", "action", "target", "method", "path", "status"),
    [
        ("pause", "pause_sink", "connect", "PUT", f"{SINK}/pause", 202),
        ("resume", "resume_sink", "connect", "PUT", f"{SINK}/resume", 202),
        ("restart", "restart_sink", "connect", "POST", f"{SINK}/restart", 204),
        ("rollback", "rollback_ingestion", "flags", "PUT", "/ingestion_v2", 200),
    ],
)
async def test_a_manual_action_runs_through_the_executor_and_reports_its_outcome(
    world: World, verb: str, action: str, target: str, method: str, path: str, status: int
) -> None:
    assert await world.ask(f"{verb} ingestion") == (
        f"Requested {verb} of `ingestion` ({action}), through the usual guardrails; "
        "incident 1. The outcome will follow here."
    )
    [outcome] = await world.responses()
    await world.running.settle()
    standin = world.connect if target == "connect" else world.flags
    assert world.seen(standin) == [(method, path)]
    url = f"{standin.server.url}{path}"
    assert outcome == (
        f"{verb} ingestion ({action}), asked by <@{ADMIN}>: succeeded: {method} {url}: "
        f"HTTP {status}"
    )
    assert world.slack.responses["cmd"][0]["response_type"] == "in_channel"
    [claim] = await world.actions()
    assert {k: claim[k] for k in ("rule", "step", "action", "target", "status")} == {
        "rule": "manual",
        "step": "manual",
        "action": action,
        "target": target,
        "status": "succeeded",
    }
    assert claim["context"]["labels"] == {
        "alertname": "manual",
        "verb": verb,
        "target": "ingestion",
        "requested_by": f"slack:{ADMIN}",
    }


async def test_the_kill_switch_refuses_a_manual_action_like_any_other(world: World) -> None:
    await world.ask("killswitch on")
    assert (await world.ask("pause ingestion")).startswith("Requested pause of `ingestion`")
    [outcome] = await world.responses()
    assert outcome.startswith(
        f"pause ingestion (pause_sink), asked by <@{ADMIN}>: refused: killswitch: "
        "the kill switch is on"
    )
    assert world.seen(world.connect) == []
    assert [a["status"] for a in await world.actions()] == ["refused"]


async def test_an_unknown_target_names_the_known_ones(world: World) -> None:
    assert await world.ask("pause postgres") == (
        ":warning: unknown target 'postgres' for pause (known: ingestion)"
    )
    assert await world.actions() == []


# -- approvals by command ----------------------------------------------------------------------


async def test_approve_runs_the_waiting_action(world: World) -> None:
    await world.fire("BadFlag", flag="f")
    assert world.seen(world.flags) == []
    assert await world.ask("approve 1") == "Approved rollback_flag on `flags` (approval 1)."
    await world.running.settle()
    assert world.seen(world.flags) == [("PATCH", "/flag")]
    assert [a["status"] for a in await world.actions()] == ["succeeded"]
    assert await world.ask("deny 1") == ":warning: approval 1 is already approved"


async def test_deny_refuses_the_waiting_action_with_the_reason(world: World) -> None:
    await world.fire("BadFlag", flag="f")
    assert await world.ask("deny 1 not during the sale") == (
        "Denied rollback_flag on `flags` (approval 1)."
    )
    await world.running.settle()
    [claim] = await world.actions()
    assert (claim["status"], claim["detail"]) == (
        "refused",
        f"approval: denied by slack:{ADMIN}: not during the sale",
    )
    assert world.seen(world.flags) == []


@pytest.mark.parametrize(
    ("timers_ran", "answer"),
    [
        (True, ":warning: approval 1 is already expired"),
        (False, f":warning: approval 1 expired at {iso(T0 + 1800)}"),
    ],
)
async def test_an_expired_approval_cannot_be_approved(
    world: World, timers_ran: bool, answer: str
) -> None:
    await world.fire("BadFlag", flag="f")
    world.clock.advance(30 * 60)
    if timers_ran:
        await world.later(0)
    assert await world.ask("approve 1") == answer
    await world.running.settle()
    assert world.seen(world.flags) == []


async def test_approving_something_unknown_says_so(world: World) -> None:
    assert await world.ask("approve 99") == ":warning: no approval 99"


# -- ack, mute, unmute, kill switch ------------------------------------------------------------


@pytest.mark.parametrize(("acked", "pages"), [(True, []), (False, [("POST", "/page")])])
async def test_ack_stops_escalate_after_from_paging(
    world: World, acked: bool, pages: list[tuple[str, str]]
) -> None:
    await world.fire("ConnectorDown", connector="sink")
    if acked:
        assert await world.ask("ack 1") == (
            "You own incident 1 now; remediator stops paging it on time."
        )
    await world.later(15 * 60)
    assert world.seen(world.pager) == pages


@pytest.mark.parametrize(
    ("text", "answer"),
    [("ack 99", ":warning: no incident 99"), ("unmute 99", ":warning: no active mute 99")],
)
async def test_ack_and_unmute_of_something_unknown_say_so(
    world: World, text: str, answer: str
) -> None:
    assert await world.ask(text) == answer


async def test_a_target_mute_refuses_manual_actions_until_unmuted(world: World) -> None:
    assert await world.ask("mute connect 2h Connect upgrade") == (
        f"Mute 1 on target `connect` until {iso(T0 + 7200)}."
    )
    await world.ask("restart ingestion")
    [refused] = await world.responses()
    assert refused.startswith(
        f"restart ingestion (restart_sink), asked by <@{ADMIN}>: refused: mute: muted by "
        f"mute 1 (Connect upgrade, by slack:{ADMIN})"
    )
    assert world.seen(world.connect) == []
    assert await world.ask("unmute 1") == "Mute 1 ended."
    await world.ask("restart ingestion")
    _, ran = await world.responses(count=2)
    assert ran.startswith(f"restart ingestion (restart_sink), asked by <@{ADMIN}>: succeeded")
    assert world.seen(world.connect) == [("POST", f"{SINK}/restart")]


async def test_a_rule_mute_refuses_the_rules_actions(world: World) -> None:
    assert await world.ask("mute connector-down 1h flapping") == (
        f"Mute 1 on rule `connector-down` until {iso(T0 + 3600)}."
    )
    await world.fire("ConnectorDown", connector="sink")
    [claim] = await world.actions()
    assert claim["status"] == "refused"
    assert claim["detail"].startswith(f"mute: muted by mute 1 (flapping, by slack:{ADMIN})")
    assert world.seen(world.connect) == []


async def test_a_mute_of_an_unknown_target_names_the_known_ones(world: World) -> None:
    assert await world.ask("mute kafka 1h upgrade") == (
        ":warning: unknown target 'kafka' (known: connect, flags, pager)"
    )


async def test_the_kill_switch_is_set_persisted_and_shown(
    world: World, start_daemon: StartDaemon
) -> None:
    assert await world.ask("killswitch") == "Kill switch is *off*."
    assert await world.ask("killswitch on db migration") == (
        f"Kill switch is *ON* (set by slack:{ADMIN} at {NOW})."
    )
    expected = {
        "on": True,
        "source": "runtime",
        "by": f"slack:{ADMIN}",
        "reason": "db migration",
        "at": NOW,
    }
    assert await world.running.api("/api/v1/killswitch") == expected
    await world.running.daemon.stop()
    again = await start_daemon(world.config, world.clock)
    assert await again.api("/api/v1/killswitch") == expected
    world.running = again
    assert await world.ask("killswitch status", user=ADMIN) == (
        f"Kill switch is *ON* (set by slack:{ADMIN} at {NOW})."
    )
    world.clock.advance(60)
    assert await world.ask("killswitch off") == (
        f"Kill switch is *off* (set by slack:{ADMIN} at {iso(T0 + 60)})."
    )
    assert (await again.api("/api/v1/killswitch"))["on"] is False


# -- buttons -----------------------------------------------------------------------------------


def _button(action_id: str, style: str, text: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "style": style,
        "value": "1",
        "text": {"type": "plain_text", "text": text},
    }


CONFIRM = {
    "title": {"type": "plain_text", "text": "Run a destructive action?"},
    "text": {"type": "mrkdwn", "text": "This runs *rollback_flag* on `flags` now."},
    "confirm": {"type": "plain_text", "text": "Run it"},
    "deny": {"type": "plain_text", "text": "Cancel"},
    "style": "danger",
}


@pytest.mark.parametrize(
    ("alertname", "confirm"),
    [("BadFlag", {"confirm": CONFIRM}), ("Poke", {})],  # destructive: true; approval: required
)
async def test_an_approval_request_carries_approve_and_deny_buttons(
    world: World, alertname: str, confirm: dict[str, Any]
) -> None:
    await world.fire(alertname, flag="f")
    await world.running.daemon.outbox.drain()
    message = world.approval_message()
    assert message.thread_ts is not None  # in the incident's thread
    assert message.blocks[-1] == {
        "type": "actions",
        "block_id": "approval:1",
        "elements": [
            _button("approve", "primary", "Approve") | confirm,
            _button("deny", "danger", "Deny"),
        ],
    }


@pytest.mark.parametrize(
    ("action_id", "verb", "flags", "status"),
    [
        ("approve", "APPROVED", [("PATCH", "/flag")], "succeeded"),
        ("deny", "DENIED", [], "refused"),
    ],
)
async def test_a_click_decides_and_updates_the_message_to_show_who(
    world: World, action_id: str, verb: str, flags: list[tuple[str, str]], status: str
) -> None:
    await world.fire("BadFlag", flag="f")
    await world.click(action_id)
    assert world.seen(world.flags) == flags
    assert [a["status"] for a in await world.actions()] == [status]
    await world.running.daemon.outbox.drain()
    headline = f":ballot_box_with_check: *{verb}: rollback_flag* on `flags`"
    assert world.approval_message().updates[-1] == {
        "text": headline,
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"{headline}\nBy slack:{ONCALL} at {NOW}"},
            }
        ],
        "attachments": [],
    }
    assert world.slack.responses == {}
    assert (await world.requests("interactions"))["ok"] == 1.0


@pytest.mark.parametrize(("first", "then"), [("approve", "deny"), ("deny", "approve")])
async def test_a_click_on_a_decided_approval_says_so(world: World, first: str, then: str) -> None:
    await world.fire("BadFlag", flag="f")
    await world.click(first)
    await world.click(then, user=ADMIN)
    done = "approved" if first == "approve" else "denied"
    assert await world.responses("click") == [f":warning: approval 1 is already {done}"]
    assert world.slack.responses["click"][0]["response_type"] == "ephemeral"
    assert await world.approval_status() == done


async def test_a_click_on_an_expired_approval_says_so(world: World) -> None:
    await world.fire("BadFlag", flag="f")
    await world.later(31 * 60)
    await world.click("approve")
    assert await world.responses("click") == [":warning: approval 1 is already expired"]
    assert world.seen(world.flags) == []
    await world.running.daemon.outbox.drain()
    assert world.approval_message().updates[-1]["text"] == (
        ":ballot_box_with_check: *EXPIRED: rollback_flag* on `flags`"
    )


async def test_a_resolution_cancels_the_request_and_a_late_click_says_so(world: World) -> None:
    await world.fire("BadFlag", flag="f")
    resolved = alert(
        "BadFlag", "resolved", starts_at=STARTS, ends_at=NOW, annotations=None, flag="f"
    )
    assert (await world.running.post_alerts(notification(resolved))).status_code == 200
    await world.running.settle()
    await world.running.daemon.outbox.drain()
    headline = ":ballot_box_with_check: *CANCELLED: rollback_flag* on `flags`"
    because = "the incident resolved before anyone approved"
    update = world.approval_message().updates[-1]
    assert update["text"] == headline
    assert update["blocks"][0]["text"]["text"].startswith(f"{headline}\nBy remediator at {NOW}: ")
    assert because in update["blocks"][0]["text"]["text"]
    await world.click("approve")
    assert await world.responses("click") == [":warning: approval 1 is already cancelled"]
    assert world.seen(world.flags) == []
    assert [a["status"] for a in await world.actions()] == ["skipped"]
    text = (await world.running.client.get("/metrics")).text
    assert "remediator_approvals_pending 0.0" in text
    assert 'remediator_actions_total{kind="http",outcome="skipped"} 1.0' in text


async def test_an_unauthorised_click_is_refused_and_audited(world: World) -> None:
    await world.fire("BadFlag", flag="f")
    await world.click("approve", user=STRANGER)
    assert await world.responses("click") == [":no_entry_sign: You may not approve actions."]
    assert await world.refusals() == [
        (f"slack:{STRANGER}", f"slack:{STRANGER} may not approve", {"verb": "approve"})
    ]
    assert (await world.requests("interactions"))["forbidden"] == 1.0
    assert await world.approval_status() == "pending"
    assert world.seen(world.flags) == []


def _payload(**changes: Any) -> bytes:
    """A click on Approve, with parts of its payload replaced."""
    payload = json.loads(parse_qs(click("approve", "1").decode())["payload"][0]) | changes
    return urlencode({"payload": json.dumps(payload)}).encode()


ACTION = {"action_id": "approve", "block_id": "approval:1", "value": "1", "type": "button"}
NOT_A_CLICK = {"error": "not a block_actions payload"}


@pytest.mark.parametrize(
    ("body", "status", "answer"),
    [
        pytest.param(b"", 400, NOT_A_CLICK, id="no payload"),
        pytest.param(urlencode({"payload": "{no"}).encode(), 400, NOT_A_CLICK, id="not JSON"),
        pytest.param(urlencode({"payload": "[1]"}).encode(), 400, NOT_A_CLICK, id="not an object"),
        pytest.param(_payload(actions=[]), 400, NOT_A_CLICK, id="no actions"),
        pytest.param(_payload(user=ADMIN), 400, NOT_A_CLICK, id="no user object"),
        pytest.param(_payload(actions=[ACTION | {"value": "one"}]), 400, NOT_A_CLICK, id="value"),
        pytest.param(_payload(type="view_submission"), 200, None, id="not block_actions"),
        pytest.param(_payload(actions=[ACTION | {"action_id": "snooze"}]), 200, None, id="button"),
    ],
)
async def test_a_payload_that_is_not_an_approval_click_changes_nothing(
    world: World, body: bytes, status: int, answer: dict[str, str] | None
) -> None:
    """Garbage is a 400; a well-formed payload that is not an approval click is ignored (200)."""
    await world.fire("BadFlag", flag="f")
    r = await world.post("interactions", body)
    assert r.status_code == status
    if answer:
        assert r.json()["error"].startswith(answer["error"])
    else:
        assert r.text == ""
    assert (await world.requests("interactions"))["invalid"] == 1.0
    assert await world.approval_status() == "pending"
    assert world.slack.responses == {}


# -- hardening: whole bodies, replays, escaping, where answers go ------------------------------


async def test_a_signed_body_in_two_segments_is_read_whole(world: World) -> None:
    """A 6 kB interaction arriving in two TCP segments: the signature covers all of it."""
    await world.fire("BadFlag", flag="f")
    body = click("approve", "1", ONCALL, world.slack.response_url("click"))
    body += b"&padding=" + b"x" * (6144 - len(body))
    head = "".join(f"{k}: {v}\r\n" for k, v in signed(body, int(T0)).items())
    request = (
        f"POST /slack/interactions HTTP/1.1\r\nHost: x\r\n{head}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", world.running.daemon.port)
    writer.write(request + body[:3000])
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.write(body[3000:])
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer
    await world.running.settle()
    assert await world.approval_status() == "approved"


async def test_an_over_limit_body_is_a_413_not_a_401(world: World) -> None:
    body = command("status") + b"&padding=" + b"x" * (64 * 1024)
    r = await world.post("commands", body)
    assert r.status_code == 413
    assert r.json() == {"error": "body larger than the limit of 65536 bytes"}


@pytest.mark.parametrize("endpoint", ["commands", "interactions"])
async def test_a_replayed_signed_request_is_refused(world: World, endpoint: str) -> None:
    await world.fire("BadFlag", flag="f")
    body = command("killswitch on") if endpoint == "commands" else click("deny", "1", ONCALL)
    headers = signed(body, int(T0))
    assert (await world.post(endpoint, body, headers)).status_code == 200
    world.clock.advance(60)
    again = await world.post(endpoint, body, headers)
    assert (again.status_code, again.json()) == (
        401,
        {"error": "this signed request was already received (a replay)"},
    )
    assert (await world.requests(endpoint))["unauthorized"] == 1.0


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("approve 9223372036854775808", "usage: /remediate approve <id>"),
        ("ack 99999999999999999999999999", "usage: /remediate ack <incident>"),
        ("unmute 18446744073709551616", "usage: /remediate unmute <id>"),
        ("history 9223372036854775808", "usage: /remediate history [n]"),
    ],
)
async def test_numbers_beyond_64_bits_are_usage_errors(
    world: World, text: str, answer: str
) -> None:
    assert await world.ask(text) == f":warning: {slack_escape(answer)}"


async def test_status_beyond_64_bits_is_not_an_incident(world: World) -> None:
    answer = await world.ask("status 9223372036854775808")
    assert answer.startswith(":warning: unknown target or incident")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"user": {"id": 12}}, "expected strings"),
        ({"user": {"id": ["U0ONCALL"]}}, "expected strings"),
        ({"actions": [ACTION | {"value": "9223372036854775808"}]}, "expected an approval id"),
        ({"response_url": "\ud800"}, "contains a lone surrogate"),
    ],
)
async def test_mistyped_or_oversized_click_fields_are_a_400(
    world: World, payload: dict[str, Any], message: str
) -> None:
    await world.fire("BadFlag", flag="f")
    r = await world.post("interactions", _payload(**payload))
    assert r.status_code == 400
    assert message in r.json()["error"]
    assert await world.approval_status() == "pending"


async def test_slack_replies_escape_labels_reasons_and_errors(world: World) -> None:
    await world.fire("ConnectorDown", connector="<!channel> <https://evil.example|click>")
    status = await world.ask("status")
    assert "<!channel>" not in status
    assert "<https://evil" not in status
    assert "&lt;!channel&gt; &lt;https://evil.example|click&gt;" in status
    await world.ask("mute connect 1h <!here> upgrade")
    target = await world.ask("status connect")
    assert "(&lt;!here&gt; upgrade)" in target
    history = await world.ask("history 50")
    assert "<!" not in history


async def test_a_response_url_outside_slack_gets_nothing(world: World) -> None:
    await world.fire("BadFlag", flag="f")
    # the same live server under another host name: not Slack's, not the configured base_url's
    elsewhere = world.slack.response_url("evil").replace("127.0.0.1", "localhost")
    body = click("approve", "9", ONCALL, elsewhere)
    assert (await world.post("interactions", body)).status_code == 200
    body = click("approve", "9", ONCALL, world.slack.response_url("click"))
    assert (await world.post("interactions", body)).status_code == 200
    answers = await world.responses("click")  # the stand-in's host is the configured base_url's
    assert answers == [":warning: no approval 9"]
    assert "evil" not in world.slack.responses
