"""One daemon per SQLite file: a second `remediator serve` on a file in use exits non-zero with
one line naming the file and the process that holds it, before it touches anything: the first
daemon's running action, its claims and its Slack messages are as they were."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from remediator.errors import StoreInUse
from remediator.store.sqlite import SqliteStore
from tests.conftest import base_config, slack_config
from tests.payloads import alert, notification
from tests.peers import REMEDIATOR, DaemonProcess, free_port
from tests.slack_standin import SlackAPI
from tests.standins import Connector, KafkaConnect

CDC = """
actions:
  restart_connector: {kind: http, target: kafka-connect, path: "/connectors/{connector}/restart",
                      timeout: 60s, retries: 0}
rules:
  - name: cdc-connector-down
    match: '{alertname="ConnectorDown"}'
    incident_key: [alertname, connector]
    tiers:
      - actions: [restart_connector]
"""


async def test_a_second_store_on_one_file_is_refused_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    first = SqliteStore(path)
    await first.open()
    try:
        with pytest.raises(StoreInUse, match=rf"{path} is in use by process \d+"):
            await SqliteStore(path).open()
        reader = SqliteStore(path, exclusive=False)  # the CLI's history, beside the daemon
        await reader.open()
        await reader.close()
    finally:
        await first.close()
    again = SqliteStore(path)  # closed: the file is free
    await again.open()
    await again.close()


def snapshot(db: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every claim and every Slack outbox row, read-only. Not a running claim's lease: the
    first daemon renews it while the action runs."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT * FROM claims ORDER BY id")
        lease = ("lease_until", "lease_renewed_at")
        kept = [i for i, column in enumerate(rows.description) if column[0] not in lease]
        claims = [tuple(row[i] for i in kept) for row in rows.fetchall()]
        outbox = conn.execute("SELECT * FROM slack_outbox ORDER BY id").fetchall()
    return claims, outbox


async def settled(db: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The snapshot once it stops changing (the first daemon's Slack messages delivered)."""
    before = snapshot(db)
    while True:
        await asyncio.sleep(0.3)
        now = snapshot(db)
        if now == before and all(row[8] != "pending" for row in now[1]):  # column 8: status
            return now
        before = now


async def test_a_second_serve_exits_naming_the_file_and_touches_nothing(
    write_config: Callable[..., Path], slack_api: SlackAPI
) -> None:
    connect = KafkaConnect({"a": Connector("FAILED", ["FAILED"])})
    await connect.server.start()
    connect.hang.set()  # the first daemon's action stays at the target, running
    config = write_config(
        base_config(
            {"kafka-connect": connect.server.url},
            "rule_files: [cdc.yaml]\n" + slack_config(slack_api),
        ),
        cdc=CDC,
    )
    first = DaemonProcess(config)
    try:
        await first.start()
        assert (await first.post(notification(alert("ConnectorDown", connector="a")))).is_success
        db = config.parent / "state" / "remediator.db"
        async with asyncio.timeout(20):
            while connect.restarts("a") != 1:
                await asyncio.sleep(0.02)
            before = await settled(db)
        posted = len(slack_api.messages)
        assert first.proc is not None

        second = await asyncio.to_thread(
            subprocess.run,
            [str(REMEDIATOR), "serve", "--config", str(config), "--listen",
             f"127.0.0.1:{free_port()}"],
            env=first.env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

        assert second.returncode != 0
        [line] = second.stderr.strip().splitlines()
        assert str(db) in line
        assert f"process {first.proc.pid}" in line
        await asyncio.sleep(0.5)  # time enough for a wrong recovery or resend to show
        assert snapshot(db) == before
        [running] = [c for c in before[0] if c[10] == "running"]  # column 10: status
        assert running is not None
        assert len(slack_api.messages) == posted
        connect.hang.clear()
        connect.release.set()
        async with asyncio.timeout(20):  # the first daemon's action ends as it should
            while (await first.actions())["a"]["status"] != "succeeded":
                await asyncio.sleep(0.05)
    finally:
        await first.close()
        connect.release.set()
        await connect.server.stop()
