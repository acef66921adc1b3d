"""The `sql` kind against a real PostgreSQL server started for this module (tests/peers.py):
the ingestion runbook's kill switch, row counts, hostile values, SQL errors, timeouts, retries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import pytest_asyncio

from remediator.actions.base import AttemptResult, RenderContext
from remediator.actions.sql import SqlAction
from remediator.config import load_config
from remediator.trust import default_tls
from tests.actions.kinds import (
    FAST_RETRIES,
    actions_yaml,
    attempt_ctx,
    config_problems,
    load,
    run_once,
)
from tests.conftest import StartDaemon, base_config
from tests.peers import free_port
from tests.postgres import PostgresServer

pytestmark = pytest.mark.postgres

KILL_SWITCH = "UPDATE workspace_settings SET ingestion_paused = true WHERE workspace_id = $1"
HOSTILE = "'; DROP TABLE workspace_settings; --"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def dsn(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A database of this module's own on the session's server (tests/postgres.py)."""
    name = await postgres_server.create_database()
    yield postgres_server.dsn(name)
    await postgres_server.drop_database(name)


@pytest.fixture
async def db(dsn: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[asyncpg.Connection]:
    """A fresh workspace_settings table (the ingestion runbook's), the DSN in $PG_DSN."""
    monkeypatch.setenv("PG_DSN", dsn)
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        """
        DROP TABLE IF EXISTS workspace_settings;
        CREATE TABLE workspace_settings (
            workspace_id text PRIMARY KEY,
            region text NOT NULL,
            max_uploads int NOT NULL DEFAULT 10,
            ingestion_paused boolean NOT NULL DEFAULT false
        );
        INSERT INTO workspace_settings (workspace_id, region) VALUES
            ('ws-1', 'eu'), ('ws-2', 'eu'), ('ws-3', 'us');
        """
    )
    yield conn
    await conn.close()


async def paused(conn: asyncpg.Connection) -> dict[str, bool]:
    rows = await conn.fetch("SELECT workspace_id, ingestion_paused FROM workspace_settings")
    return {r["workspace_id"]: r["ingestion_paused"] for r in rows}


@pytest.fixture
def make(write_config: Callable[..., Path]) -> Callable[..., SqlAction]:
    def build(**definition: Any) -> SqlAction:
        spec = {"kind": "sql", "dsn_env": "PG_DSN"} | definition
        action = load(write_config, {}, act=spec).actions["act"]
        assert isinstance(action, SqlAction)
        return action

    return build


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=default_tls()) as c:
        yield c


def kill_switch(make: Callable[..., SqlAction], **more: Any) -> SqlAction:
    return make(statement=KILL_SWITCH, params=["{workspace_id}"], expect_rows=1, **more)


async def attempt(
    action: SqlAction, client: httpx.AsyncClient, timeout: float = 5.0, **labels: str
) -> AttemptResult:
    prepared = action.prepare(RenderContext({"alertname": "X", **labels}))
    return await action.attempt(prepared, attempt_ctx(client, timeout))


# --- the kill switch ---------------------------------------------------------------------------


async def test_the_kill_switch_pauses_one_workspace(
    db: asyncpg.Connection, make: Callable[..., SqlAction], client: httpx.AsyncClient, dsn: str
) -> None:
    action = kill_switch(make)
    prepared = action.prepare(RenderContext({"workspace_id": "ws-2"}))

    result = await action.attempt(prepared, attempt_ctx(client))

    assert result == AttemptResult(True, "UPDATE 1", output='{"status": "UPDATE 1", "rows": 1}')
    assert await paused(db) == {"ws-1": False, "ws-2": True, "ws-3": False}
    assert prepared == {"statement": KILL_SWITCH, "params": ["ws-2"]}
    assert action.describe(prepared) == f"SQL on sql:PG_DSN: {KILL_SWITCH} with $1='ws-2'"
    password = urlsplit(dsn).password
    assert password
    assert password not in json.dumps(prepared) + action.describe(prepared)
    assert password not in repr(action)


async def test_zero_rows_is_a_failure_that_says_so(
    db: asyncpg.Connection, make: Callable[..., SqlAction], client: httpx.AsyncClient
) -> None:
    result = await attempt(kill_switch(make), client, workspace_id="ws-404")
    assert result == AttemptResult(
        False, "UPDATE 0: expected exactly 1 row, got 0; rolled back", target_fault=False
    )  # the alert named a workspace that does not exist: the database is fine


async def test_more_rows_than_expected_are_rolled_back(
    db: asyncpg.Connection, make: Callable[..., SqlAction], client: httpx.AsyncClient
) -> None:
    action = make(
        statement="UPDATE workspace_settings SET ingestion_paused = true WHERE region = $1",
        params=["{region}"],
        expect_rows=1,
    )
    result = await attempt(action, client, region="eu")
    assert (result.ok, result.retryable) == (False, False)
    assert result.detail == "UPDATE 2: expected exactly 1 row, got 2; rolled back"
    assert not any((await paused(db)).values())


@pytest.mark.parametrize(
    ("expect", "region", "ok"),
    [
        ({"min": 1}, "eu", True),
        ({"min": 3}, "eu", False),
        ({"max": 1}, "us", True),
        ({"min": 1, "max": 2}, "eu", True),
        ({"min": 0, "max": 0}, "mars", True),
        (0, "eu", False),
    ],
)
async def test_row_ranges(
    db: asyncpg.Connection,
    make: Callable[..., SqlAction],
    client: httpx.AsyncClient,
    expect: Any,
    region: str,
    ok: bool,
) -> None:
    action = make(
        statement="UPDATE workspace_settings SET ingestion_paused = true WHERE region = $1",
        params=["{region}"],
        expect_rows=expect,
    )
    result = await attempt(action, client, region=region)
    assert result.ok is ok, result.detail


async def test_returned_rows_are_the_output_for_later_actions(
    db: asyncpg.Connection, make: Callable[..., SqlAction], client: httpx.AsyncClient
) -> None:
    """An undo action can read `{$results.<action>.returned[0].max_uploads}`."""
    action = make(
        statement="UPDATE workspace_settings AS w SET max_uploads = 0 FROM workspace_settings o "
        "WHERE w.workspace_id = o.workspace_id AND w.workspace_id = $1 "
        "RETURNING o.max_uploads",
        params=["{workspace_id}"],
        expect_rows=1,
    )
    result = await attempt(action, client, workspace_id="ws-1")
    assert json.loads(result.output) == {
        "status": "UPDATE 1",
        "rows": 1,
        "returned": [{"max_uploads": 10}],
    }
    undo = RenderContext({}, results={"act": result.output})
    restore = make(
        statement="UPDATE workspace_settings SET max_uploads = $1 WHERE workspace_id = 'ws-1'",
        params=["{$results.act.returned[0].max_uploads}"],
        expect_rows=1,
    )
    assert (await restore.attempt(restore.prepare(undo), attempt_ctx(client))).ok
    assert (
        await db.fetchval("SELECT max_uploads FROM workspace_settings WHERE workspace_id = 'ws-1'")
        == 10
    )


# --- alert data stays data -----------------------------------------------------------------------


async def test_a_hostile_label_is_a_value_never_sql(
    db: asyncpg.Connection, make: Callable[..., SqlAction], client: httpx.AsyncClient
) -> None:
    missing = await attempt(kill_switch(make), client, workspace_id=HOSTILE)
    await db.execute(
        "INSERT INTO workspace_settings (workspace_id, region) VALUES ($1, 'x')", HOSTILE
    )
    found = await attempt(kill_switch(make), client, workspace_id=HOSTILE)

    assert missing.detail == "UPDATE 0: expected exactly 1 row, got 0; rolled back"
    assert (found.ok, found.detail) == (True, "UPDATE 1")
    assert (await paused(db))[HOSTILE] is True
    assert await db.fetchval("SELECT count(*) FROM workspace_settings") == 4


async def test_a_second_statement_is_refused_by_the_protocol(
    db: asyncpg.Connection, make: Callable[..., SqlAction], client: httpx.AsyncClient
) -> None:
    action = make(statement=KILL_SWITCH + "; DROP TABLE workspace_settings", params=["{w}"])
    result = await attempt(action, client, w="ws-1")
    assert (result.ok, result.retryable) == (False, False)
    assert result.detail.startswith("failed: PostgresSyntaxError [42601]: cannot insert multiple")
    assert await db.fetchval("SELECT count(*) FROM workspace_settings") == 3


# --- parameter types -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "value", "detail"),
    [
        ("UPDATE workspace_settings SET max_uploads = $1 WHERE workspace_id = 'ws-1'", "42", None),
        (
            "UPDATE workspace_settings SET max_uploads = $1 WHERE workspace_id = 'ws-1'",
            "4 2",
            "parameter $1 is int4, and '4 2' is not one",
        ),
        (
            "UPDATE workspace_settings SET ingestion_paused = $1 WHERE workspace_id = 'ws-1'",
            "TRUE",
            None,
        ),
        (
            "UPDATE workspace_settings SET ingestion_paused = $1 WHERE workspace_id = 'ws-1'",
            "maybe",
            "parameter $1 is bool, and 'maybe' is not true or false",
        ),
        (
            "UPDATE workspace_settings SET ingestion_paused = true WHERE now() > $1",
            "2026-01-01T00:00:00Z",
            "parameter $1 is timestamptz: pass it as text and cast in the statement "
            "($1::text::timestamptz)",
        ),
        (
            "UPDATE workspace_settings SET ingestion_paused = true "
            "WHERE workspace_id = 'ws-1' AND now() > $1::text::timestamptz",
            "2026-01-01T00:00:00Z",
            None,
        ),
    ],
)
async def test_values_are_bound_as_the_parameters_type(
    db: asyncpg.Connection,
    make: Callable[..., SqlAction],
    client: httpx.AsyncClient,
    statement: str,
    value: str,
    detail: str | None,
) -> None:
    result = await attempt(
        make(statement=statement, params=["{v}"], expect_rows=1), client, v=value
    )
    assert (result.ok, result.detail) == (detail is None, detail or "UPDATE 1")


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "params", "error", "sick"),
    [
        ("UPDAT workspace_settings SET x = 1", [], "PostgresSyntaxError [42601]", True),
        ("UPDATE no_such_table SET x = 1", [], "UndefinedTableError [42P01]", True),
        (
            "INSERT INTO workspace_settings (workspace_id, region) VALUES ($1, 'eu')",
            ["ws-1"],
            "UniqueViolationError [23505]",
            False,  # the alert's data: not a reason to open the database's breaker
        ),
        (
            "INSERT INTO workspace_settings (workspace_id, region) VALUES ($1, NULL)",
            ["ws-9"],
            "NotNullViolationError [23502]",
            False,
        ),
        ("SELECT 1 / ($1::text)::int", ["0"], "DivisionByZeroError [22012]", False),
        ("UPDATE pg_authid SET rolname = $1", ["x"], "InsufficientPrivilegeError [42501]", True),
    ],
)
async def test_sql_errors_are_final(
    db: asyncpg.Connection,
    make: Callable[..., SqlAction],
    client: httpx.AsyncClient,
    statement: str,
    params: list[str],
    error: str,
    sick: bool,
) -> None:
    result = await attempt(make(statement=statement, params=params), client)
    assert (result.ok, result.retryable) == (False, False)
    assert result.detail.startswith(f"failed: {error}: "), result.detail
    assert result.sick_target is sick


async def test_the_statement_timeout_is_the_servers_and_may_be_retried(
    db: asyncpg.Connection, make: Callable[..., SqlAction], client: httpx.AsyncClient
) -> None:
    result = await attempt(make(statement="SELECT pg_sleep(10)"), client, timeout=0.3)
    assert (result.ok, result.retryable) == (False, True)
    assert result.detail == (
        "failed: QueryCanceledError [57014]: canceling statement due to statement timeout"
    )


async def test_a_refused_connection_may_be_retried(
    db: asyncpg.Connection,
    make: Callable[..., SqlAction],
    client: httpx.AsyncClient,
    dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parts = urlsplit(dsn)
    elsewhere = parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{free_port()}")
    monkeypatch.setenv("PG_DSN", urlunsplit(elsewhere))
    result = await attempt(kill_switch(make), client, workspace_id="ws-1")
    assert (result.ok, result.retryable) == (False, True)
    assert result.detail.startswith("cannot connect: ConnectionRefusedError: ")
    assert str(parts.password) not in result.detail


async def test_a_wrong_password_is_final_and_not_shown(
    db: asyncpg.Connection,
    make: Callable[..., SqlAction],
    client: httpx.AsyncClient,
    dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parts = urlsplit(dsn)
    wrong = parts._replace(
        netloc=f"{parts.username}:not-the-password@{parts.hostname}:{parts.port}"
    )
    monkeypatch.setenv("PG_DSN", urlunsplit(wrong))
    result = await attempt(kill_switch(make), client, workspace_id="ws-1")
    assert (result.ok, result.retryable) == (False, False)
    assert result.detail == (
        "cannot connect: InvalidPasswordError [28P01]: password authentication failed for user "
        '"remediator"'
    )


# --- through the executor: a lock held, then released ------------------------------------------


async def test_a_statement_waiting_on_a_lock_times_out_then_a_retry_succeeds(
    db: asyncpg.Connection,
    dsn: str,
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
) -> None:
    """Someone holds the workspace's row: the first attempt waits, the server cancels it at the
    statement timeout (nothing changed), the lock goes away, the retry pauses the workspace."""
    holder = await asyncpg.connect(dsn)
    lock = holder.transaction()
    await lock.start()
    await holder.execute("SELECT 1 FROM workspace_settings WHERE workspace_id = 'ws-1' FOR UPDATE")

    async def release_after_the_first_attempt_gave_up() -> None:
        waiters = "SELECT array_agg(pid) FROM pg_locks WHERE NOT granted"
        async with asyncio.timeout(10):
            while not (first := await db.fetchval(waiters)):
                await asyncio.sleep(0.01)
            while first[0] in (await db.fetchval(waiters) or []):
                await asyncio.sleep(0.01)
        await lock.rollback()

    releasing = asyncio.create_task(release_after_the_first_attempt_gave_up())
    definition = {
        "kind": "sql",
        "dsn_env": "PG_DSN",
        "statement": KILL_SWITCH,
        "params": ["{workspace_id}"],
        "expect_rows": 1,
        "timeout": "300ms",
        "retries": 2,
    } | FAST_RETRIES
    action = await run_once(write_config, start_daemon, {}, definition, workspace_id="ws-1")
    await releasing
    await holder.close()

    assert (action["status"], action["attempts"], action["detail"]) == (
        "succeeded",
        2,
        f"SQL on sql:PG_DSN: {KILL_SWITCH} with $1='ws-1': UPDATE 1",
    )
    assert action["request"] == {"statement": KILL_SWITCH, "params": ["ws-1"]}
    assert (await paused(db))["ws-1"] is True


async def test_connection_failures_are_retried_by_the_executor(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PG_DSN", f"postgresql://u:p@127.0.0.1:{free_port()}/d")
    definition = {
        "kind": "sql",
        "dsn_env": "PG_DSN",
        "statement": "SELECT 1",
        "retries": 2,
    } | FAST_RETRIES
    action = await run_once(write_config, start_daemon, {}, definition)
    assert (action["status"], action["attempts"]) == ("failed", 3)
    assert "cannot connect: ConnectionRefusedError" in action["detail"]


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("definition", "problem"),
    [
        ({"statement": "SELECT 1"}, "actions.act: give dsn_env or dsn_file"),
        (
            {"dsn_env": "BAD_DSN", "statement": "SELECT 1"},
            "actions.act: the DSN from $BAD_DSN is not a postgresql:// URI",
        ),
        ({"dsn": "postgresql://x", "statement": "SELECT 1"}, "actions.act.dsn: inline secrets"),
        (
            {"dsn_env": "PG_DSN", "statement": KILL_SWITCH},
            "actions.act.statement: the statement uses $1, but params has 0 value(s)",
        ),
        (
            {"dsn_env": "PG_DSN", "statement": "SELECT $2", "params": ["a", "b"]},
            "actions.act.statement: the statement uses $2, but params has 2 value(s)",
        ),
        (
            {"dsn_env": "PG_DSN", "statement": "UPDATE t SET x = 1 WHERE id = '{workspace_id}'"},
            "actions.act.statement: {workspace_id} in a statement is not a placeholder",
        ),
        (
            {"dsn_env": "PG_DSN", "statement": "SELECT 1", "expect_rows": -1},
            "actions.act.expect_rows: must be at least 0",
        ),
        (
            {"dsn_env": "PG_DSN", "statement": "SELECT 1", "expect_rows": {"min": 3, "max": 1}},
            "actions.act.expect_rows: max (1) is below min (3)",
        ),
        (
            {"dsn_env": "PG_DSN", "statement": "SELECT 1", "expect_rows": {}},
            "actions.act.expect_rows: give a row count, or min and/or max",
        ),
        (
            {"dsn_env": "PG_DSN", "statement": "SELECT 1", "target": "nope"},
            "actions.act.target: unknown target 'nope'",
        ),
    ],
)
def test_config_errors(
    write_config: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    definition: dict[str, Any],
    problem: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PG_DSN", "postgresql://u:secret-pw@db.test/d")
    monkeypatch.setenv("BAD_DSN", "mysql://u:secret-pw@db.test/d")
    [found] = config_problems(write_config, {}, act={"kind": "sql"} | definition)
    assert found.startswith(f"remediator.yaml: {problem}"), found
    assert "secret-pw" not in found


def test_targets_name_the_dsn_or_are_given(
    write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PG_DSN", "postgresql://u:p@db.test/d")
    (tmp_path / "ingestion-db").write_text("postgresql://u:p@db.test/d\n")
    config = load_config(
        write_config(
            base_config({"web": "http://127.0.0.1:9"})
            + "  ingestion-db: {description: the ingestion database}\n"
            + actions_yaml(
                env={"kind": "sql", "dsn_env": "PG_DSN", "statement": "SELECT 1"},
                file={"kind": "sql", "dsn_file": "ingestion-db", "statement": "SELECT 1"},
                named={
                    "kind": "sql",
                    "dsn_env": "PG_DSN",
                    "statement": "SELECT 1",
                    "target": "ingestion-db",
                },
            )
        )
    )
    assert {n: a.target for n, a in config.actions.items()} == {
        "env": "sql:PG_DSN",
        "file": "sql:ingestion-db",
        "named": "ingestion-db",
    }
    assert (config.actions["env"].timeout, config.actions["env"].retry.retries) == (10.0, 2)


@pytest.mark.parametrize(
    "value",
    ["' OR 1=1 --", "'; DROP TABLE workspace_settings; --", "$1", "\\", "{{ 7*7 }}", "ingestión"],
)
async def test_a_hostile_label_is_a_bind_parameter_never_sql(
    db: asyncpg.Connection, make: Callable[..., SqlAction], client: httpx.AsyncClient, value: str
) -> None:
    result = await attempt(make(statement="SELECT $1::text AS v", params=["{v}"]), client, v=value)
    assert result.ok, result.detail
    assert json.loads(result.output)["returned"] == [{"v": value}]
    assert await db.fetchval("SELECT count(*) FROM workspace_settings") > 0
