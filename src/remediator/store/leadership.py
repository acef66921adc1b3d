"""Leadership: the epoch that fences a deposed leader, and each replica's heartbeat.

Only the leader decides and acts. It takes leadership by bumping the epoch (take_leadership) and
gives that epoch to its store (`epoch`); from then on every transaction that opens an incident,
claims or starts an action first reads the current epoch, under a share lock, and is refused
(Fenced) if it is no longer the store's. A takeover's bump waits for those transactions to
commit, and every one after it sees the new epoch: a leader that lost its lease can never start
an action. A store with no epoch (`None`, tools and tests) is not fenced."""

from __future__ import annotations

from dataclasses import dataclass

from remediator.errors import Fenced
from remediator.store.sql import Runner, Tx

REPLICA_COLUMNS = "name, role, started_at, heartbeat_at, epoch"
FORGET_AFTER = 3600.0  # a replica silent this long is dropped from the list


@dataclass(frozen=True, slots=True)
class Replica:
    name: str
    role: str  # leader | follower | ingest
    started_at: float
    heartbeat_at: float
    epoch: int | None = None  # the epoch it leads in


@dataclass(frozen=True, slots=True)
class Leadership:
    epoch: int
    leader: str | None
    since: float | None


class LeadershipSQL(Runner):
    async def take_leadership(self, replica: str, at: float) -> int:
        """A new epoch, held by `replica`: every transaction of an older epoch is refused from
        now on. (On PostgreSQL the elector takes it on its own connection: take().)"""
        return await self._write(lambda tx: take(tx, replica, at))

    async def leadership(self) -> Leadership:
        async def op(tx: Tx) -> Leadership:
            r = await tx.fetchrow("SELECT epoch, leader, since FROM leadership WHERE id = 1")
            assert r is not None  # the migration wrote it
            return Leadership(int(r["epoch"]), r["leader"], r["since"])

        return await self._read(op)

    async def beat(self, replica: Replica) -> None:
        """Record a replica's heartbeat; forget replicas silent for an hour."""

        async def op(tx: Tx) -> None:
            await tx.execute(
                f"INSERT INTO replicas ({REPLICA_COLUMNS}) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET role = excluded.role, "
                "heartbeat_at = excluded.heartbeat_at, epoch = excluded.epoch",
                replica.name,
                replica.role,
                replica.started_at,
                replica.heartbeat_at,
                replica.epoch,
            )
            forget = replica.heartbeat_at - FORGET_AFTER
            await tx.execute("DELETE FROM replicas WHERE heartbeat_at < ?", forget)

        await self._write(op)

    async def replicas(self) -> list[Replica]:
        async def op(tx: Tx) -> list[Replica]:
            sql = f"SELECT {REPLICA_COLUMNS} FROM replicas ORDER BY name"
            return [
                Replica(r["name"], r["role"], r["started_at"], r["heartbeat_at"], r["epoch"])
                for r in await tx.fetch(sql)
            ]

        return await self._read(op)


async def take(tx: Tx, replica: str, at: float) -> int:
    sql = (
        "UPDATE leadership SET epoch = epoch + 1, leader = ?, since = ? "
        "WHERE id = 1 RETURNING epoch"
    )
    return int(await tx.fetchval(sql, replica, at))


async def fence(tx: Tx, epoch: int | None, lock: int | None = None) -> None:
    """Refuse the transaction unless `epoch` is still the current one (None: not fenced). The
    share lock makes a takeover's bump wait for this transaction's commit. `lock`: also take
    this lock (dialect.py's keys), held to the commit, in the same statement."""
    if epoch is None:
        if lock is not None:
            await tx.fetchval(tx.dialect.lock, lock)
        return
    read = f"SELECT epoch FROM leadership WHERE id = 1{tx.dialect.share}"
    if lock is None:
        current = await tx.fetchval(read)
    else:
        current = await tx.fetchval(f"SELECT ({read}) AS epoch, {tx.dialect.lock_call}", lock)
    if current != epoch:
        raise Fenced(f"leadership epoch {epoch} is no longer current (now {current})")
