"""One transaction on either backend, as the store's shared SQL sees it.

A store operation is `async def op(tx: Tx) -> T`, written once. On PostgreSQL its awaits are
asyncpg's; on SQLite they never suspend, so the writer thread drives the coroutine to its end
without an event loop (`run_sync`). Rows are read by column name on both."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from remediator.store.dialect import Dialect

T = TypeVar("T")


class Row(Protocol):
    """sqlite3.Row and asyncpg.Record alike: columns by name (or position, for one value)."""

    def __getitem__(self, key: str | int) -> Any: ...


class Tx(Protocol):
    """Statements use `?` placeholders; the backend translates them for its dialect."""

    @property
    def dialect(self) -> Dialect: ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; the rows it changed."""
        ...

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None: ...
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...
    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...
    async def fetchval(self, sql: str, *args: Any) -> Any:
        """The first column of the first row; None without a row."""
        ...


Op = Callable[[Tx], Coroutine[Any, Any, T]]


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (an op on SQLite's blocking connection) to its end."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError("a store operation awaited something other than its transaction")


def literal(value: str) -> str:
    """`'value'`: one of the store's own constants (a status) written into a statement. A
    column compared with a bound parameter, where a partial index's WHERE names that column
    (claims_running_lease: `status = 'running'`), makes SQLite re-prepare the statement at
    every execution, since the plan may depend on the value: 40-110 us more for a start's
    facts. With the value in the text, it is prepared once."""
    assert "'" not in value
    return f"'{value}'"


def marks(values: Sequence[Any]) -> str:
    """`?, ?, ?` for an IN list of `values`."""
    return ", ".join("?" for _ in values)


class Runner:
    """What the SQL modules need of a backend: run an op in a write transaction (committed
    durably before it returns) or as a read."""

    # the leadership epoch this process decides in (store/leadership.py); None: not fenced
    epoch: int | None = None

    async def _write(
        self,
        op: Op[T],
        urgent: bool = False,
        serial: bool = False,
        lazy: bool = False,
        relaxed: bool = False,
    ) -> T:
        """`urgent`: someone waits for this commit to answer (a journal append). `serial`: a
        judge-and-start write, that holds the starts lock, or a finish that frees a target:
        committed in the order submitted, a backend may commit several in one transaction.
        `lazy`: nobody answers or acts on this commit at once (an action's outcome): a backend
        may hold it a few milliseconds to commit it with other writes. `relaxed`: a write that is
        decided again, or harmlessly redone, if a power cut loses it (an engine batch, which marks
        its journal entries decided; an outcome, which recovery makes `interrupted`), never one
        that acknowledges something or starts an action: a backend may commit it without waiting
        for the disk, durable with the next commit that does. Durable by default."""
        raise NotImplementedError

    async def _read(self, op: Op[T]) -> T:
        raise NotImplementedError

    async def _peek(self, op: Op[T]) -> T:
        """A read of a few indexed rows that the event loop waits on at once (the engine's
        look-up before each batch): a backend may run it in place rather than hand it off."""
        return await self._read(op)


ROWS_PER_STATEMENT = 64  # the most rows of one multi-row statement


def value_rows(columns: int, count: int) -> str:
    """`(?, ?), (?, ?)`: `count` rows of `columns` placeholders, for a multi-row VALUES."""
    row = "(" + ", ".join("?" * columns) + ")"
    return ", ".join([row] * count)


def chunks(items: Sequence[T]) -> list[Sequence[T]]:
    """`items` in order, in chunks of a power of two rows (64, then what is left: 37 rows are 32,
    4 and 1): a multi-row statement's text differs by its row count, and PostgreSQL's driver
    prepares each text once per connection, so a few sizes stay prepared where every size would
    be prepared again and again (a round trip and a plan each time)."""
    found: list[Sequence[T]] = []
    start = 0
    while start < len(items):
        size = min(ROWS_PER_STATEMENT, 1 << ((len(items) - start).bit_length() - 1))
        found.append(items[start : start + size])
        start += size
    return found


def chunks_to_pad(items: Sequence[T]) -> list[Sequence[T]]:
    """`items` in order, in chunks of at most ROWS_PER_STATEMENT, for a VALUES of typed rows that
    a statement only reads (it joins or matches them): each chunk's VALUES is padded with rows of
    NULLs (`pad`) to a power of two rows, so its text is one of a few, prepared once per
    connection, and the chunk costs one round trip. A row of NULLs matches nothing."""
    return [items[i : i + ROWS_PER_STATEMENT] for i in range(0, len(items), ROWS_PER_STATEMENT)]


def pad(count: int) -> int:
    """How many rows of NULLs pad `count` rows to a power of two."""
    return (1 << (count - 1).bit_length()) - count if count else 0


def typed_rows(types: Sequence[str], count: int) -> str:
    """`(CAST(? AS type), ...), ...`: `count` rows of parameters typed for PostgreSQL, for a
    VALUES of their own (in an INSERT, the columns type them)."""
    row = "(" + ", ".join(f"CAST(? AS {t})" for t in types) + ")"
    return ", ".join([row] * count)
