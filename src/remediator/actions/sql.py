"""`sql`: one parameterised statement against PostgreSQL, through asyncpg.

The statement is a constant from config. Values from the alert reach it only as bind parameters
(`$1`, `$2`, ...: the extended query protocol sends them apart from the SQL text), so a label
holding `'; DROP TABLE x; --` is a string the statement compares, never SQL. The protocol also
refuses a second statement after a `;`.

The DSN is a secret (`dsn_env` or `dsn_file`): it never reaches a stored request, a record or a
log line; error messages are scrubbed of it. The stored request holds the statement and the
parameter values.

Each attempt opens its own connection, runs the statement in a transaction and closes it.
Actions are rare (an incident's pause, its resume): a pool would hold connections open for hours
to save a few milliseconds once in a while, and a fresh connection follows a failover or a
rotated password. `timeout` bounds the attempt on both sides: the server's `statement_timeout`
and the client's wait. `expect_rows` checks the row count the server reports (`UPDATE 1`); any
other count rolls the transaction back, so an UPDATE that matched three rows where one was
expected changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from remediator.actions import COMMON_KEYS, ActionCommon, ActionRegistry, ParseEnv
from remediator.actions.base import (
    AttemptContext,
    AttemptResult,
    Prepared,
    RenderContext,
    RetryPolicy,
    Template,
)
from remediator.schema import Node, Secret

KEYS = COMMON_KEYS | {"dsn_env", "dsn_file", "statement", "params", "expect_rows", "target"}
ROW_KEYS = frozenset({"min", "max"})
MAX_RETURNED = 20  # rows of a RETURNING clause kept in the output
CLOSE_GRACE = 2.0  # seconds beyond the timeout for the server's own timeout to arrive
_PARAM = re.compile(r"\$(\d+)")
_TEMPLATE_LIKE = re.compile(r"\{\$?[A-Za-z_][A-Za-z0-9_.]*\}")
_TRUE, _FALSE = {"true", "t", "yes", "y", "on", "1"}, {"false", "f", "no", "n", "off", "0"}
_INTEGERS = {"int2", "int4", "int8", "oid"}
_FLOATS = {"float4", "float8"}
_AS_TEXT = {"text", "varchar", "bpchar", "name", "unknown", "uuid", "json", "jsonb", "citext"}
# SQLSTATEs after which another attempt can succeed: the transaction was rolled back and the
# cause is passing (a lock, a failover, the server starting or overloaded, a statement timeout).
_RETRYABLE_CLASSES = ("08", "53")
# data exception, integrity constraint violation: the alert's values, not a sick database
_DATA_CLASSES = ("22", "23")
_RETRYABLE_STATES = {"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03", "25006"}


@dataclass(frozen=True, slots=True)
class RowCount:
    """`expect_rows: 1` or `{min: 1, max: 5}`."""

    minimum: int
    maximum: int | None

    def holds(self, count: int) -> bool:
        return count >= self.minimum and (self.maximum is None or count <= self.maximum)

    def __str__(self) -> str:
        if self.maximum == self.minimum:
            return f"exactly {self.minimum} row{'' if self.minimum == 1 else 's'}"
        if self.maximum is None:
            return f"at least {self.minimum} rows"
        return f"{self.minimum} to {self.maximum} rows"


class _Refused(Exception):
    """The statement ran but its outcome is not what the action expects: roll back."""


@dataclass(frozen=True, slots=True)
class SqlAction:
    name: str
    timeout: float
    retry: RetryPolicy
    dsn: Secret
    statement: str
    params: tuple[Template, ...]
    expect_rows: RowCount | None
    target: str
    description: str = ""
    kind: str = "sql"

    def prepare(self, ctx: RenderContext) -> Prepared:
        return {"statement": self.statement, "params": [p.render(ctx) for p in self.params]}

    def describe(self, prepared: Prepared) -> str:
        statement = " ".join(prepared["statement"].split())
        values = ", ".join(f"${i}={v!r}" for i, v in enumerate(prepared["params"], 1))
        return f"SQL on {self.target}: {statement}" + (f" with {values}" if values else "")

    async def attempt(self, prepared: Prepared, ctx: AttemptContext) -> AttemptResult:
        try:
            async with asyncio.timeout(ctx.timeout + CLOSE_GRACE):
                return await self._run(prepared, ctx.timeout)
        except TimeoutError:
            return AttemptResult(False, f"no answer within {ctx.timeout:g}s", retryable=True)

    async def _run(self, prepared: Prepared, seconds: float) -> AttemptResult:
        try:
            conn = await asyncpg.connect(
                self.dsn.reveal(),
                timeout=seconds,
                statement_cache_size=0,
                server_settings={
                    "statement_timeout": str(max(1, int(seconds * 1000))),
                    "application_name": "remediator",
                },
            )
        except Exception as e:  # asyncpg raises OSError, its own errors and ValueError here
            return self._failure("cannot connect", e)
        try:
            result = await self._execute(conn, prepared, seconds)
        except BaseException:
            conn.terminate()  # cancelled, or an error we did not expect: drop it at once
            raise
        try:
            await conn.close(timeout=CLOSE_GRACE)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            conn.terminate()
        return result

    async def _execute(
        self, conn: asyncpg.Connection, prepared: Prepared, seconds: float
    ) -> AttemptResult:
        try:
            async with conn.transaction():
                statement = await conn.prepare(prepared["statement"], timeout=seconds)
                args = _bind(prepared["params"], statement.get_parameters())
                rows = await statement.fetch(*args, timeout=seconds + CLOSE_GRACE)
                status = statement.get_statusmsg()
                self._check_count(status)
        except _Refused as e:
            return AttemptResult(False, str(e), target_fault=False)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
            return self._failure("failed", e)
        output = {"status": status, "rows": _row_count(status)}
        if rows:
            output["returned"] = [dict(r) for r in rows[:MAX_RETURNED]]
        return AttemptResult(True, status, output=json.dumps(output, default=str))

    def _check_count(self, status: str) -> None:
        if self.expect_rows is None:
            return
        count = _row_count(status)
        if count is None:
            raise _Refused(f"{status}: no row count to compare with {self.expect_rows}")
        if not self.expect_rows.holds(count):
            raise _Refused(f"{status}: expected {self.expect_rows}, got {count}; rolled back")

    def _failure(self, what: str, error: BaseException) -> AttemptResult:
        state = getattr(error, "sqlstate", None)
        retryable = _retryable(error, state)
        message = self._scrub(str(error).strip() or type(error).__name__)
        shown = f"{type(error).__name__}" + (f" [{state}]" if state else "") + f": {message}"
        return AttemptResult(
            False,
            f"{what}: {shown}",
            retryable=retryable,
            target_fault=state is None or state[:2] not in _DATA_CLASSES,
        )

    def _scrub(self, message: str) -> str:
        """Error messages never carry the DSN or its password."""
        dsn = self.dsn.reveal()
        message = message.replace(dsn, "<dsn>")
        password = urlsplit(dsn).password
        return message.replace(password, "***") if password else message


def _retryable(error: BaseException, state: str | None) -> bool:
    if isinstance(error, OSError | TimeoutError | asyncpg.ConnectionDoesNotExistError):
        return True
    if state is None:
        return False
    return state in _RETRYABLE_STATES or state[:2] in _RETRYABLE_CLASSES


def _row_count(status: str) -> int | None:
    """`UPDATE 1` -> 1, `INSERT 0 3` -> 3, `CREATE TABLE` -> None."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else None


def _bind(values: Sequence[str], types: Sequence[Any]) -> list[Any]:
    """Each parameter value, a string from the alert, as the Python type asyncpg expects for the
    parameter's PostgreSQL type. Conversion only: the value stays a bind parameter."""
    if len(values) != len(types):
        raise _Refused(f"the statement takes {len(types)} parameters, params has {len(values)}")
    return [_convert(i, v, t.name) for i, (v, t) in enumerate(zip(values, types, strict=True), 1)]


def _convert(index: int, value: str, type_name: str) -> Any:
    try:
        if type_name in _INTEGERS:
            return int(value)
        if type_name in _FLOATS:
            return float(value)
        if type_name == "numeric":
            return Decimal(value)
    except (ValueError, InvalidOperation):
        raise _Refused(f"parameter ${index} is {type_name}, and {value!r} is not one") from None
    if type_name == "bool":
        if value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise _Refused(f"parameter ${index} is bool, and {value!r} is not true or false")
    if type_name in _AS_TEXT:
        return value
    raise _Refused(
        f"parameter ${index} is {type_name}: pass it as text and cast in the statement "
        f"(${index}::text::{type_name})"
    )


# -- config ----------------------------------------------------------------------------------


def build(node: Node, common: ActionCommon, env: ParseEnv) -> SqlAction:
    node.mapping(KEYS)
    dsn = node.secret("dsn", env.base_dir)
    if dsn is None:
        raise node.fail("give dsn_env or dsn_file (a postgresql:// URI)")
    if urlsplit(dsn.reveal()).scheme not in ("postgresql", "postgres"):
        raise node.fail(f"the DSN from {dsn.source} is not a postgresql:// URI")
    statement_node = node.require("statement")
    statement = statement_node.string()
    params = tuple(Template.parse(item) for item in node.children("params"))
    _check_statement(statement_node, statement, len(params))
    target = node.get("target")
    return SqlAction(
        name=common.name,
        timeout=common.timeout,
        retry=common.retry,
        dsn=dsn,
        statement=statement,
        params=params,
        expect_rows=node.opt("expect_rows", _row_expectation, None),
        target=env.target(target).name if target is not None else _default_target(dsn),
        description=common.description,
    )


def _check_statement(node: Node, statement: str, given: int) -> None:
    found = _TEMPLATE_LIKE.search(statement)
    if found:
        raise node.fail(
            f"{found.group(0)} in a statement is not a placeholder: pass alert values as "
            "params and write $1, $2, ... in the statement"
        )
    used = {int(n) for n in _PARAM.findall(statement)}
    expected = set(range(1, given + 1))
    if used != expected:
        shown = ", ".join(f"${n}" for n in sorted(used)) or "none"
        raise node.fail(f"the statement uses {shown}, but params has {given} value(s)")


def _row_expectation(node: Node) -> RowCount:
    if isinstance(node.value, int) and not isinstance(node.value, bool):
        count = node.integer(minimum=0)
        return RowCount(count, count)
    node.mapping(ROW_KEYS)
    minimum = node.opt("min", lambda n: n.integer(minimum=0), 0)
    maximum = node.opt("max", lambda n: n.integer(minimum=0), None)
    if maximum is not None and maximum < minimum:
        raise node.fail(f"max ({maximum}) is below min ({minimum})")
    if not node.has("min") and not node.has("max"):
        raise node.fail("give a row count, or min and/or max")
    return RowCount(minimum, maximum)


def _default_target(dsn: Secret) -> str:
    """Actions sharing a DSN share a target (cooldowns, breakers): `sql:INGESTION_DB_DSN`."""
    return "sql:" + dsn.source.lstrip("$").rsplit("/", 1)[-1]


def register(registry: ActionRegistry) -> None:
    registry.register("sql", build, timeout=10.0, retries=2)
