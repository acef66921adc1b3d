"""Group commit on PostgreSQL: writes of one kind queue, and one task commits all that wait in
one transaction, in the order queued. Claims to judge and start (starts.StartIf) that queue one
after another are judged together (starts.start_claims_if: one read of each fact for all of
them), and claims to finish (finishes.FinishIf) are finished together (finishes.finish_claims: a
few statements for all of them); any other write runs on its own, between them. A job that fails
rolls the transaction back; the batch then runs again with a savepoint per job, each claim on
its own, so that only the failing job fails (jobs change nothing but the database, so running
them again is safe). A batch PostgreSQL failed to break a deadlock runs again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from remediator.errors import StoreError
from remediator.store.finishes import Finished, FinishIf, finish_claims
from remediator.store.sql import Op, Tx
from remediator.store.starts import Started, StartIf, start_claims_if

T = TypeVar("T")
Transaction = Callable[[], AbstractAsyncContextManager[tuple[asyncpg.Connection, Tx]]]
MAX_BATCH = 100  # jobs in one transaction: a claim's facts are a few bound values each
RETRIES = 3  # runs of a batch that PostgreSQL failed to break a deadlock
Work = Op[Any] | StartIf | FinishIf
TOGETHER = (StartIf, FinishIf)  # the jobs done together when they follow one another


@dataclass(slots=True)
class _Job:
    work: Work
    future: asyncio.Future[Any]


_Result = tuple[_Job, Any, BaseException | None]


class _Abandon(Exception):
    """A job failed in a batch without savepoints: roll back, run the batch again with them."""


_ABANDONED = StoreError("the batch was rolled back")


class Batcher:
    def __init__(
        self,
        name: str,
        transaction: Transaction,
        wrap: Callable[[Exception], Exception],
        again: Callable[[BaseException], bool] = lambda e: False,
    ) -> None:
        """`wrap`: the backend's errors as the store's (a failure of the whole batch); `again`:
        whether an error says that the batch will succeed if run again (a broken deadlock)."""
        self.name = name
        self._transaction = transaction
        self._wrap = wrap
        self._again = again
        self._jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._jobs = asyncio.Queue()
        self._task = asyncio.create_task(self._loop(), name=f"remediator-postgres-{self.name}")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is not None:
            self._jobs.put_nowait(None)
            await self._task
            self._task = None

    async def submit(self, op: Op[T]) -> T:
        result: T = await self._submit(op)
        return result

    async def judge_and_start(self, start: StartIf) -> Started:
        result: Started = await self._submit(start)
        return result

    async def finish(self, finish: FinishIf) -> Finished:
        result: Finished = await self._submit(finish)
        return result

    def _submit(self, work: Work) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._jobs.put_nowait(_Job(work, future))
        return future

    async def _loop(self) -> None:
        while (batch := await self._next_batch()) is not None:
            await self._commit(batch)

    async def _next_batch(self) -> list[_Job] | None:
        first = await self._jobs.get()
        if first is None:
            return None
        batch = [first]
        while not self._jobs.empty() and len(batch) < MAX_BATCH:
            job = self._jobs.get_nowait()
            if job is None:
                self._jobs.put_nowait(None)  # finish this batch, then stop
                break
            batch.append(job)
        return batch

    async def _commit(self, batch: list[_Job]) -> None:
        results = await self._run_all(batch)
        for _ in range(RETRIES - 1):  # the jobs a broken deadlock failed, again
            again = [job for job, _, error in results if error is not None and self._again(error)]
            if not again:
                break
            done = {id(job): (job, r, e) for job, r, e in await self._run_all(again)}
            results = [done.get(id(job), (job, r, e)) for job, r, e in results]
        for job, result, error in results:
            if job.future.done():
                continue
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)

    async def _run_all(self, batch: list[_Job]) -> list[_Result]:
        """The batch in one transaction; if a job fails, again with a savepoint per job."""
        results = await self._run(batch, savepoints=False)
        if len(batch) > 1 and any(error is not None for _, _, error in results):
            results = await self._run(batch, savepoints=True)
        return results

    async def _run(self, batch: list[_Job], savepoints: bool) -> list[_Result]:
        results: list[_Result] = []
        try:
            async with self._transaction() as (conn, tx):
                for group in [[job] for job in batch] if savepoints else _groups(batch):
                    results += await _run_group(conn, tx, group, savepoints)
                    if not savepoints and any(error is not None for _, _, error in results):
                        raise _Abandon
            return results
        except _Abandon:
            return results + [(job, None, _ABANDONED) for job in batch[len(results) :]]
        except Exception as e:  # the batch failed: every job in it did
            failure = self._wrap(e)
            return [(job, None, failure) for job in batch]


def _groups(batch: list[_Job]) -> list[list[_Job]]:
    """The batch in order, claims to judge or to finish that follow one another together, any
    other job alone."""
    groups: list[list[_Job]] = []
    for job in batch:
        kind = type(job.work)
        if groups and kind in TOGETHER and type(groups[-1][0].work) is kind:
            groups[-1].append(job)
        else:
            groups.append([job])
    return groups


async def _run_group(
    conn: asyncpg.Connection, tx: Tx, group: list[_Job], savepoint: bool
) -> list[_Result]:
    """Run one job, or claims judged together, in a savepoint if asked, so that a failure fails
    only them."""
    try:
        if not savepoint:
            return _results(group, await _work(tx, group))
        async with conn.transaction():
            return _results(group, await _work(tx, group))
    except Exception as e:  # one job's failure must not fail the batch
        return [(job, None, e) for job in group]


async def _work(tx: Tx, group: list[_Job]) -> list[Any]:
    starts = [job.work for job in group if isinstance(job.work, StartIf)]
    if starts:
        return list(await start_claims_if(tx, starts))
    finishes = [job.work for job in group if isinstance(job.work, FinishIf)]
    if finishes:
        return list(await finish_claims(tx, finishes))
    op = group[0].work
    assert not isinstance(op, StartIf | FinishIf)
    return [await op(tx)]


def _results(group: list[_Job], done: list[Any]) -> list[_Result]:
    return [(job, result, None) for job, result in zip(group, done, strict=True)]


# PostgreSQL's own: a batch of journal entries in one statement, whatever its size, so one round
# trip and one commit (a statement outside a transaction block commits on its own). The ids are
# taken from the journal's sequence first, in the entries' order, so that each knows its own; the
# insert runs whether or not its rows are read (a data-modifying WITH always runs to completion).
# The same statement NOTIFYs the channel the leader LISTENs on (election.py), so that a batch from
# any replica is read without waiting: a notification is delivered when its transaction commits,
# here the append's own.
_APPEND_JOURNAL = (
    "WITH taken AS MATERIALIZED ("
    " SELECT n, nextval(pg_get_serial_sequence('journal', 'id')) AS id"
    " FROM generate_series(1, cardinality($1::float8[])) AS n ORDER BY n),"
    " inserted AS (INSERT INTO journal (id, received_at, body)"
    " SELECT taken.id, e.at, e.body FROM taken"
    " JOIN unnest($1::float8[], $2::text[]) WITH ORDINALITY AS e(at, body, n) USING (n)),"
    " notified AS MATERIALIZED (SELECT pg_notify('remediator_journal', ''))"
    " SELECT id FROM taken, notified ORDER BY n"
)


@dataclass(slots=True)
class _Entry:
    body: str
    at: float
    future: asyncio.Future[int]


Connect = Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]


class JournalAppender:
    """Group commit of journal appends: every entry queued since the last commit goes in one
    statement, committed on its own, with its NOTIFY (one round trip). If it fails, every entry
    in it fails (the webhook answers 503 and Alertmanager sends it again)."""

    def __init__(self, connection: Connect, wrap: Callable[[Exception], Exception]) -> None:
        self._connection = connection
        self._wrap = wrap
        self._entries: asyncio.Queue[_Entry | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._entries = asyncio.Queue()
        self._task = asyncio.create_task(self._loop(), name="remediator-postgres-journal")

    async def stop(self) -> None:
        if self._task is not None:
            self._entries.put_nowait(None)
            await self._task
            self._task = None

    async def append(self, body: str, at: float) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._entries.put_nowait(_Entry(body, at, future))
        return await future

    async def _loop(self) -> None:
        while True:
            first = await self._entries.get()
            if first is None:
                return
            batch = [first]
            while not self._entries.empty():
                entry = self._entries.get_nowait()
                if entry is None:
                    self._entries.put_nowait(None)  # commit this batch, then stop
                    break
                batch.append(entry)
            await self._commit(batch)

    async def _commit(self, batch: list[_Entry]) -> None:
        batch = [e for e in batch if not e.future.done()]  # its webhook gave up: not stored
        if not batch:
            return
        try:
            async with self._connection() as conn:
                ats, bodies = [e.at for e in batch], [e.body for e in batch]
                ids = [r[0] for r in await conn.fetch(_APPEND_JOURNAL, ats, bodies)]
        except Exception as e:  # the batch failed: every entry in it did
            failure = self._wrap(e)
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(failure)
            return
        for entry, journal_id in zip(batch, ids, strict=True):
            if not entry.future.done():
                entry.future.set_result(int(journal_id))
