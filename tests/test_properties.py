"""Issue 3's guarantees as properties of the real daemon, over random sequences of steps.

Each example builds a Daemon on a FakeClock with a SQLite store in a temporary directory and two
HTTP stand-ins on 127.0.0.1, then plays a random sequence of steps: notifications (firing,
resolved, and stale firings of resolved alerts), clock moves, due timers, restarts, the kill
switch, mutes, approvals and failing targets. After every step it waits until the engine and the
executor are idle. Then it checks what the stand-ins RECEIVED, each request carrying its claim's
Idempotency-Key and stamped with the step and the fake time it arrived at, against the steps and
the store:

(a) every request belongs to exactly one claim, and one run of it: at most 1 + retries requests,
    all in one step;
(b) claims starting within any hour never exceed the global budget or the action's budget;
(c) nothing arrives while the kill switch is on, inside a matching mute or inside the
    maintenance window;
(d) a claim that needs approval acts only once a human approved it in time; never after its
    approval expired or was denied;
(e) no firing step acts for an incident that had resolved, and a stale firing of a resolved
    alert acts on nothing;
(f) two incidents of one rule and key act on a target at least the rule's cooldown apart;
(g) once an incident resolved, no approval of a firing step of it is left pending (checked after
    every step: nobody is asked to approve what can no longer run).

The real APScheduler is stopped after each start: with a fake clock, timers run when a step
says so (`timers.run_due()`), which is what the scheduler does when they come due.

Explicit examples pin histories that push a guardrail to its limit or carry its state over a
restart, so they run every time. The harness tests below show the checks see a known history
and fail on a tampered one; the last test pins a race that quiescent steps cannot express.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from hypothesis import HealthCheck, event, example, given, settings, target
from hypothesis import strategies as st

from remediator.clock import FakeClock, iso
from remediator.config import load_config
from remediator.errors import ControlError
from remediator.guardrails import Verdict
from remediator.server import Daemon
from remediator.store.records import (
    OUTLIVE_RESOLUTION,
    RESOLVED_STEP,
    MuteRow,
    TargetHistory,
)
from remediator.trust import default_tls
from tests.payloads import alert, notification
from tests.standins import Recorder

Judge = Callable[[TargetHistory, list[MuteRow]], Verdict | None]

T0 = datetime(2026, 11, 28, tzinfo=UTC).timestamp()
HOUR = 3600.0
WINDOW = (T0 + 1800.0, T0 + 5400.0)  # the maintenance window, in fake time
GLOBAL_BUDGET = 4  # per hour
ACTION_BUDGETS = {"pause": 2}  # per hour
COOLDOWN = {"errors": 600.0, "lag": 900.0}
RETRIES = {"pause": 1, "rollback": 0, "resume": 0, "restart": 0, "page": 0}
ROUTES = {
    "pause": ("PUT", "/pause/"),
    "rollback": ("POST", "/rollback/"),
    "resume": ("PUT", "/resume/"),
    "restart": ("POST", "/restart/"),
    "page": ("POST", "/page/"),
}
ALERTNAMES = {"errors": "ErrorRate", "lag": "ConsumerLag"}

CONFIG = """
store: {sqlite: {path: "@DB@"}}
targets:
  svc: {url: "@SVC@", circuit_breaker: {failures: 2, within: 10m, open_for: 15m}}
  ops: {url: "@OPS@"}
guardrails:
  budget: {max: 4, per: 1h}
  approval_timeout: 20m
  circuit_breaker: {failures: 3, within: 30m, open_for: 10m}
maintenance_windows:
  - {name: upgrade, start: "@START@", end: "@END@"}
actions:
  pause:
    kind: http
    target: svc
    method: PUT
    path: "/pause/{service}"
    retries: 1
    backoff: {initial: 1ms, max: 1ms}
    budget: {max: 2, per: 1h}
    verify:
      http: {target: svc, path: "/status/{service}", field: ok, in: ["true"]}
      every: 1m
      within: 3m
  rollback:
    kind: http
    target: svc
    method: POST
    path: "/rollback/{service}"
    retries: 0
    destructive: true
  resume: {kind: http, target: svc, method: PUT, path: "/resume/{service}", retries: 0}
  restart: {kind: http, target: ops, method: POST, path: "/restart/{service}", retries: 0}
  page: {kind: http, target: ops, method: POST, path: "/page/{service}", retries: 0}
rules:
  - name: errors
    match: '{alertname="ErrorRate"}'
    incident_key: [alertname, service]
    value: {annotation: rate}
    cooldown: 10m
    tiers:
      - {name: notify, when: "> 5%", escalate_after: 10m}
      - {name: pause, when: "> 10%", actions: [pause], escalate_after: 20m}
      - {name: rollback, when: "> 20%", actions: [rollback]}
    on_resolved:
      - {action: resume, if_ran: [pause]}
  - name: lag
    match: '{alertname="ConsumerLag"}'
    incident_key: [alertname, service]
    cooldown: 15m
    during_maintenance: drop
    tiers:
      - {name: restart, actions: [restart], escalate_after: 15m}
      - {name: page, actions: [page], repeats: {count: 3, within: 1h}, approval: required}
"""


def needs_approval(rule: str, step: str, action: str) -> bool:
    return action == "rollback" or (rule, step) == ("lag", "page")


# -- steps -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fire:
    kind: str  # errors | lag
    service: str
    rate: str
    episode: str  # same: the alert as last sent; new: a new startsAt; stale: a resolved one


@dataclass(frozen=True)
class Storm:
    """Every service's alert of one kind firing in one notification: claims that race."""

    kind: str
    rate: str


@dataclass(frozen=True)
class Resolve:
    kind: str
    service: str


@dataclass(frozen=True)
class Flap:
    """Resolved, then firing again: a new incident of the same key (cooldowns, repeats)."""

    kind: str
    service: str
    rate: str


@dataclass(frozen=True)
class Advance:
    seconds: float


@dataclass(frozen=True)
class RunDue:
    pass


@dataclass(frozen=True)
class Restart:
    pass


@dataclass(frozen=True)
class Killswitch:
    on: bool


@dataclass(frozen=True)
class AddMute:
    rule: str | None
    target: str | None
    service: str | None
    seconds: float


@dataclass(frozen=True)
class EndMute:
    pick: int


@dataclass(frozen=True)
class Decide:
    pick: int
    approve: bool


@dataclass(frozen=True)
class Fail:
    target: str
    times: int


Step = (
    Fire
    | Storm
    | Resolve
    | Flap
    | Advance
    | RunDue
    | Restart
    | Killswitch
    | AddMute
    | EndMute
    | Decide
    | Fail
)

KINDS = st.sampled_from(("errors", "lag"))
SERVICES = ("a", "b", "c")
RATES = st.sampled_from(("12%", "25%", "6%", "12%", "3%"))  # hypothesis prefers the first
FIRE = st.builds(
    Fire, KINDS, st.sampled_from(SERVICES), RATES, st.sampled_from(("new", "same", "new", "stale"))
)
MUTE_SCOPES: tuple[tuple[str | None, str | None, str | None], ...] = (
    ("errors", None, None),
    ("lag", None, None),
    (None, "svc", None),
    (None, "ops", None),
    (None, None, "a"),
    ("errors", None, "b"),
    (None, "ops", "a"),
)
ADVANCE = st.builds(Advance, st.sampled_from((60.0, 300.0, 600.0, 900.0, 1200.0, 3600.0)))
MUTE = st.builds(
    lambda scope, seconds: AddMute(scope[0], scope[1], scope[2], seconds),
    st.sampled_from(MUTE_SCOPES),
    st.sampled_from((300.0, 1200.0, 3600.0)),
)
WEIGHTED: list[tuple[int, st.SearchStrategy[Step]]] = [
    (6, FIRE),
    (2, st.builds(Storm, KINDS, RATES)),
    (3, st.builds(Resolve, KINDS, st.sampled_from(SERVICES))),
    (2, st.builds(Flap, KINDS, st.sampled_from(SERVICES), RATES)),
    (3, ADVANCE),
    (2, st.just(RunDue())),
    (2, st.builds(Decide, st.integers(0, 3), st.just(True))),
    (1, st.builds(Decide, st.integers(0, 3), st.booleans())),
    (2, st.just(Restart())),
    (2, st.builds(Killswitch, st.booleans())),
    (2, MUTE),
    (1, st.builds(EndMute, st.integers(0, 3))),
    (1, st.builds(Fail, st.sampled_from(("svc", "ops")), st.integers(1, 3))),
]
STEPS: st.SearchStrategy[Step] = st.sampled_from(
    [strategy for weight, strategy in WEIGHTED for _ in range(weight)]
).flatmap(lambda strategy: strategy)


# -- the world: a daemon, its stand-ins, and what the steps did ----------------------------------


@dataclass(frozen=True, order=True)
class Hit:
    """One request a stand-in received on behalf of a claim."""

    step: int
    at: float  # fake time
    key: str  # Idempotency-Key
    method: str
    path: str


class Target(Recorder):
    """A Recorder that stamps each action request with the step and the fake time."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.step = 0
        self.hits: list[Hit] = []
        self.gate: asyncio.Event | None = None  # set: answers wait until it is set

    async def handle(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            self.hits.append(Hit(self.step, self.clock.now(), key, request.method, request.path))
        if self.gate is not None:
            await self.gate.wait()
        return await super().handle(request)


@dataclass
class ModelMute:
    id: int
    rule: str | None
    target: str | None
    service: str | None
    step: int
    until: float
    ended: int | None = None

    def covers(self, claim: ClaimRow, hit: Hit) -> bool:
        return (
            self.step < hit.step
            and (self.ended is None or hit.step < self.ended)
            and hit.at < self.until
            and self.rule in (None, claim.rule)
            and self.target in (None, claim.target)
            and self.service in (None, claim.service)
        )


@dataclass(frozen=True)
class ClaimRow:
    id: int
    incident_id: int
    step: str
    action: str
    rule: str
    target: str
    key: str
    status: str
    detail: str
    service: str


@dataclass
class World:
    directory: Path
    clock: FakeClock = field(default_factory=lambda: FakeClock(T0))
    step: int = 0
    killswitch: bool = False
    killswitch_steps: set[int] = field(default_factory=set)
    mutes: list[ModelMute] = field(default_factory=list)
    approved: dict[int, int] = field(default_factory=dict)  # approval id -> step
    live: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # firing startsAt
    resolved: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    stale_steps: set[int] = field(default_factory=set)
    resolved_at_step: dict[int, int] = field(default_factory=dict)  # incident -> step
    claims_after: dict[int, int] = field(default_factory=dict)  # step -> claims in the store
    episodes: itertools.count[int] = field(default_factory=itertools.count)
    summary: list[str] = field(default_factory=list)  # for hypothesis' statistics
    acted: int = 0
    claim_rows: list[ClaimRow] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.svc, self.ops = Target(self.clock), Target(self.clock)
        self.db = self.directory / "remediator.db"

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        await self.svc.server.start()
        await self.ops.server.start()
        text = (
            CONFIG.replace("@DB@", str(self.db))
            .replace("@SVC@", self.svc.server.url)
            .replace("@OPS@", self.ops.server.url)
            .replace("@START@", str(iso(WINDOW[0])))
            .replace("@END@", str(iso(WINDOW[1])))
        )
        path = self.directory / "remediator.yaml"
        path.write_text(text)
        self.config = load_config(path)
        await self.start_daemon()
        self.reader = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)

    async def close(self) -> None:
        self.reader.close()
        await self.stop_daemon()
        await self.svc.server.stop()
        await self.ops.server.stop()

    async def start_daemon(self) -> None:
        self.daemon = Daemon(self.config, clock=self.clock)
        await self.daemon.start("127.0.0.1", 0)
        await self.daemon.timers.stop()  # timers run when a step says so
        self.client = httpx.AsyncClient(
            verify=default_tls(), base_url=f"http://127.0.0.1:{self.daemon.port}"
        )

    async def stop_daemon(self) -> None:
        await self.client.aclose()
        await self.daemon.stop()

    # -- steps ---------------------------------------------------------------------------------

    async def play(self, steps: Sequence[Step]) -> None:
        for n, step in enumerate(steps, start=1):
            self.step = self.svc.step = self.ops.step = n
            await self.apply(step)
            for _ in range(2):  # a failed verification hands the engine new work
                await self.daemon.engine.idle()
                await self.daemon.executor.idle()
            if self.killswitch:
                self.killswitch_steps.add(n)
            self.observe(n)

    async def apply(self, step: Step) -> None:
        control = self.daemon.control
        match step:
            case Fire():
                await self.post([self.firing(step)])
            case Storm(kind, rate):
                await self.post([self.firing(Fire(kind, s, rate, "same")) for s in SERVICES])
            case Resolve():
                await self.resolve(step)
            case Flap(kind, service, rate):
                await self.resolve(Resolve(kind, service))
                await self.post([self.firing(Fire(kind, service, rate, "new"))])
            case Advance(seconds):
                self.clock.advance(seconds)
            case RunDue():
                await self.daemon.timers.run_due()
            case Restart():
                await self.stop_daemon()
                await self.start_daemon()
            case Killswitch(on):
                await control.set_killswitch(on, "tester", "property test")
                self.killswitch = on
            case AddMute():
                await self.add_mute(step)
            case EndMute(pick):
                now = self.clock.now()
                active = [m for m in self.mutes if m.ended is None and now < m.until]
                if active:
                    mute = active[pick % len(active)]
                    await control.end_mute(mute.id, "tester")
                    mute.ended = self.step
            case Decide():
                await self.decide(step)
            case Fail(target, times):
                (self.svc if target == "svc" else self.ops).script.extend([500] * times)

    def firing(self, step: Fire) -> dict[str, object]:
        """The alert a step sends; the model notes its episode and whether it is stale."""
        key = (step.kind, step.service)
        live, resolved = self.live.setdefault(key, []), self.resolved.setdefault(key, [])
        if step.episode == "stale" and resolved:
            starts = resolved[-1]
        elif step.episode == "new" or not live:
            starts = T0 - 1000.0 + next(self.episodes)  # unique and increasing
            live.append(starts)
        else:
            starts = live[-1]
        if starts in resolved:
            self.stale_steps.add(self.step)
        annotations = {"rate": step.rate} if step.kind == "errors" else {}
        return alert(
            ALERTNAMES[step.kind],
            starts_at=str(iso(starts)),
            annotations=annotations,
            service=step.service,
        )

    async def resolve(self, step: Resolve) -> None:
        key = (step.kind, step.service)
        live = self.live.get(key, [])
        if not live:
            return
        name = ALERTNAMES[step.kind]
        await self.post(
            [alert(name, "resolved", starts_at=str(iso(s)), service=step.service) for s in live]
        )
        self.resolved.setdefault(key, []).extend(live)
        live.clear()

    async def post(self, alerts: list[dict[str, object]]) -> None:
        response = await self.client.post("/alerts", json=notification(*alerts))
        assert response.status_code == 200, response.text

    async def add_mute(self, step: AddMute) -> None:
        mute = await self.daemon.control.add_mute(
            rule=step.rule,
            target=step.target,
            matchers=None if step.service is None else f'{{service="{step.service}"}}',
            duration=step.seconds,
            reason="property test",
            by="tester",
        )
        until = self.clock.now() + step.seconds
        self.mutes.append(
            ModelMute(mute.id, step.rule, step.target, step.service, self.step, until)
        )

    async def decide(self, step: Decide) -> None:
        pending = sorted(await self.daemon.store.approvals("pending"), key=lambda a: a.id)
        if not pending:
            return
        approval = pending[step.pick % len(pending)]
        try:
            await self.daemon.control.decide(approval.id, step.approve, "tester", "property test")
        except ControlError:
            assert self.clock.now() >= approval.expires_at, "only an expired approval conflicts"
            return
        if step.approve:
            self.approved[approval.id] = self.step

    def observe(self, step: int) -> None:
        """What the store says after each step: which incidents resolved, how many claims."""
        for (incident_id,) in self.reader.execute(
            "SELECT id FROM incidents WHERE status = 'resolved'"
        ):
            self.resolved_at_step.setdefault(incident_id, step)
        left = self.reader.execute(
            "SELECT a.id FROM approvals a JOIN incidents i ON i.id = a.incident_id "
            "JOIN claims c ON c.id = a.claim_id WHERE i.status = 'resolved' "
            "AND a.status = 'pending' AND c.step NOT IN (?, ?)",
            OUTLIVE_RESOLUTION,
        ).fetchall()
        assert not left, f"step {step}: approvals {left} pending for resolved incidents"
        self.claims_after[step] = self.reader.execute("SELECT COUNT(*) FROM claims").fetchone()[0]

    # -- the properties ------------------------------------------------------------------------

    def claims(self) -> dict[str, ClaimRow]:
        rows = self.reader.execute(
            "SELECT id, incident_id, step, action, rule, target, idempotency_key, status, "
            "detail, context FROM claims"
        ).fetchall()
        claims = {
            r[6]: ClaimRow(
                id=r[0],
                incident_id=r[1],
                step=r[2],
                action=r[3],
                rule=r[4],
                target=r[5],
                key=r[6],
                status=r[7],
                detail=r[8],
                service=json.loads(r[9])["labels"]["service"],
            )
            for r in rows
        }
        assert len(claims) == len(rows), "two claims share an idempotency key"
        return claims

    def check(self) -> None:
        claims = self.claims()
        hits = sorted([*self.svc.hits, *self.ops.hits], key=lambda h: (h.step, h.at))
        runs: dict[str, list[Hit]] = defaultdict(list)
        for hit in hits:
            assert hit.key in claims, f"{hit} carries no claim's idempotency key"
            runs[hit.key].append(hit)
        starts = {key: (run[0].step, run[0].at) for key, run in runs.items()}
        acted = [(c.incident_id, c.step, c.action) for k, c in claims.items() if k in runs]
        assert len(acted) == len(set(acted)), f"one tier's action ran twice: {sorted(acted)}"
        for key, run in runs.items():
            self.check_one_run(claims[key], run)
            for hit in run:
                self.check_allowed(claims[key], hit)
        self.check_budgets([claims[k] for k in runs], starts)
        self.check_cooldowns([claims[k] for k in runs], starts)
        self.check_approvals(claims, runs)
        self.check_stale_firings(hits)
        self.acted, self.claim_rows = len(runs), list(claims.values())
        self.summary = [f"claims that acted: {min(len(runs), 4)}{'+' if len(runs) > 3 else ''}"]
        self.summary += sorted({f"a claim {c.status}" for c in claims.values()})
        refused = [c.detail.split(":")[0] for c in claims.values() if c.status == "refused"]
        self.summary += sorted({f"refused by {guardrail}" for guardrail in refused})

    def check_one_run(self, claim: ClaimRow, run: list[Hit]) -> None:
        """(a) one claim, one run: at most 1 + retries requests, all from one step."""
        assert len(run) <= 1 + RETRIES[claim.action], f"{claim} was sent {len(run)} times"
        assert len({hit.step for hit in run}) == 1, f"{claim} ran in steps {run}"
        method, prefix = ROUTES[claim.action]
        assert all((h.method, h.path) == (method, prefix + claim.service) for h in run), run
        assert claim.status in ("succeeded", "failed"), claim

    def check_allowed(self, claim: ClaimRow, hit: Hit) -> None:
        """(c) no kill switch, mute or window; (e) no firing action for a resolved incident."""
        assert hit.step not in self.killswitch_steps, f"{claim} acted with the kill switch on"
        assert not WINDOW[0] <= hit.at < WINDOW[1], f"{claim} acted inside the window"
        muted = [m for m in self.mutes if m.covers(claim, hit)]
        assert not muted, f"{claim} acted at step {hit.step} inside {muted}"
        if claim.step != RESOLVED_STEP:
            resolved = self.resolved_at_step.get(claim.incident_id)
            assert resolved is None or resolved >= hit.step, (
                f"{claim} acted at step {hit.step}; its incident resolved at step {resolved}"
            )

    def check_budgets(self, started: list[ClaimRow], starts: dict[str, tuple[int, float]]) -> None:
        """(b) a remediation never starts once a budget's window holds `max` starts. Undos
        (on_resolved) are exempt, so that a budget never leaves a service paused, but they
        count in the window like any other start."""
        scopes = [("all actions", GLOBAL_BUDGET, started)]
        scopes += [(a, n, [c for c in started if c.action == a]) for a, n in ACTION_BUDGETS.items()]
        for scope, most, claims in scopes:
            ordered = sorted(claims, key=lambda c: starts[c.key])
            for i, claim in enumerate(ordered):
                if claim.step == "on_resolved":
                    continue
                t = starts[claim.key][1]
                before = [c for c in ordered[:i] if t - starts[c.key][1] < HOUR]
                assert len(before) < most, f"{len(before) + 1} starts of {scope} within an hour"

    def check_cooldowns(
        self, started: list[ClaimRow], starts: dict[str, tuple[int, float]]
    ) -> None:
        """(f) incidents of one rule and key act on a target at least the cooldown apart."""
        ordered = sorted(started, key=lambda c: starts[c.key])
        for first, later in itertools.combinations(ordered, 2):
            if (first.rule, first.service, first.target) != (
                later.rule,
                later.service,
                later.target,
            ):
                continue
            if first.incident_id == later.incident_id or later.step == "on_resolved":
                continue  # an undo is exempt from cooldowns
            gap = starts[later.key][1] - starts[first.key][1]
            assert gap >= COOLDOWN[first.rule], f"{later} acted {gap}s after {first}"

    def check_approvals(self, claims: dict[str, ClaimRow], runs: dict[str, list[Hit]]) -> None:
        """(d) acting on approval only once approved in time; never expired, never denied."""
        approvals = {
            claim_id: (approval_id, status, expires_at, decided_at)
            for approval_id, claim_id, status, expires_at, decided_at in self.reader.execute(
                "SELECT id, claim_id, status, expires_at, decided_at FROM approvals"
            )
        }
        for key, run in runs.items():
            claim = claims[key]
            if not needs_approval(claim.rule, claim.step, claim.action):
                assert claim.id not in approvals
                continue
            assert claim.id in approvals, f"{claim} acted without asking"
            approval_id, status, expires_at, decided_at = approvals[claim.id]
            assert status == "approved", f"{claim} acted on a {status} approval"
            assert self.approved.get(approval_id, len(self.claims_after) + 1) <= run[0].step, (
                f"{claim} acted before anyone approved it"
            )
        for claim_id, (approval_id, status, expires_at, decided_at) in approvals.items():
            if status in ("expired", "denied"):
                assert not [k for k, c in claims.items() if c.id == claim_id and k in runs]
            if status == "approved":
                assert approval_id in self.approved, "an approval nobody gave"
                assert decided_at < expires_at, f"approval {approval_id} approved after it expired"

    def check_stale_firings(self, hits: list[Hit]) -> None:
        """(e) a firing of an alert that already resolved acts on nothing and claims nothing."""
        for step in self.stale_steps:
            assert not [h for h in hits if h.step == step], f"step {step} was a stale firing"
            before = self.claims_after.get(step - 1, 0)
            assert self.claims_after[step] == before, f"stale firing at step {step} claimed"


async def run(steps: Sequence[Step]) -> World:
    with tempfile.TemporaryDirectory(prefix="remediator-props-") as directory:
        world = World(Path(directory))
        await world.open()
        try:
            await world.play(steps)
            world.check()
        finally:
            await world.close()
        return world


# Histories worth trying every time, whatever hypothesis draws: each pushes a guardrail to its
# limit or carries its state across a boundary where it could be lost.
STORMS: list[Step] = [
    Storm("errors", "12%"),  # three pauses at once: the pause budget allows two
    Storm("lag", ""),  # three restarts: the global budget has two left
]
STALE_FIRINGS: list[Step] = [
    Fire("errors", "a", "12%", "new"),
    Fire("lag", "b", "", "new"),
    Resolve("errors", "a"),
    Resolve("lag", "b"),
    Advance(3600.0),
    Fire("errors", "a", "25%", "stale"),  # late copies of resolved alerts
    Fire("lag", "b", "", "stale"),
]
KILLSWITCH_OVER_A_RESTART: list[Step] = [
    Killswitch(True),
    Restart(),
    Fire("errors", "a", "12%", "new"),
    Fire("lag", "b", "", "new"),
    RunDue(),
]
APPROVED_AFTER_RESOLVE: list[Step] = [
    Fire("errors", "a", "25%", "new"),
    Resolve("errors", "a"),
    Decide(0, True),
]
HELD_THROUGH_A_WINDOW: list[Step] = [
    Advance(1800.0),
    Fire("errors", "a", "12%", "new"),  # held until the window ends
    Fire("errors", "b", "12%", "new"),  # held too
    Restart(),
    Resolve("errors", "a"),
    AddMute(None, None, "b", 7200.0),
    Advance(3600.0),
    RunDue(),  # both released: a resolved, b muted
]
APPROVAL_EXPIRES_OVER_A_RESTART: list[Step] = [
    Fire("errors", "a", "25%", "new"),
    Restart(),
    Advance(1200.0),
    Decide(0, True),  # too late, even though nothing expired it yet
    RunDue(),
    Decide(0, True),
]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(STEPS, min_size=15, max_size=40))
@example(STORMS)
@example(STALE_FIRINGS)
@example(KILLSWITCH_OVER_A_RESTART)
@example(APPROVED_AFTER_RESOLVE)
@example(HELD_THROUGH_A_WINDOW)
@example(APPROVAL_EXPIRES_OVER_A_RESTART)
def test_guardrails_hold_over_random_histories(steps: list[Step]) -> None:
    world = asyncio.run(run(steps))
    for line in world.summary:
        event(line)
    target(float(world.acted), label="claims that acted")  # steer towards busy histories


# -- the harness itself: it sees actions, and it would see a violation -------------------------

A_DAY: list[Step] = [
    Fire("errors", "a", "12%", "new"),  # 1: pause a
    Advance(1200.0),
    RunDue(),  # 3: the pause is verified; 20 minutes at pause: the rollback asks for approval
    Decide(0, True),  # 4: rollback a
    Fire("lag", "b", "", "new"),  # 5: restart b
    Fire("errors", "b", "12%", "new"),  # 6: pause b, the fourth action within the hour
    Fire("errors", "c", "12%", "new"),  # 7: pause c would be the fifth: refused
    Advance(7200.0),  # past the maintenance window
    Resolve("errors", "a"),  # 9: resume a
    Fire("errors", "a", "12%", "stale"),  # 10: a late copy of the resolved alert: nothing
    Advance(600.0),  # the cooldown since the resume has passed
    Fire("errors", "a", "12%", "new"),  # 12: a new incident: pause a
]


def test_the_harness_sees_every_action_of_a_known_history() -> None:
    world = asyncio.run(run(A_DAY))
    sent = [(h.step, h.method, h.path) for h in sorted(world.svc.hits + world.ops.hits)]
    assert sent == [
        (1, "PUT", "/pause/a"),
        (4, "POST", "/rollback/a"),
        (5, "POST", "/restart/b"),
        (6, "PUT", "/pause/b"),
        (9, "PUT", "/resume/a"),
        (12, "PUT", "/pause/a"),
    ]
    [refused] = [c for c in world.claim_rows if c.status == "refused"]
    assert (refused.action, refused.service) == ("pause", "c")
    assert refused.detail.startswith("budget: budget for all actions spent")
    assert world.stale_steps == {10}


def test_an_approval_given_after_its_incident_resolved_does_not_act() -> None:
    world = asyncio.run(
        run(
            [
                Fire("errors", "a", "25%", "new"),  # the rollback asks for approval
                Resolve("errors", "a"),
                Decide(0, True),  # too late: the resolution cancelled the approval
            ]
        )
    )
    assert world.svc.hits == []
    [rollback] = world.claim_rows
    assert (rollback.action, rollback.status) == ("rollback", "skipped")
    assert "the incident resolved before anyone approved" in rollback.detail
    assert world.approved == {}


# Each tamper rewrites the record of A_DAY as a broken guardrail would have written it.
TAMPERS = {
    "again": "ran in steps",
    "killswitch": "kill switch on",
    "mute": "inside \\[ModelMute",
    "window": "inside the window",
    "budget": "6 starts of all actions within an hour",
    "action-budget": "3 starts of pause within an hour",
    "cooldown": "acted 1.0s after",
    "resolved": "its incident resolved",
    "stale": "was a stale firing",
    "unapproved": "before anyone approved it",
}


@pytest.mark.parametrize(("tamper", "caught"), TAMPERS.items(), ids=list(TAMPERS))
def test_the_checks_catch_a_violation(tamper: str, caught: str) -> None:
    """The properties are not vacuous: each fails on a history that breaks it."""

    async def tampered() -> None:
        with tempfile.TemporaryDirectory(prefix="remediator-props-") as directory:
            world = World(Path(directory))
            await world.open()
            try:
                await world.play(A_DAY)
                world.check()
                corrupt(world, tamper)
                with pytest.raises(AssertionError, match=caught):
                    world.check()
            finally:
                await world.close()

    asyncio.run(tampered())


def corrupt(world: World, tamper: str) -> None:
    pause, rollback, restart_b, pause_b, resume, pause2 = sorted(world.svc.hits + world.ops.hits)

    def moved(hit: Hit, at: float) -> None:
        target = world.ops if hit in world.ops.hits else world.svc
        target.hits[target.hits.index(hit)] = Hit(hit.step, at, hit.key, hit.method, hit.path)

    if tamper == "again":  # the first pause sent once more, in a later step
        world.svc.hits.append(Hit(2, pause.at, pause.key, pause.method, pause.path))
    elif tamper == "killswitch":
        world.killswitch_steps.add(restart_b.step)
    elif tamper == "mute":
        world.mutes.append(ModelMute(99, None, "svc", "a", 0, T0 + 60.0))
    elif tamper == "window":
        moved(restart_b, WINDOW[0])
    elif tamper == "budget":  # a fifth remediation within the busy hour (undos are exempt)
        moved(pause2, rollback.at + 1)
    elif tamper == "action-budget":  # a third pause within the hour; the global budget holds
        world.ops.hits.remove(restart_b)
        world.svc.hits.remove(rollback)
        moved(pause2, pause_b.at + 1)
    elif tamper == "cooldown":  # the second incident of a acts right after the first's resume
        moved(pause2, resume.at + 1)
    elif tamper == "resolved":
        world.resolved_at_step[world.claims()[rollback.key].incident_id] = rollback.step - 1
    elif tamper == "stale":
        world.stale_steps.add(resume.step)
    elif tamper == "unapproved":
        world.approved.clear()


# -- a race the steps cannot express: they wait for quiescence ------------------------------------


async def test_a_claim_waiting_for_a_busy_target_does_not_act_once_its_incident_resolved() -> None:
    """Pause b waits its turn while pause a holds the target (queued behind it, turns.py); b
    resolves meanwhile; b must not act."""
    with tempfile.TemporaryDirectory(prefix="remediator-props-") as directory:
        world = World(Path(directory))
        await world.open()
        try:
            executor = world.daemon.executor
            world.svc.gate = asyncio.Event()  # the target holds every answer
            await world.post([world.firing(Fire("errors", "a", "12%", "new"))])
            await world.post([world.firing(Fire("errors", "b", "12%", "new"))])
            async with asyncio.timeout(10):  # pause a started and holds the target; b waits
                while 1 not in executor.holding or executor.queued() != 1:
                    await asyncio.sleep(0.01)
            await world.resolve(Resolve("errors", "b"))
            await world.daemon.engine.idle()
            world.svc.gate.set()
            await executor.idle()
            assert [h.path for h in world.svc.hits] == ["/pause/a"]
            statuses = world.reader.execute("SELECT action, status FROM claims ORDER BY id")
            assert statuses.fetchall() == [("pause", "succeeded"), ("pause", "skipped")]
        finally:
            await world.close()
