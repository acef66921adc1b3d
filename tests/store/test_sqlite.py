"""The SQLite store: migrations, durability settings, group commit, claims that are unique."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from remediator.errors import StoreError
from remediator.incidents import Incident
from remediator.store import migrations
from remediator.store.records import (
    CLAIMED,
    INTERRUPTED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    AuditEntry,
    Changes,
    IncidentWrite,
    InstanceWrite,
    NewClaim,
)
from remediator.store.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state" / "r.db")
    await s.open()
    yield s
    await s.close()


def new_incident(placeholder: int = -1, key: str = "c1") -> IncidentWrite:
    incident = Incident(
        id=placeholder,
        rule="r",
        key=("X", key),
        status="open",
        tier=0,
        value=None,
        opened_at=1.0,
        tier_at=1.0,
        updated_at=1.0,
        instances={("fp", 1.0): None},
    )
    return IncidentWrite(incident, {"alertname": "X", "connector": key}, {"a": "b"}, {})


def claim(incident_id: int, action: str = "restart") -> NewClaim:
    return NewClaim(
        incident_id,
        "tier0",
        action,
        "http",
        "connect",
        "r",
        "key-1",
        {"labels": {"connector": "c1"}},
        2.0,
    )


def audit(message: str, incident_id: int | None = None) -> AuditEntry:
    return AuditEntry("decision", "opened", message, 3.0, incident_id=incident_id, rule="r")


async def test_migrations_apply_once_and_record_their_version(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    for _ in range(2):
        s = SqliteStore(path)
        await s.open()
        await s.close()
    with sqlite3.connect(path) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version")]
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    assert versions == [m.version for m in migrations("sqlite")]
    assert {"journal", "incidents", "alert_instances", "claims", "attempts", "audit"} <= tables


async def test_the_database_is_in_wal_mode_with_full_sync(store: SqliteStore) -> None:
    def pragmas(conn: sqlite3.Connection) -> tuple[str, int]:
        return (
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA synchronous").fetchone()[0],
        )

    assert await store._write(pragmas) == ("wal", 2)  # 2 is FULL


async def test_concurrent_journal_writes_share_commits(store: SqliteStore) -> None:
    before = store.commits
    ids = await asyncio.gather(*(store.append_journal(f'{{"n": {i}}}', 0.0) for i in range(200)))
    assert sorted(ids) == list(range(1, 201))
    commits = store.commits - before
    assert 1 <= commits < 100, f"{commits} commits for 200 concurrent writes"
    assert len(await store.unprocessed_journal()) == 200


async def test_one_failing_write_does_not_fail_its_batch(store: SqliteStore) -> None:
    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO journal (received_at, body) VALUES (0, 'x')")
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    results = await asyncio.gather(
        store.append_journal("a", 0.0),
        store._write(broken),
        store.append_journal("b", 0.0),
        return_exceptions=True,
    )
    assert isinstance(results[1], sqlite3.OperationalError)
    assert [body for _, body in await store.unprocessed_journal()] == ["a", "b"]


async def test_apply_assigns_ids_and_a_claim_is_won_once(store: SqliteStore) -> None:
    journal_id = await store.append_journal("{}", 0.0)
    changes = Changes(
        at=5.0,
        journal_ids=[journal_id],
        incidents=[new_incident()],
        instances=[InstanceWrite("r", "fp", 1.0, -1, "firing", None, 1.0)],
        claims=[claim(-1)],
        audit=[audit("opened", -1)],
    )
    applied = await store.apply(changes)
    incident_id = applied.incident_ids[-1]
    assert [c.incident_id for c in applied.claims] == [incident_id]
    assert applied.audit[0].incident_id == incident_id
    assert await store.unprocessed_journal() == []
    again = await store.apply(Changes(at=6.0, claims=[claim(incident_id)]))
    assert again.claims == []  # the same (incident, step, action): nobody wins it twice
    [loaded] = await store.load_open_incidents()
    assert (loaded.id, loaded.instances) == (incident_id, {("fp", 1.0): None})


async def test_an_incident_inserted_and_updated_in_one_batch_is_one_row(
    store: SqliteStore,
) -> None:
    first = new_incident()
    updated = IncidentWrite(replace(first.incident, tier=2), first.key_labels)
    applied = await store.apply(Changes(at=1.0, incidents=[first, updated]))
    [loaded] = await store.load_open_incidents()
    assert (loaded.id, loaded.tier) == (applied.incident_ids[-1], 2)


async def test_only_one_open_incident_per_rule_and_key(store: SqliteStore) -> None:
    await store.apply(Changes(at=1.0, incidents=[new_incident(-1)]))
    with pytest.raises(sqlite3.IntegrityError):
        await store.apply(Changes(at=1.0, incidents=[new_incident(-2)]))


async def test_a_claim_starts_once_and_finishes_only_from_the_given_states(
    store: SqliteStore,
) -> None:
    applied = await store.apply(Changes(at=1.0, incidents=[new_incident()], claims=[claim(-1)]))
    [c] = applied.claims
    assert c.status == CLAIMED
    assert await store.start_claim(c.id, 2.0, {"url": "http://x"}) is True
    assert await store.start_claim(c.id, 2.0, {"url": "http://x"}) is False
    assert (
        await store.finish_claim(c.id, INTERRUPTED, "x", 3.0, audit("x"), from_statuses=(CLAIMED,))
        is None
    )
    done = await store.finish_claim(c.id, SUCCEEDED, "HTTP 202", 3.0, audit("done"))
    assert done is not None
    assert done.id is not None
    assert await store.finish_claim(c.id, INTERRUPTED, "late", 4.0, audit("late")) is None
    [view] = (await store.list_actions(10, None)).items
    assert (view["status"], view["detail"], view["request"]) == (
        SUCCEEDED,
        "HTTP 202",
        {"url": "http://x"},
    )
    assert await store.claims_in((RUNNING, CLAIMED)) == []
    assert await store.ran_actions(c.incident_id) == {"restart"}


async def test_a_resolution_cancels_the_pending_approvals_of_its_firing_steps(
    store: SqliteStore,
) -> None:
    """Nobody is asked to approve what can no longer run. An undo's approval and a person's
    request may run after the resolution, and another incident's approval is not touched."""
    steps = {"tier0": "rollback", "manual": "scale", "on_resolved": "resume"}
    claims = [
        replace(claim(-1, action), step=step, idempotency_key=f"k-{step}")
        for step, action in steps.items()
    ]
    other = replace(claim(-2, "rollback"), idempotency_key="k-other")
    applied = await store.apply(
        Changes(
            at=1.0,
            incidents=[new_incident(-1, "c1"), new_incident(-2, "c2")],
            claims=[*claims, other],
        )
    )
    for c in applied.claims:
        entry = audit("approval_requested", c.incident_id)
        assert await store.request_approval(c, {}, 2.0, 1800.0, entry) is not None
    [first, _] = await store.load_open_incidents()
    resolved = replace(first, status="resolved", resolved_at=10.0)
    done = await store.apply(Changes(at=10.0, incidents=[IncidentWrite(resolved, {})]))

    [cancelled] = [e for e in done.audit if e.event == "approval_cancelled"]
    assert (cancelled.incident_id, cancelled.action, cancelled.tier) == (
        first.id,
        "rollback",
        "tier0",
    )
    assert cancelled.id is not None
    approvals = {(a.incident_id, a.action): a for a in await store.approvals()}
    assert {k: a.status for k, a in approvals.items()} == {
        (first.id, "rollback"): "cancelled",
        (first.id, "scale"): "pending",
        (first.id, "resume"): "pending",
        (first.id + 1, "rollback"): "pending",
    }
    assert approvals[(first.id, "rollback")].decided_by == "remediator"
    rollback = await store.claim(approvals[(first.id, "rollback")].claim_id)
    assert rollback is not None
    assert (rollback.status, rollback.finished_at) == (SKIPPED, 10.0)
    assert "the incident resolved before anyone approved" in rollback.detail


async def test_pending_approvals_are_counted_all_and_the_first_expiry_is_the_earliest(
    store: SqliteStore,
) -> None:
    """The gauge and the expiry timer read every pending approval, not the page of the newest
    500 that listing returns."""
    assert await store.pending_approvals() == (0, None)
    many = [replace(claim(-1), idempotency_key=f"k-{n}", action=f"a{n}") for n in range(501)]
    applied = await store.apply(Changes(at=1.0, incidents=[new_incident()], claims=many))
    for n, c in enumerate(applied.claims):  # the oldest expires first
        expiry = 1000.0 + n
        assert await store.request_approval(c, {}, 2.0, expiry, audit("asked")) is not None
    assert len(await store.approvals("pending")) == 500  # a page
    assert await store.pending_approvals() == (501, 1000.0)
    assert await store.count_incidents("open") == 1


async def test_pages_are_newest_first(store: SqliteStore) -> None:
    await store.apply(Changes(at=1.0, audit=[audit(f"m{i}") for i in range(5)]))
    page = await store.history(2, None)
    assert [e["message"] for e in page.items] == ["m4", "m3"]
    rest = await store.history(10, page.next_before)
    assert [e["message"] for e in rest.items] == ["m2", "m1", "m0"]
    assert rest.next_before is None


async def test_writes_after_close_fail_clearly(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "r.db")
    await s.open()
    await s.close()
    with pytest.raises(StoreError, match="not open"):
        await s.append_journal("{}", 0.0)


async def test_an_unwritable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot open"):
        await SqliteStore(tmp_path / "file" / "r.db").open()


async def test_the_state_directory_and_database_are_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "r.db"
    s = SqliteStore(path)
    await s.open()
    await s.append_journal("{}", 0.0)
    await s.close()
    assert path.parent.stat().st_mode & 0o777 == 0o700
    for file in path.parent.iterdir():
        assert file.stat().st_mode & 0o777 == 0o600, file


async def test_a_database_made_readable_by_an_older_version_is_made_private(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    s = SqliteStore(path)
    await s.open()
    await s.close()
    assert path.stat().st_mode & 0o777 == 0o600
