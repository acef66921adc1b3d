"""Guardrails, approvals, preconditions and verification through a running daemon.

The clock is fake: escalate-after, cooldowns, windows, approvals and breakers move by advancing it
and running the due timers, never by sleeping. Targets are real HTTP stand-ins on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from remediator.clock import FakeClock, iso
from tests.conftest import API_TOKEN, Running, StartDaemon, base_config
from tests.payloads import alert, notification
from tests.standins import KafkaConnect, Recorder

T0 = 1_795_000_000.0  # 2026-11-19T06:26:40Z; the pager's maintenance window is T0+2h..T0+3h

RULES = """
actions:
  restart_connector:
    kind: http
    target: connect
    path: /connectors/{connector}/restart
    query: {includeTasks: true, onlyFailed: true}
    retries: 0
    precondition:
      http: {target: connect, path: "/connectors/{connector}/status", field: connector.state,
             in: [FAILED, UNASSIGNED]}
    verify:
      http: {target: connect, path: "/connectors/{connector}/status", field: "tasks[*].state",
             in: [RUNNING]}
      every: 10s
      within: 1m
  page_oncall: {kind: http, target: pager, path: /page, retries: 0}
  rollback_flag: {kind: http, target: flags, method: PATCH, path: /flag, retries: 0,
                  destructive: true}
  flip: {kind: http, target: flags, method: PUT, path: /flip, retries: 0,
         budget: {max: 2, per: 1h}}
  poke: {kind: http, target: flags, method: POST, path: /poke, retries: 0}
rules:
  - name: connector-down
    match: '{alertname="ConnectorDown"}'
    incident_key: [alertname, connector]
    cooldown: 30m
    tiers:
      - name: restart
        actions: [restart_connector]
        escalate_after: 15m
      - name: page
        actions: [page_oncall]
  - name: flag
    match: '{alertname="BadFlag"}'
    incident_key: [alertname, flag]
    tiers:
      - actions: [rollback_flag]
  - name: flip
    match: '{alertname="Flip"}'
    incident_key: [alertname, n]
    tiers:
      - actions: [flip]
  - name: poke
    match: '{alertname="Poke"}'
    incident_key: [alertname, n]
    tiers:
      - actions: [poke]
  - name: rehearsal
    match: '{alertname="Rehearsal"}'
    dry_run: true
    tiers:
      - actions: [page_oncall]
"""


class World:
    """A daemon on a fake clock, its stand-ins, and shortcuts."""

    def __init__(
        self,
        running: Running,
        clock: FakeClock,
        connect: KafkaConnect,
        pager: Recorder,
        flags: Recorder,
    ) -> None:
        self.running, self.clock = running, clock
        self.connect, self.pager, self.flags = connect, pager, flags

    async def fire(
        self,
        name: str,
        status: str = "firing",
        starts_at: str = "2026-11-22T09:00:00Z",
        **labels: str,
    ) -> None:
        r = await self.running.post_alerts(
            notification(
                alert(name, status, starts_at=starts_at, ends_at=None, annotations=None, **labels)
            )
        )
        assert r.status_code == 200, r.text
        await self.running.settle()

    async def later(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.running.daemon.timers.run_due()
        await self.running.settle()

    async def actions(self) -> list[dict[str, Any]]:
        return list(reversed((await self.running.api("/api/v1/actions?limit=500"))["items"]))

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = await self.running.client.request(
            method, f"/api/v1{path}", json=body, headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
        return r.status_code, r.json()

    def restarts(self, connector: str = "sink") -> int:
        return sum(
            1
            for s in self.connect.server.seen
            if s.method == "POST" and s.path == f"/connectors/{connector}/restart"
        )


@pytest.fixture
async def world(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    kafka_connect: KafkaConnect,
    recorder: Callable[..., Awaitable[Recorder]],
) -> World:
    from tests.standins import Connector

    kafka_connect.connectors.update({c: Connector("FAILED", ["FAILED"]) for c in ("sink", "src")})
    pager, flags = await recorder(), await recorder()
    config = write_config(
        base_config(
            {
                "connect": kafka_connect.server.url,
                "pager": pager.server.url,
                "flags": flags.server.url,
            },
            "rule_files: [rules.yaml]\n"
            "guardrails: {approval_timeout: 30m, circuit_breaker: {failures: 3, within: 10m, "
            "open_for: 5m}}\n"
            "maintenance_windows:\n"
            f"  - {{name: db-upgrade, start: '{iso(T0 + 7200)}', end: '{iso(T0 + 10800)}', "
            "targets: [pager]}\n",
        ),
        rules=RULES,
    )
    clock = FakeClock(T0)
    running = await start_daemon(config, clock)
    return World(running, clock, kafka_connect, pager, flags)


# -- the happy path, with precondition and verification ---------------------------------------


async def test_a_restart_checks_its_precondition_acts_and_verifies(world: World) -> None:
    await world.fire("ConnectorDown", connector="sink")
    [action] = await world.actions()
    assert (action["status"], action["verify_status"]) == ("succeeded", "pending")
    await world.later(10)  # the first verification poll
    [action] = await world.actions()
    assert action["verify_status"] == "passed"
    assert "tasks[*].state is 'RUNNING'" in action["verify_detail"]
    gets = [s.path for s in world.connect.server.seen if s.method == "GET"]
    assert gets == ["/connectors/sink/status", "/connectors/sink/status"]
    audit = await world.running.daemon.store.audit_after(0, 100)
    [verified] = [e.message for e in audit if e.event == "verified"]
    assert verified == "restart_connector: verified: tasks[*].state is 'RUNNING'"


async def test_a_failed_precondition_is_recorded_and_not_retried(world: World) -> None:
    world.connect.connectors["sink"].state = "RUNNING"  # somebody fixed it already
    await world.fire("ConnectorDown", connector="sink")
    [action] = await world.actions()
    assert action["status"] == "precondition_failed"
    assert "connector.state is 'RUNNING', not in ['FAILED', 'UNASSIGNED']" in action["detail"]
    assert world.restarts() == 0
    await world.later(60)
    assert world.restarts() == 0


async def test_a_failed_verification_escalates_to_the_next_tier(world: World) -> None:
    world.connect.restart_outcome = "FAILED"  # the restart does not help
    await world.fire("ConnectorDown", connector="sink")
    for _ in range(6):
        await world.later(10)
    statuses = [(a["action"], a["status"], a["verify_status"]) for a in await world.actions()]
    assert statuses == [
        ("restart_connector", "succeeded", "failed"),
        ("page_oncall", "succeeded", None),
    ]
    [incident] = (await world.running.api("/api/v1/incidents"))["items"]
    assert incident["tier_name"] == "page"


async def test_escalate_after_moves_a_still_firing_incident_up(world: World) -> None:
    world.connect.restart_outcome = "RUNNING"
    await world.fire("ConnectorDown", connector="sink")
    await world.later(14 * 60)
    assert len(world.pager.server.seen) == 0
    await world.later(60)  # 15 minutes at tier "restart"
    assert len(world.pager.server.seen) == 1
    text = (await world.running.client.get("/metrics")).text
    assert 'remediator_escalations_total{cause="time",rule="connector-down"} 1.0' in text


# -- guardrails ------------------------------------------------------------------------------


async def test_the_kill_switch_refuses_and_persists(world: World) -> None:
    status, body = await world.call(
        "PUT", "/killswitch", {"on": True, "reason": "db migration", "by": "alice"}
    )
    assert (status, body["on"], body["by"], body["source"]) == (200, True, "api:alice", "runtime")
    await world.fire("ConnectorDown", connector="sink")
    [action] = await world.actions()
    assert action["status"] == "refused"
    assert action["detail"].startswith("killswitch: the kill switch is on")
    assert world.restarts() == 0
    text = (await world.running.client.get("/metrics")).text
    assert 'remediator_guardrail_refusals_total{guardrail="killswitch"} 1.0' in text
    assert "remediator_killswitch_engaged 1.0" in text
    await world.call("PUT", "/killswitch", {"on": False})
    await world.fire("ConnectorDown", connector="src")
    assert world.restarts("src") == 1


async def test_dry_run_records_what_it_would_have_done(world: World) -> None:
    await world.fire("Rehearsal", team="x")
    [action] = await world.actions()
    assert action["status"] == "dry_run"
    assert action["detail"] == f"dry-run: would have POST {world.pager.server.url}/page"
    assert world.pager.server.seen == []


async def test_a_mute_refuses_until_it_is_ended(world: World) -> None:
    status, mute = await world.call(
        "POST",
        "/mutes",
        {"target": "connect", "duration": "2h", "reason": "Connect upgrade", "by": "bob"},
    )
    assert (status, mute["id"], mute["active"]) == (201, 1, True)
    await world.fire("ConnectorDown", connector="sink")
    [action] = await world.actions()
    assert action["status"] == "refused"
    assert action["detail"].startswith("mute: muted by mute 1 (Connect upgrade, by api:bob)")
    status, _ = await world.call("DELETE", "/mutes/1", {"by": "bob"})
    assert status == 200
    await world.fire("ConnectorDown", connector="src")
    assert world.restarts("src") == 1


async def test_a_mute_by_label_matchers_expires(world: World) -> None:
    await world.call(
        "POST",
        "/mutes",
        {"matchers": '{connector="sink"}', "duration": "10m", "reason": "known issue"},
    )
    await world.fire("ConnectorDown", connector="sink")
    await world.fire("ConnectorDown", connector="src")
    assert (world.restarts("sink"), world.restarts("src")) == (0, 1)
    await world.later(11 * 60)
    _, mutes = await world.call("GET", "/mutes")
    assert mutes["items"] == []
    await world.fire("ConnectorDown", "resolved", connector="sink")
    await world.fire("ConnectorDown", connector="sink", starts_at="2026-11-22T10:00:00Z")
    assert world.restarts("sink") == 1  # other keys of the rule are not in its cooldown


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"duration": "1h", "reason": "x"}, 400, "a mute names a rule, a target or label matchers"),
        ({"target": "nope", "duration": "1h", "reason": "x"}, 400, "unknown target 'nope'"),
        ({"rule": "nope", "duration": "1h", "reason": "x"}, 400, "unknown rule 'nope'"),
        ({"matchers": '{a=~"("}', "duration": "1h", "reason": "x"}, 400, "matchers: "),
        ({"target": "connect", "duration": "soon", "reason": "x"}, 400, "duration: "),
        ({"target": "connect", "duration": "1h", "reason": " "}, 400, "a mute needs a reason"),
        ({"target": "connect", "duration": "90d", "reason": "x"}, 400, "duration must be"),
    ],
)
async def test_bad_mutes_are_refused_clearly(
    world: World, body: dict[str, Any], status: int, message: str
) -> None:
    got, answer = await world.call("POST", "/mutes", body)
    assert got == status
    assert answer["error"].startswith(message)


async def test_a_maintenance_window_holds_actions_until_it_ends(world: World) -> None:
    world.connect.restart_outcome = "FAILED"
    await world.later(2 * 3600 + 60)  # inside the window on the pager
    await world.fire("ConnectorDown", connector="sink")
    await world.later(15 * 60)  # escalate-after: page, but the pager is in maintenance
    page = next(a for a in await world.actions() if a["action"] == "page_oncall")
    assert page["status"] == "held"
    assert "maintenance window 'db-upgrade'" in page["detail"]
    assert world.pager.server.seen == []
    await world.later(3600)  # the window ended
    page = next(a for a in await world.actions() if a["action"] == "page_oncall")
    assert page["status"] == "succeeded"
    assert len(world.pager.server.seen) == 1


async def test_cooldown_keeps_another_incident_off_the_same_target(world: World) -> None:
    await world.fire("ConnectorDown", connector="sink")
    await world.fire("ConnectorDown", "resolved", connector="sink")
    await world.later(10 * 60)
    world.connect.connectors["sink"].state = "FAILED"  # it failed again
    await world.fire("ConnectorDown", connector="sink", starts_at="2026-11-22T10:00:00Z")
    refused = (await world.actions())[-1]
    assert refused["status"] == "refused"
    assert refused["detail"] == (
        "cooldown: rule 'connector-down' acted on 'connect' for this "
        "incident key 10m ago; cooldown has 20m left"
    )
    await world.fire(
        "ConnectorDown", "resolved", connector="sink", starts_at="2026-11-22T10:00:00Z"
    )
    await world.later(21 * 60)
    await world.fire("ConnectorDown", connector="sink", starts_at="2026-11-22T11:00:00Z")
    assert world.restarts() == 2


async def test_a_budget_caps_runs_per_window(world: World) -> None:
    for n in range(3):
        await world.fire("Flip", n=str(n))
    outcomes = [a["status"] for a in await world.actions()]
    assert outcomes == ["succeeded", "succeeded", "refused"]
    assert (await world.actions())[-1]["detail"] == (
        "budget: budget for flip spent: 2 actions in the last 1h (at most 2)"
    )
    await world.later(3600)
    await world.fire("Flip", n="3")
    assert [a["status"] for a in await world.actions()][-1] == "succeeded"


async def test_a_budget_holds_for_claims_judged_at_the_same_moment(world: World) -> None:
    flips = [alert("Flip", n=str(n)) for n in range(5)]
    r = await world.running.post_alerts(notification(*flips))  # one batch: five claims at once
    assert r.status_code == 200, r.text
    await world.running.settle()
    outcomes = sorted(a["status"] for a in await world.actions())
    assert outcomes == ["refused", "refused", "refused", "succeeded", "succeeded"]


async def test_an_action_waiting_for_its_target_is_skipped_if_its_incident_resolves(
    world: World,
) -> None:
    world.flags.delay = 0.5
    running = world.running
    await running.post_alerts(notification(alert("Poke", n="1")))  # busy on flags for 0.5 s
    await running.daemon.engine.idle()
    await running.post_alerts(notification(alert("Poke", n="2")))  # waits for flags
    await running.daemon.engine.idle()
    await asyncio.sleep(0.1)
    await running.post_alerts(notification(alert("Poke", "resolved", n="2")))
    await running.settle()
    pokes = {a["context"]["labels"]["n"]: a for a in await world.actions()}
    assert pokes["1"]["status"] == "succeeded"
    assert pokes["2"]["status"] == "skipped"
    assert "resolved before the action started" in pokes["2"]["detail"]
    assert len(world.flags.server.seen) == 1


async def test_an_undo_is_not_held_to_budgets(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    recorder: Callable[..., Awaitable[Recorder]],
) -> None:
    """The global budget is spent by the pauses; the resumes still run: a budget caps
    remediation and must never leave a service paused."""
    target = await recorder()
    rules = """
    actions:
      pause: {kind: http, target: t, method: PUT, path: /pause, retries: 0}
      resume: {kind: http, target: t, method: PUT, path: /resume, retries: 0}
    rules:
      - name: r
        match: '{alertname="X"}'
        incident_key: [alertname, n]
        tiers: [{actions: [pause]}]
        on_resolved: [{action: resume, if_ran: [pause]}]
    """
    config = write_config(
        base_config(
            {"t": target.server.url},
            "rule_files: [r.yaml]\nguardrails: {budget: {max: 2, per: 1h}}\n",
        ),
        r=rules,
    )
    running = await start_daemon(config, FakeClock(T0))
    for n in ("1", "2"):
        await running.post_alerts(notification(alert("X", n=n)))
        await running.settle()
    for n in ("1", "2"):
        await running.post_alerts(notification(alert("X", "resolved", n=n)))
        await running.settle()
    assert [s.path for s in target.server.seen] == ["/pause", "/pause", "/resume", "/resume"]


async def test_one_action_at_a_time_per_target(world: World) -> None:
    world.pager.delay = 0.3
    running = world.running
    await running.post_alerts(notification(alert("Rehearsal", team="a")))  # dry-run, no call
    bodies = [notification(alert("ConnectorDown", connector=c)) for c in ("sink", "src")]
    world.connect.restart_outcome = "FAILED"
    for body in bodies:
        await running.post_alerts(body)
    await running.settle()
    await world.later(15 * 60)  # both escalate to the pager at once
    pages = [
        a
        for a in await world.actions()
        if a["action"] == "page_oncall" and a["rule"] == "connector-down"
    ]
    assert [p["status"] for p in pages] == ["succeeded", "succeeded"]
    first, second = sorted(pages, key=lambda p: p["started_at"])
    assert second["started_at"] >= first["finished_at"]  # never overlapping on one target
    seen = world.pager.server.seen
    assert seen[1].at - seen[0].at >= 0.3


async def test_the_circuit_breaker_opens_lets_one_through_and_closes(world: World) -> None:
    world.flags.status = 500
    for n in range(3):
        await world.fire("Poke", n=str(n))
        await world.later(60)
    await world.fire("Poke", n="3")
    last = (await world.actions())[-1]
    assert last["status"] == "refused"
    assert last["detail"].startswith(
        "circuit_breaker: circuit open for 'flags': 3 failed actions; next attempt allowed in 4m"
    )
    metrics = (await world.running.client.get("/metrics")).text
    assert 'remediator_circuit_open{target="flags"} 1.0' in metrics
    assert len(world.flags.server.seen) == 3
    await world.later(4 * 60)
    _, circuits = await world.call("GET", "/circuits")
    flags = next(c for c in circuits["items"] if c["target"] == "flags")
    assert (flags["state"], flags["failures"]) == ("half_open", 3)
    await world.fire("Poke", n="4")  # the half-open probe fails: open again
    await world.fire("Poke", n="5")
    assert [a["status"] for a in await world.actions()][-2:] == ["failed", "refused"]
    await world.later(5 * 60)
    world.flags.status = 200
    await world.fire("Poke", n="6")  # half-open again; the probe succeeds: closed
    await world.fire("Poke", n="7")
    assert [a["status"] for a in await world.actions()][-2:] == ["succeeded", "succeeded"]
    metrics = (await world.running.client.get("/metrics")).text
    assert 'remediator_circuit_open{target="flags"} 0.0' in metrics


async def test_an_operator_can_close_an_open_circuit(world: World) -> None:
    world.flags.status = 500
    for n in range(3):
        await world.fire("Poke", n=str(n))
    await world.fire("Poke", n="x")
    assert (await world.actions())[-1]["status"] == "refused"
    status, _ = await world.call("POST", "/circuits/flags/reset", {"by": "carol"})
    assert status == 200
    _, circuits = await world.call("GET", "/circuits")
    assert next(c for c in circuits["items"] if c["target"] == "flags")["state"] == "closed"
    world.flags.status = 200
    await world.fire("Poke", n="y")
    assert (await world.actions())[-1]["status"] == "succeeded"
    status, body = await world.call("POST", "/circuits/nope/reset", {})
    assert (status, body) == (404, {"error": "unknown target 'nope'"})


# -- approvals -------------------------------------------------------------------------------


async def test_a_destructive_action_waits_for_approval_then_runs(world: World) -> None:
    await world.fire("BadFlag", flag="ingestion_v2")
    [action] = await world.actions()
    assert action["status"] == "awaiting_approval"
    assert world.flags.server.seen == []
    _, pending = await world.call("GET", "/approvals")
    [approval] = pending["items"]
    assert (approval["action"], approval["status"]) == ("rollback_flag", "pending")
    assert approval["request"]["url"] == f"{world.flags.server.url}/flag"
    status, decided = await world.call(
        "POST", f"/approvals/{approval['id']}", {"decision": "approve", "by": "dana"}
    )
    assert (status, decided["status"], decided["decided_by"]) == (200, "approved", "api:dana")
    await world.running.settle()
    assert [a["status"] for a in await world.actions()] == ["succeeded"]
    assert len(world.flags.server.seen) == 1
    status, again = await world.call("POST", f"/approvals/{approval['id']}", {"decision": "deny"})
    assert (status, again["error"]) == (409, f"approval {approval['id']} is already approved")


async def test_a_denied_approval_never_runs(world: World) -> None:
    await world.fire("BadFlag", flag="f")
    status, _ = await world.call(
        "POST", "/approvals/1", {"decision": "deny", "reason": "not now", "by": "erin"}
    )
    assert status == 200
    await world.running.settle()
    [action] = await world.actions()
    assert (action["status"], action["detail"]) == (
        "refused",
        "approval: denied by api:erin: not now",
    )
    assert world.flags.server.seen == []


async def test_an_expired_approval_never_runs(world: World) -> None:
    await world.fire("BadFlag", flag="f")
    await world.later(31 * 60)
    [action] = await world.actions()
    assert action["status"] == "refused"
    assert "expired unanswered" in action["detail"]
    status, body = await world.call("POST", "/approvals/1", {"decision": "approve"})
    assert (status, body["error"]) == (409, "approval 1 is already expired")
    assert world.flags.server.seen == []
    text = (await world.running.client.get("/metrics")).text
    assert "remediator_approvals_pending 0.0" in text


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/approvals/99", {"decision": "approve"}, 404, "no approval 99"),
        ("/approvals/1", {"decision": "maybe"}, 400, "decision: expected"),
        ("/approvals/x", {"decision": "approve"}, 400, "the id in the path must be an integer"),
        ("/killswitch", {"on": "yes"}, 400, "on: expected true or false"),
    ],
)
async def test_bad_operator_requests_get_a_clear_4xx(
    world: World, path: str, body: dict[str, Any], status: int, message: str
) -> None:
    method = "PUT" if path == "/killswitch" else "POST"
    got, answer = await world.call(method, path, body)
    assert got == status
    assert answer["error"].startswith(message)


async def test_settle_helper_is_not_racing_the_timers(world: World) -> None:
    """run_due waits for the engine, so a tick's claims are visible right after it."""
    world.connect.restart_outcome = "RUNNING"
    await world.fire("ConnectorDown", connector="sink")
    world.clock.advance(15 * 60)
    await asyncio.gather(
        world.running.daemon.timers.run_due(), world.running.daemon.timers.run_due()
    )
    await world.running.settle()
    assert len(world.pager.server.seen) == 1


async def test_claims_waiting_for_a_busy_target_are_queued_not_tasks(world: World) -> None:
    """Found by the soak (bench/soak.py): a task per claim waiting for its target, bursts of
    5,702 of them. Twenty pokes of one slow target: one claim in flight, nineteen queued."""
    world.flags.delay = 0.3
    alerts = [alert("Poke", ends_at=None, annotations=None, n=str(n)) for n in range(20)]
    assert (await world.running.post_alerts(notification(*alerts))).status_code == 200
    await world.running.daemon.engine.idle()
    async with asyncio.timeout(10):
        while not world.flags.server.seen:
            await asyncio.sleep(0.01)
    claims = [t for t in asyncio.all_tasks() if t.get_name().startswith("claim-")]
    assert (len(claims), world.running.daemon.executor.queued()) == (1, 19)
    world.flags.delay = 0.0
    await world.running.settle()
    assert [a["status"] for a in await world.actions()] == ["succeeded"] * 20
    assert len(world.flags.server.seen) == 20


async def test_one_at_a_time_by_a_label_runs_lanes_of_one_target_side_by_side(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    recorder: Callable[..., Awaitable[Recorder]],
) -> None:
    target = await recorder()
    target.delay = 1.5
    rules = """
    actions:
      restart: {kind: http, target: t, method: POST, path: "/restart/{connector}/{task}",
                retries: 0, timeout: 10s}
    rules:
      - name: r
        match: '{alertname="Down"}'
        incident_key: [alertname, connector, task]
        one_at_a_time_by: [connector]
        tiers: [{actions: [restart]}]
    """
    config = write_config(base_config({"t": target.server.url}, "rule_files: [r.yaml]\n"), r=rules)
    running = await start_daemon(config, FakeClock(T0))
    alerts = [alert("Down", connector=c, task=t) for c, t in (("a", "1"), ("a", "2"), ("b", "1"))]
    await running.post_alerts(notification(*alerts))
    async with asyncio.timeout(1.2):  # within the first request's 1.5 s: two lanes at once
        while len(target.server.seen) < 2:
            await asyncio.sleep(0.02)
    assert sorted(s.path for s in target.server.seen) == ["/restart/a/1", "/restart/b/1"]
    await running.settle()
    assert target.server.seen[-1].path == "/restart/a/2"  # its lane's turn came after a/1's
