"""Real servers started by tests, each on a free loopback port and stopped by the test: the
daemon itself as a separate process, Prometheus and Alertmanager from the Debian packages, and a
throwaway PostgreSQL cluster."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from remediator.trust import default_tls
from tests.binaries import require_binary, require_postgres_binary
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def _serving(workdir: Path, name: str, argv: list[str], port: int) -> AsyncIterator[str]:
    """Run a Prometheus-family server (output in workdir/<name>.log) until it answers
    /-/ready; yield its base URL; stop it."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(verify=default_tls()) as client, asyncio.timeout(30):
            while True:
                assert proc.poll() is None, log.read_text()[-2000:]
                try:
                    if (await client.get(f"{url}/-/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        yield url
    finally:
        _stop(proc)


@asynccontextmanager
async def prometheus(workdir: Path, config: str = "") -> AsyncIterator[str]:
    """Run Prometheus with `config` (YAML; default: no scrape targets); yield its base URL.
    Files the config names relative to itself (rule_files) go in `workdir`."""
    binary = require_binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(
        textwrap.dedent(config) or "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
    )
    port = free_port()
    argv = [
        binary,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]
    async with _serving(workdir, "prometheus", argv, port) as url:
        yield url


ALERTMANAGER_CONFIG = """\
route: {receiver: blackhole}
receivers: [{name: blackhole}]
"""


@asynccontextmanager
async def alertmanager(
    workdir: Path, config: str = ALERTMANAGER_CONFIG, port: int | None = None
) -> AsyncIterator[str]:
    """Run Alertmanager alone (clustering off) with `config` on `port` (default: a free one);
    yield its base URL. Pass a port chosen beforehand when a peer's config must name it first."""
    binary = require_binary("prometheus-alertmanager", "alertmanager")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "alertmanager.yml").write_text(textwrap.dedent(config))
    port = port or free_port()
    argv = [
        binary,
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    async with _serving(workdir, "alertmanager", argv, port) as url:
        yield url


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    proc.send_signal(sig)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- PostgreSQL ----------------------------------------------------------------------------------

PG_DATABASE = "remediator"
PG_ROLE = "remediator"


@asynccontextmanager
async def postgres() -> AsyncIterator[str]:
    """A PostgreSQL cluster of its own: initdb into a fresh directory, `postgres` on 127.0.0.1
    and a free port (password auth over TCP), a database and a role with a password. Yields the
    role's DSN; stops the server and removes the directory afterwards.

    PostgreSQL refuses to run as root, so under root (CI containers, `make test`) both programs
    run as the `postgres` user, in a directory under /tmp that user owns."""
    initdb, server = require_postgres_binary("initdb"), require_postgres_binary("postgres")
    user = "postgres" if os.geteuid() == 0 else None
    workdir = Path(tempfile.mkdtemp(prefix="remediator-pg-"))
    sockets, log_path = workdir / "sockets", workdir / "postgres.log"
    sockets.mkdir()
    if user is not None:
        for path in (workdir, sockets):
            shutil.chown(path, user, user)
    run_as: dict[str, Any] = (
        {} if user is None else {"user": user, "group": user, "extra_groups": []}
    )
    port = free_port()
    proc: subprocess.Popen[bytes] | None = None
    try:
        with log_path.open("wb") as log:
            initialising = await asyncio.create_subprocess_exec(
                initdb, "-D", str(workdir / "data"), "-U", "postgres", "--no-sync",
                "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8",
                "--no-locale", stdin=subprocess.DEVNULL, stdout=log, stderr=log, **run_as,
            )  # fmt: skip
            async with asyncio.timeout(120):
                assert await initialising.wait() == 0, log_path.read_text()[-2000:]
            proc = subprocess.Popen(
                [server, "-D", str(workdir / "data"), "-k", str(sockets), "-p", str(port),
                 "-h", "127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, **run_as,
            )  # fmt: skip
        password = secrets.token_hex(16)
        await _create_role_and_database(proc, sockets, port, password, log_path)
        yield f"postgresql://{PG_ROLE}:{password}@127.0.0.1:{port}/{PG_DATABASE}"
    finally:
        if proc is not None:
            _stop(proc, signal.SIGINT)  # PostgreSQL's "fast" shutdown
        shutil.rmtree(workdir, ignore_errors=True)


async def _create_role_and_database(
    proc: subprocess.Popen[bytes], sockets: Path, port: int, password: str, log: Path
) -> None:
    """Wait until the server takes connections (over its Unix socket, as the superuser), then
    create the role and its database."""
    async with asyncio.timeout(30):
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                admin = await asyncpg.connect(
                    host=str(sockets), port=port, user="postgres", database="postgres", timeout=5
                )
                break
            except (OSError, asyncpg.CannotConnectNowError):
                await asyncio.sleep(0.05)
    try:
        await admin.execute(f"CREATE ROLE {PG_ROLE} LOGIN PASSWORD '{password}'")
        await admin.execute(f"CREATE DATABASE {PG_DATABASE} OWNER {PG_ROLE}")
    finally:
        await admin.close()


REMEDIATOR = Path(sys.executable).parent / "remediator"


class DaemonProcess:
    """`remediator serve` in its own process on a free loopback port. The webhook and API tokens
    are the tests' (TEST_WEBHOOK_TOKEN, TEST_API_TOKEN in its environment)."""

    def __init__(self, config: Path, *args: str) -> None:
        self.config = config
        self.args = args  # more options for `serve`
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.AsyncClient(verify=default_tls(), base_url=self.url)
        self.env = {**os.environ, "TEST_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "TEST_API_TOKEN": API_TOKEN}

    async def start(self) -> None:
        with (self.config.parent / "daemon.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(REMEDIATOR),
                    "serve",
                    "--config",
                    str(self.config),
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    *self.args,
                ],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        async with asyncio.timeout(20):
            while True:
                assert self.proc.poll() is None, self.log()
                try:
                    if (await self.client.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)

    def send(self, sig: int) -> None:
        """Send a signal and return at once (SIGHUP: reload)."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    async def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        await self.client.aclose()

    async def post(self, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(
            "/alerts", json=body, headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
        )

    async def api(self, path: str) -> Any:
        r = await self.client.get(
            f"/api/v1{path}", headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
        r.raise_for_status()
        return r.json()

    async def actions(self) -> dict[str, dict[str, Any]]:
        items = (await self.api("/actions"))["items"]
        return {a["context"]["labels"]["connector"]: a for a in items}

    def log(self) -> str:
        return (self.config.parent / "daemon.log").read_text()


def start_serve(config: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`remediator serve` in its own process, ready (synchronous, for hypothesis and
    schemathesis tests); its output goes to daemon.log beside the config. The caller kills it."""
    argv = [str(REMEDIATOR), "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"]
    log_path = config.parent / "daemon.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    deadline = time.monotonic() + 20
    with httpx.Client(verify=default_tls()) as client:
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            try:
                if client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the daemon did not become ready:\n{log_path.read_text()}")
