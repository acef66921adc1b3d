"""A PostgreSQL server for the whole test session, and a fresh database for each test.

initdb into a temporary directory (as the `postgres` user when the tests run as root:
PostgreSQL refuses root), the server on 127.0.0.1 and a free port, its Unix socket in the same
directory; started once, on first use, and stopped by its PID when the session ends. Each test
gets a database of its own, owned by an unprivileged role (what the README tells an operator to
create), and dropped afterwards. Missing binaries skip the test, and fail it in CI
(tests/binaries.py).

    def test_x(postgres_dsn: str) -> None: ...        # a fresh, empty database
    def test_y(migrated_dsn: str) -> None: ...        # a fresh database, migrations applied

A migrated database is a copy (CREATE DATABASE ... TEMPLATE) of one that the store's own
migration runner migrated once per session: what a store opening an empty database would make,
without running every migration again for each test. Migrating an empty database stays tested
(tests/store/test_postgres.py, on `postgres_dsn`).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from remediator.schema import Secret
from remediator.store.postgres import PostgresStore
from remediator.store.settings import PostgresSettings
from tests.binaries import require_postgres_binary

ROLE = "remediator"


class PostgresServer:
    """`durable=False` (tests): fsync off, for speed; the bench runs it durable, as deployed."""

    def __init__(self, durable: bool = False, parent: Path | None = None) -> None:
        self.durable = durable
        self.workdir = Path(tempfile.mkdtemp(prefix="remediator-pg-", dir=parent))
        self.sockets = self.workdir / "sockets"
        self.log = self.workdir / "postgres.log"
        self.port = _free_port()
        self.password = secrets.token_hex(16)
        self.proc: subprocess.Popen[bytes] | None = None
        self._migrated: str | None = None  # migrated_template(), made on first use
        user = "postgres" if os.geteuid() == 0 else None
        self._as: dict[str, Any] = (
            {} if user is None else {"user": user, "group": user, "extra_groups": []}
        )

    def start(self) -> None:
        initdb = require_postgres_binary("initdb")
        self.sockets.mkdir()
        if self._as:
            for path in (self.workdir, self.sockets):
                shutil.chown(path, "postgres", "postgres")
        data = str(self.workdir / "data")
        with self.log.open("wb") as log:
            subprocess.run(
                [initdb, "-D", data, "-U", "postgres", "--no-sync", "--auth-local=trust",
                 "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-locale"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=True, timeout=120,
                **self._as,
            )  # fmt: skip
        self._launch()
        asyncio.run(self._create_role())

    def _launch(self) -> None:
        server, data = require_postgres_binary("postgres"), str(self.workdir / "data")
        fast = [] if self.durable else ["-c", "fsync=off", "-c", "full_page_writes=off"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [server, "-D", data, "-k", str(self.sockets), "-p", str(self.port),
                 "-h", "127.0.0.1", "-c", "max_connections=300", *fast],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, **self._as,
            )  # fmt: skip

    def halt(self) -> None:
        """Stop the server as `pg_ctl stop -m fast` does (SIGINT to its PID: every session is
        ended, the port closed) and keep its data: resume() starts it again."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)

    async def resume(self) -> None:
        """Start the halted server again on the same port and data; return once it takes
        connections."""
        self._launch()
        admin = await self._connected()
        await admin.close()

    def stop(self) -> None:
        """Stop the server by its PID (SIGINT: PostgreSQL's fast shutdown); remove its files."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def dsn(self, database: str) -> str:
        return f"postgresql://{ROLE}:{self.password}@127.0.0.1:{self.port}/{database}"

    async def admin(self) -> asyncpg.Connection:
        """The superuser, over the Unix socket."""
        return await asyncpg.connect(
            host=str(self.sockets), port=self.port, user="postgres", database="postgres"
        )

    async def create_database(self, template: str = "template1") -> str:
        name = f"t_{secrets.token_hex(6)}"
        admin = await self.admin()
        try:
            await admin.execute(f"CREATE DATABASE {name} OWNER {ROLE} TEMPLATE {template}")
        finally:
            await admin.close()
        return name

    async def migrated_template(self) -> str:
        """The database that migrated copies are made from: migrated by the store, once."""
        if self._migrated is None:
            name = await self.create_database()
            store = PostgresStore(PostgresSettings(Secret(self.dsn(name), "template"), pool_size=1))
            await store.open()
            await store.close()
            await self._until_unused(name)
            self._migrated = name
        return self._migrated

    async def _until_unused(self, name: str) -> None:
        """A closed connection's backend may linger a moment; a copy needs none left."""
        admin = await self.admin()
        try:
            async with asyncio.timeout(30):
                query = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
                while await admin.fetchval(query, name):
                    await asyncio.sleep(0.01)
        finally:
            await admin.close()

    async def drop_database(self, name: str) -> None:
        admin = await self.admin()
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()

    async def _connected(self) -> asyncpg.Connection:
        """The superuser's connection, once the server takes connections."""
        async with asyncio.timeout(60):
            while True:
                assert self.proc is not None
                assert self.proc.poll() is None, self.log.read_text()
                try:
                    return await self.admin()
                except (OSError, asyncpg.CannotConnectNowError):
                    await asyncio.sleep(0.05)

    async def _create_role(self) -> None:
        admin = await self._connected()
        try:
            await admin.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{self.password}'")
        finally:
            await admin.close()


def replica_store(lease: str = "2s", heartbeat: str = "200ms", **more: str) -> str:
    """The `store:` line of a replica on the database in TEST_PG_DSN, with a short lease and
    heartbeat (leader election in seconds, not the defaults' tens of seconds)."""
    options = "".join(f", {name}: {value}" for name, value in more.items())
    return (
        f"store: {{postgres: {{dsn_env: TEST_PG_DSN, lease: {lease}, heartbeat: {heartbeat}"
        f"{options}}}}}"
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
async def postgres_dsn(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """The DSN of a fresh database, owned by the unprivileged role; dropped after the test."""
    name = await postgres_server.create_database()
    yield postgres_server.dsn(name)
    await postgres_server.drop_database(name)


@pytest.fixture
async def migrated_dsn(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """The DSN of a fresh database with every migration applied (a copy of the migrated
    template), owned by the unprivileged role; dropped after the test."""
    name = await postgres_server.create_database(await postgres_server.migrated_template())
    yield postgres_server.dsn(name)
    await postgres_server.drop_database(name)
