"""The aiohttp application and the daemon's lifecycle. Routes and wiring, no decisions.

POST /alerts answers 200 only once the notification is in the journal, durably: Alertmanager
retries anything else, so an acknowledged alert is never lost. The work happens after the answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)

from remediator import __version__, openapi, wire
from remediator.alerts import parse_notification
from remediator.api import Api, api_auth
from remediator.clock import Clock, SystemClock
from remediator.config import Config, WebhookAuth, load_config
from remediator.control import Control
from remediator.edge import (
    QUIET,
    EdgeRunner,
    RequestError,
    edge_checks,
    error,
    read_body,
    reply,
)
from remediator.engine import Engine
from remediator.errors import ListenError, PayloadError, StoreError
from remediator.executor import Executor
from remediator.feed import JournalFeed
from remediator.leader import INGEST, Roles
from remediator.leases import LeaseKeeper
from remediator.metrics import Metrics
from remediator.paging.desk import PagerDesk
from remediator.reload import Outcome, Reloader
from remediator.retention import Pruner, guardrail_horizon
from remediator.scheduler import Timers
from remediator.schema import Secret
from remediator.slack.app import SlackApp
from remediator.slack.identity import TokenCheck
from remediator.slack.outbox import Outbox, Sender
from remediator.slack.socket_mode import SocketMode
from remediator.store.factory import build_store
from remediator.store.records import AuditEntry
from remediator.types import Notifier, Store

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BACKLOG_RETRY_AFTER = 5  # seconds; Alertmanager retries on its own backoff anyway
STORE_RETRY_AFTER = 5  # seconds, said with a 503 when the store cannot journal
READY_STORE_TIMEOUT = 1.5  # /readyz answers within the probe's 2 s, store or not


@dataclass
class Routes:
    config: Config
    store: Store
    engine: Engine
    metrics: Metrics
    clock: Clock
    reloader: Callable[[str], Awaitable[Outcome]] | None = None
    slack_token: TokenCheck | None = None  # auth.test's verdict, shown on /readyz
    roles: Roles | None = None  # this replica's role, shown on /readyz

    # -- webhook -------------------------------------------------------------------------------

    async def alerts(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        response = await self._ingest(request)
        outcome = _OUTCOMES.get(response.status, "invalid")
        self.metrics.notifications.labels(outcome).inc()
        if response.status == 200:
            self.metrics.webhook_duration.observe(time.perf_counter() - started)
        return response

    async def _ingest(self, request: web.Request) -> web.Response:
        auth = self.config.webhook_auth
        if auth.enabled and not webhook_authorized(request.headers.get("Authorization", ""), auth):
            return error(
                401, "missing or wrong credentials", headers={"WWW-Authenticate": challenge(auth)}
            )
        if request.content_type != "application/json":
            return error(
                415, f"expected Content-Type application/json, got {request.content_type or 'none'}"
            )
        if self.engine.overloaded:
            # Alertmanager retries a 5xx: nothing is lost, and memory stays bounded. Answered
            # before the body is read, so that a storm's retries cost no parsing.
            return error(
                503,
                "too many alerts wait for a decision; retry later",
                headers={"Retry-After": str(BACKLOG_RETRY_AFTER)},
            )
        server = self.config.server
        try:
            body = await read_body(request, server.max_body_bytes, server.body_timeout)
            text = wire.utf8(body)
            notification = parse_notification(wire.decode(text))
        except RequestError as e:
            return error(e.status, e.message)
        except PayloadError as e:
            return error(400, str(e))
        # the journal holds exactly the text the decision path read, so a replay reads it too
        journaled = await self._journal(text)
        if isinstance(journaled, web.Response):
            return journaled
        if self.engine.started:  # the leader decides now; else it reads the journal (feed.py)
            self.engine.submit(journaled, notification)
        return reply(
            {"status": "accepted", "journal_id": journaled, "alerts": len(notification.alerts)}
        )

    async def _journal(self, text: str) -> int | web.Response:
        """The notification's journal id once committed, or the 503 that makes Alertmanager
        retry. Bounded by server.journal_timeout, so that the 503 comes within Alertmanager's
        deadline (SQLite itself waits 30 s for a lock another process holds). An append given
        up on before its write began is not written (both stores), so what was refused is not
        stored behind Alertmanager's back; one whose write was under way may still commit,
        and the retry is then a duplicate, as Alertmanager's own are."""
        limit = self.config.server.journal_timeout
        try:
            async with asyncio.timeout(limit):
                return await self.store.append_journal(text, self.clock.now())
        except TimeoutError:
            QUIET.warning(
                "journal_timeout",
                "the store did not journal a notification within %gs (locked by another process, "
                "or slow); answered 503 so Alertmanager retries",
                limit,
            )
            return error(
                503,
                f"the store did not take it within {limit:g}s (locked or slow); retry",
                headers={"Retry-After": str(STORE_RETRY_AFTER)},
            )
        except StoreError as e:
            log.error("cannot journal a notification, answering 503 so Alertmanager retries: %s", e)
            return error(
                503,
                "store unavailable; retry",
                headers={"Retry-After": str(STORE_RETRY_AFTER)},
            )

    # -- probes and metrics --------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        problems = []
        leading = self.roles is None or self.roles.leading
        if leading and not self.engine.started:
            problems.append("engine not started")
        if not self.config.rules:
            problems.append("no rules loaded")
        try:
            async with asyncio.timeout(READY_STORE_TIMEOUT):
                await self.store.ping()
        except StoreError as e:
            problems.append(f"store unreachable: {e}")
        except TimeoutError:
            problems.append(f"store unreachable: no answer within {READY_STORE_TIMEOUT:g}s")
        # Slack is delivery only: a refused token is said here, and does not make us unready
        extra: dict[str, Any] = {
            "dry_run": self.config.guardrails.dry_run,
            "killswitch": self.engine.executor.state.killswitch,
        }
        if self.slack_token is not None and self.slack_token.problem:
            extra["warnings"] = [self.slack_token.problem]
        if self.roles is not None:
            extra.update(self.roles.view())
            with contextlib.suppress(StoreError):
                extra["leader"] = (await self.store.leadership()).leader
        if problems:
            return web.json_response(
                {"status": "not ready", "problems": problems, **extra}, status=503
            )
        return web.json_response({"status": "ready", "rules": len(self.config.rules), **extra})

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def reload(self, request: web.Request) -> web.Response:
        """POST /-/reload: 200 with what changed, or 422 with every problem of the new config
        (the running one stays)."""
        if self.reloader is None:
            return error(404, "reload is not available")
        outcome = await self.reloader("the API")
        return web.json_response(outcome.as_dict(), status=200 if outcome.ok else 422)


_OUTCOMES = {
    200: "accepted",
    401: "unauthorized",
    408: "timeout",
    413: "too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}


def webhook_authorized(header: str, auth: WebhookAuth) -> bool:
    """Bearer token or basic auth, as Alertmanager's http_config sends them; constant time."""
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and auth.bearer_token is not None:
        return _same(credentials.strip(), auth.bearer_token)
    if scheme == "basic" and auth.basic_username is not None and auth.basic_password is not None:
        try:
            user, _, password = (
                base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return False
        user_ok = hmac.compare_digest(user.encode(), auth.basic_username.encode())
        return _same(password, auth.basic_password) & user_ok
    return False


def _same(given: str, secret: Secret) -> bool:
    return hmac.compare_digest(given.encode(), secret.reveal().encode())


def challenge(auth: WebhookAuth) -> str:
    schemes = []
    if auth.bearer_token is not None:
        schemes.append('Bearer realm="remediator"')
    if auth.basic_username is not None:
        schemes.append('Basic realm="remediator"')
    return ", ".join(schemes)


def slack_mode(config: Config) -> str:
    s = config.slack
    posts = f"Web API at {s.base_url}" if s.token is not None else "to the log (no bot token)"
    commands = "commands on /slack/*" if s.signing_secret is not None else "no commands"
    return f"{posts}, {commands}"


def create_app(routes: Routes, api: Api) -> web.Application:
    app = web.Application(middlewares=[edge_checks])
    app.router.add_post("/alerts", routes.alerts)
    app.router.add_get("/healthz", routes.healthz)
    app.router.add_get("/readyz", routes.readyz)
    app.router.add_get("/metrics", routes.metrics_endpoint)
    app.router.add_post("/-/reload", api_auth(routes.config.api_token)(routes.reload))
    api.register(app, routes.config.api_token)
    app.router.add_get("/api/v1/openapi.json", api_auth(routes.config.api_token)(openapi.serve))
    return app


@dataclass(frozen=True)
class Notifiers:
    """Several notifiers told the same audit lines: the Slack outbox and the pager desk."""

    each: tuple[Notifier, ...]

    async def publish(self, entries: list[AuditEntry]) -> None:
        for notifier in self.each:
            await notifier.publish(entries)


@dataclass
class Daemon:
    """Everything the `serve` command runs, built from config; tests build their own."""

    config: Config
    clock: Clock = field(default_factory=SystemClock)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    slack_sender: Sender | None = None  # None: Slack's Web API, or the log without a token
    given_store: InitVar[Store | None] = None  # None: the configured one (build_store)
    load: Callable[[Path], Config] = load_config  # how a reload reads the config again
    role: str = "auto"  # or "ingest": acknowledge webhooks, never lead (leader.py)

    def __post_init__(self, given_store: Store | None) -> None:
        self.metrics = Metrics(self.registry)
        ProcessCollector(registry=self.registry)  # process_*: CPU, memory, file descriptors
        self.metrics.dry_run.set(1 if self.config.guardrails.dry_run else 0)
        self.metrics.declare(
            [r.name for r in self.config.rules],
            sorted({a.kind for a in self.config.actions.values()}),
            sorted(self.config.all_targets()),
        )
        self.store: Store = given_store or build_store(self.config.store)
        self.outbox = Outbox(self.config, self.store, self.metrics, self.slack_sender)
        self.pager_desk = PagerDesk(self.config, self.store, self.metrics, self.clock)
        self.notifier: Notifier = Notifiers((self.outbox, self.pager_desk))
        self.executor = Executor(self.store, self.config, self.notifier, self.metrics, self.clock)
        self.engine = Engine(
            self.config, self.store, self.executor, self.notifier, self.metrics, self.clock
        )
        self.control = Control(
            self.config, self.store, self.executor, self.notifier, self.metrics, self.clock
        )
        self.timers = Timers(
            self.engine, self.executor, self.control, self.store, self.clock, self.pager_desk
        )
        self.leases = LeaseKeeper(self.store, self.clock, lambda: self.executor.holding)
        self.pruner = Pruner(
            self.store,
            self.config.store.retention,
            guardrail_horizon(self.config),
            self.metrics,
            self.clock,
        )
        self.roles = Roles(
            self.store,
            self.config.store,
            self.metrics,
            self.clock,
            self._lead,
            self._follow,
            ingest_only=self.role == INGEST,
        )
        self.feed: JournalFeed | None = None
        if self.config.store.postgres is not None:  # every replica's journal, for the leader
            poll = self.config.store.postgres.heartbeat
            self.feed = JournalFeed(self.store, self.engine, self.executor, self.control, poll)
            self.roles.on_journal = self.feed.poke
        self.engine.fenced = self.roles.lost
        self.executor.wake = self.engine.wake = self.timers.poke
        self.pager_desk.wake_timers = self.timers.rearm
        self.executor.verify_failed = self.engine.verification_failed
        self.engine.storm.metrics_gauge = self.metrics.storm_active.set
        self.reloader = Reloader(
            self.config, self.load, self._swap, self.store, self.notifier, self.metrics, self.clock
        )
        token = self.config.slack.token
        self.slack_token = (
            TokenCheck(token.reveal(), self.config.slack.base_url)
            if token is not None and self.slack_sender is None
            else None
        )
        self.routes = Routes(
            self.config,
            self.store,
            self.engine,
            self.metrics,
            self.clock,
            self.reload,
            slack_token=self.slack_token,
            roles=self.roles if self.config.store.postgres is not None else None,
        )
        self.control.acked = self.engine.acked
        self.control.closer = self.engine.close
        self.app = create_app(self.routes, Api(self.store, self.engine, self.control))
        self.slack_app: SlackApp | None = None
        slack = self.config.slack
        self.socket_mode: SocketMode | None = None
        if slack.signing_secret is not None or slack.socket_mode:
            self.slack_app = SlackApp(
                self.config, self.store, self.control, self.metrics, self.clock
            )
            self.slack_app.register(self.app)  # HTTP endpoints, with a signing secret
        if slack.socket_mode and slack.app_token is not None and self.slack_app is not None:
            self.socket_mode = SocketMode(slack.app_token.reveal(), slack.base_url, self.slack_app)
        self._runner: web.AppRunner | None = None
        self._stopped = False
        self._signalled: set[asyncio.Task[Outcome]] = set()
        self.port = 0

    async def reload(self, by: str) -> Outcome:
        """Read the config again; swap it in if all of it is valid (see reload.py)."""
        return await self.reloader.reload(by)

    async def _swap(self, config: Config) -> None:
        async with self.engine.between_batches():
            self.config = config
            self.metrics.dry_run.set(1 if config.guardrails.dry_run else 0)
            self.metrics.declare(
                [r.name for r in config.rules],
                sorted({a.kind for a in config.actions.values()}),
                sorted(config.all_targets()),
            )
            self.executor.reconfigure(config)
            self.control.config = config
            self.outbox.reconfigure(config)
            self.pager_desk.reconfigure(config)
            if self.slack_app is not None:
                self.slack_app.reconfigure(config)
            self.routes.config = config
            await self.engine.reconfigure(config)
        await self.control.load()
        self.timers.rearm()

    def _reload_on_signal(self) -> None:
        task = asyncio.create_task(self.reload("SIGHUP"), name="remediator-reload")
        self._signalled.add(task)
        task.add_done_callback(self._signalled.discard)

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        await self.store.open()
        await self.control.load()
        await self.roles.start()  # on SQLite it leads now; on PostgreSQL, when elected
        self.leases.start()  # renews the leases of the claims this replica runs
        if self.slack_token is not None:
            self.slack_token.start()
        if self.socket_mode is not None:
            self.socket_mode.start()
        self._runner = EdgeRunner(
            self.app, self.config.server, access_log=None, shutdown_timeout=5.0
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            host or self.config.server.host,
            self.config.server.port if port is None else port,
        )
        await site.start()
        self.port = self._runner.addresses[0][1]
        if not self.config.webhook_auth.enabled:
            log.warning(
                "webhook authentication is off: anyone who can reach %s:%d can post "
                "alerts; set webhook_auth",
                host or self.config.server.host,
                self.port,
            )

    async def _lead(self) -> None:
        """Elected: take up the leader's duties. Claims left running by the previous leader go
        through their on_interrupted policy; timers that came due meanwhile fire now; the
        outboxes resume from their cursors in the store."""
        self.executor.leading = True
        await self.executor.recover()
        await self.engine.start()
        self.timers.start()
        await self.outbox.start()
        await self.pager_desk.start()
        self.pruner.start()
        if self.feed is not None:
            self.feed.start()

    async def _follow(self) -> None:
        """Deposed: stop every duty at once; nothing queued is lost (it is in the store)."""
        if self.feed is not None:
            await self.feed.stop()
        await self.executor.abandon()
        await self.timers.stop()
        await self.engine.abandon()
        await self.outbox.halt()
        await self.pager_desk.halt()
        await self.pruner.stop()

    async def banner(self, host: str) -> str:
        """One line saying what this daemon is: version, address, store, rules, Slack, dry-run
        and kill switch."""
        c = self.config
        files = ", ".join(str(p) for p in c.rule_files) or "the main file"
        switch = await self.control.killswitch()
        return (
            f"remediator {__version__} listening on {host}:{self.port}; "
            f"store: sqlite {c.store_path}; {len(c.rules)} rules from {files}; "
            f"Slack: {slack_mode(c)}; dry-run: {'ON' if c.guardrails.dry_run else 'off'}; "
            f"kill switch: {'ON' if switch.on else 'off'} (from the {switch.source})"
        )

    async def stop(self) -> None:
        """Stop accepting, finish queued decisions, give running actions the grace period,
        record the rest as interrupted, close the store. Stopping twice does nothing."""
        if self._stopped:
            return
        self._stopped = True
        await self.roles.halt()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.feed is not None:
            await self.feed.stop()
        await self.timers.stop()
        await self.engine.stop()
        await self.executor.shutdown(self.config.server.shutdown_grace)
        await self.leases.stop()
        if self.socket_mode is not None:
            await self.socket_mode.stop()
        if self.slack_app is not None:
            await self.slack_app.close()
        if self.slack_token is not None:
            await self.slack_token.stop()
        await self.outbox.stop()
        await self.pager_desk.stop()
        await self.pruner.stop()
        await self.roles.resign()  # after its actions stopped: the next leader may take over
        await self.store.close()

    async def serve(self, host: str | None = None, port: int | None = None) -> None:
        """Run until SIGTERM or SIGINT; SIGHUP reloads the config. ListenError if the address
        cannot be had (everything opened by then is closed again)."""
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        address = (
            f"{host or self.config.server.host}:{self.config.server.port if port is None else port}"
        )
        try:
            await self.start(host, port)
        except OSError as e:
            await self.stop()
            why = os.strerror(e.errno).lower() if e.errno else str(e)
            raise ListenError(f"cannot listen on {address}: {why}") from None
        log.info("%s", await self.banner(host or self.config.server.host))
        await stopping.wait()
        log.info(
            "shutting down: no new webhooks; running actions get %gs",
            self.config.server.shutdown_grace,
        )
        await self.stop()
        log.info("stopped")
