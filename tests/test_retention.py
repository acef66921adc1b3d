"""Retention on a store holding 30 simulated days: it shrinks to what the settings keep while
the daemon serves webhooks, and no acknowledgement waits on it. Both backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from remediator.clock import FakeClock
from remediator.config import load_config
from remediator.store.factory import build_store
from tests.conftest import STORES, StartDaemon, base_config
from tests.payloads import alert, notification
from tests.store.history import DAY, fill

T0 = 1_795_338_000.0
DAYS, PER_DAY = 30, 20
KEEP_JOURNAL, KEEP_INCIDENTS = 2, 10  # days
RETENTION = f"retention: {{journal: {KEEP_JOURNAL}d, incidents: {KEEP_INCIDENTS}d, batch: 3}}"


def expected_left() -> tuple[int, int]:
    """(resolved incidents, journal entries) the settings keep of the simulated history."""
    step = DAYS * DAY / (DAYS * PER_DAY)
    opened = [T0 - DAYS * DAY + n * step for n in range(DAYS * PER_DAY)]
    incidents = sum(1 for at in opened if at + 300 >= T0 - KEEP_INCIDENTS * DAY)
    journal = sum(
        1 for at in opened for decided in (at, at + 300) if decided >= T0 - KEEP_JOURNAL * DAY
    )
    return incidents, journal


async def test_thirty_days_shrink_to_what_the_settings_keep_while_webhooks_are_served(
    store_backend: str, write_config: Callable[..., Path], start_daemon: StartDaemon
) -> None:
    store_line = STORES[store_backend]
    main = base_config({}).replace(store_line, f"{store_line[:-1]}, {RETENTION}}}")
    path = write_config(main)
    store = build_store(load_config(path).store)
    await store.open()
    await fill(store, DAYS, PER_DAY, T0)
    await store.close()

    running = await start_daemon(path, FakeClock(T0))  # retention's first pass starts now
    n = 1  # the first request warms the HTTP path (the client's connection): not counted
    assert (await running.post_alerts(notification(alert("Unmatched", n="1")))).is_success
    waits = []
    while running.daemon.pruner.passes == 0:
        n += 1
        started = time.perf_counter()
        response = await running.post_alerts(notification(alert("Unmatched", n=str(n))))
        waits.append(time.perf_counter() - started)
        assert response.status_code == 200
        await asyncio.sleep(0.01)
    await running.settle()

    assert len(waits) >= 5, "retention ended before the webhooks could race it"
    assert max(waits) < 0.100, f"an acknowledgement waited {max(waits) * 1000:.0f} ms"
    incidents, journal = expected_left()
    store = running.daemon.store
    assert await store.count_incidents("resolved") == incidents
    rows = await store._read(lambda tx: tx.fetchval("SELECT COUNT(*) FROM journal"))  # type: ignore[attr-defined]
    assert rows == journal + n  # what the settings keep, and every webhook of this test
    metrics = (await running.client.get("/metrics")).text
    deleted = DAYS * PER_DAY - incidents
    assert f'remediator_store_pruned_rows_total{{table="incidents"}} {deleted}.0' in metrics
