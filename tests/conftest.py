"""Factory fixtures that close what they open: config files, the daemon, stand-in targets."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import settings

from remediator.clock import FakeClock
from remediator.config import Config, load_config
from remediator.server import Daemon
from remediator.trust import default_tls
from tests.binaries import in_ci
from tests.slack_standin import SECRET, TOKEN, SlackAPI
from tests.standins import Connector, KafkaConnect, Recorder

pytest_plugins = ["tests.postgres"]
BACKENDS = ("sqlite", "postgres")
STORES = {
    "sqlite": "store: {sqlite: {path: state/remediator.db}}",
    "postgres": "store: {postgres: {dsn_env: TEST_PG_DSN}}",
}

# In CI, property tests draw the same examples every run: a red build is reproducible and never
# the luck of a seed. Locally they explore, and remember what failed.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if in_ci():
    settings.load_profile("ci")


def share_bytecode() -> None:
    """The processes the tests start (`remediator serve`, the CLI: a few hundred a run) import the
    same modules. Where PYTHONDONTWRITEBYTECODE is set (this project's CI image), each compiled
    remediator's sources again: about 0.25 s of CPU per process. They share one bytecode cache
    instead, outside the checkout, made for this session and removed at its end."""
    if not sys.flags.dont_write_bytecode or "PYTHONPYCACHEPREFIX" in os.environ:
        return
    cache = tempfile.mkdtemp(prefix="remediator-pyc-")
    atexit.register(shutil.rmtree, cache, ignore_errors=True)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = cache


share_bytecode()


def temp_in_memory(shm: Path = Path("/dev/shm")) -> None:
    """What the tests write (tmp_path, the daemons' SQLite stores, PostgreSQL clusters) goes to
    a tmpfs when the machine has a roomy one and the runner did not choose TMPDIR. The SQLite
    store commits at synchronous=FULL: on this machine's disk each fsync costs milliseconds, and
    the suite commits tens of thousands of times (a fresh store's migrations alone: 40-70 ms,
    13-20 ms in memory). Nothing here tests a power cut; a SIGKILL leaves the page cache as is."""
    if "TMPDIR" in os.environ or not shm.is_dir() or shutil.disk_usage(shm).free < 4 << 30:
        return
    os.environ["TMPDIR"] = str(shm)
    tempfile.tempdir = None  # gettempdir() looks again


temp_in_memory()

WEBHOOK_TOKEN = "test-webhook-token"
API_TOKEN = "test-api-token"


@pytest.fixture
def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Write a main config (and optional rule files) under tmp_path; return the main file.

    The webhook and API tokens come from the environment, as in production."""
    monkeypatch.setenv("TEST_WEBHOOK_TOKEN", WEBHOOK_TOKEN)
    monkeypatch.setenv("TEST_API_TOKEN", API_TOKEN)

    def write(main: str, **rule_files: str) -> Path:
        for name, text in rule_files.items():
            (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(text))
        path = tmp_path / "remediator.yaml"
        path.write_text(textwrap.dedent(main))
        return path

    return write


def base_config(targets: dict[str, str], extra: str = "") -> str:
    """A main config with webhook and API tokens from the environment and the given targets.
    Its store is SQLite's, or PostgreSQL's in a test that asks for `store_backend`."""
    lines = [
        "webhook_auth: {bearer_token_env: TEST_WEBHOOK_TOKEN}",
        "api_auth: {bearer_token_env: TEST_API_TOKEN}",
        STORES[os.environ.get("TEST_STORE_BACKEND", "sqlite")],
        "targets:",
    ]
    lines += [f"  {name}: {{url: {url}}}" for name, url in targets.items()] or ["  {}"]
    return "\n".join(lines) + "\n" + textwrap.dedent(extra)


class Running:
    """A started daemon and an HTTP client pointed at it."""

    def __init__(self, daemon: Daemon, client: httpx.AsyncClient) -> None:
        self.daemon = daemon
        self.client = client

    async def post_alerts(self, body: Any, token: str = WEBHOOK_TOKEN) -> httpx.Response:
        return await self.client.post(
            "/alerts", json=body, headers={"Authorization": f"Bearer {token}"}
        )

    async def settle(self) -> None:
        """Wait until every acknowledged notification is decided and every action finished."""
        await self.daemon.engine.idle()
        await self.daemon.executor.idle()

    async def api(self, path: str) -> Any:
        r = await self.client.get(path, headers={"Authorization": f"Bearer {API_TOKEN}"})
        r.raise_for_status()
        return r.json()


StartDaemon = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_daemon() -> AsyncIterator[StartDaemon]:
    """Start a daemon from a config file on a free loopback port; stops it afterwards."""
    started: list[Running] = []

    async def start(config: Path | Config, clock: FakeClock | None = None) -> Running:
        cfg = load_config(config) if isinstance(config, Path) else config
        daemon = Daemon(cfg, clock=clock) if clock else Daemon(cfg)
        await daemon.start("127.0.0.1", 0)
        client = httpx.AsyncClient(verify=default_tls(), base_url=f"http://127.0.0.1:{daemon.port}")
        running = Running(daemon, client)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.client.aclose()
        await running.daemon.stop()


@pytest.fixture
async def kafka_connect() -> AsyncIterator[KafkaConnect]:
    connect = KafkaConnect(
        {
            "postgres-sink-connector": Connector("FAILED", ["FAILED", "RUNNING"]),
            "sqlserver-source-connector": Connector(),
        }
    )
    await connect.server.start()
    yield connect
    connect.release.set()
    await connect.server.stop()


@pytest.fixture
async def target() -> AsyncIterator[Recorder]:
    """One recording target, answering 200 (the replicas' tests: who sent which action)."""
    r = Recorder()
    await r.server.start()
    yield r
    await r.server.stop()


@pytest.fixture
async def recorder() -> AsyncIterator[Callable[..., Awaitable[Recorder]]]:
    made: list[Recorder] = []

    async def make(status: int = 200) -> Recorder:
        r = Recorder(status)
        await r.server.start()
        made.append(r)
        return r

    yield make
    for r in made:
        await r.server.stop()


@pytest.fixture
async def slack_api() -> AsyncIterator[SlackAPI]:
    """Slack's Web API stand-in, with #alerts and #cdc and a user group S0ONCALL."""
    api = SlackAPI(usergroups={"S0ONCALL": ["U0ONCALL"], "S0EMPTY": []})
    await api.start()
    yield api
    await api.stop()


def slack_config(api: SlackAPI, extra: str = "") -> str:
    """A `slack:` section pointing at the stand-in, tokens from the environment."""
    return (
        "slack:\n"
        "  bot_token_env: TEST_SLACK_TOKEN\n"
        "  signing_secret_env: TEST_SLACK_SECRET\n"
        f"  base_url: {api.base_url}\n"
        "  channel: '#alerts'\n"
        "  page_group: S0PAGE\n"
        "  retry: {initial: 50ms, max: 200ms}\n" + textwrap.indent(textwrap.dedent(extra), "  ")
    )


@pytest.fixture(autouse=True)
def _slack_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SLACK_TOKEN", TOKEN)
    monkeypatch.setenv("TEST_SLACK_SECRET", SECRET)


@pytest.fixture(params=BACKENDS)
def store_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once per backend: base_config() writes that backend's store, PostgreSQL's
    a fresh database with the migrations applied (tests/postgres.py) whose DSN is in
    $TEST_PG_DSN."""
    backend: str = request.param
    if backend == "postgres":
        monkeypatch.setenv("TEST_PG_DSN", request.getfixturevalue("migrated_dsn"))
    monkeypatch.setenv("TEST_STORE_BACKEND", backend)
    return backend
