"""The daemon renews the lease of a claim while its action runs, and only then."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from remediator.store.records import CLAIM_LEASE, RUNNING, Claim
from tests.conftest import StartDaemon, base_config
from tests.payloads import alert, notification
from tests.standins import Recorder

RULES = """
actions:
  act: {kind: http, target: svc, path: /act, retries: 0, timeout: 30s}
rules:
  - name: slow
    match: '{alertname="Slow"}'
    tiers:
      - actions: [act]
"""


async def test_a_running_claims_lease_is_renewed_until_it_settles(
    write_config: Callable[..., Path],
    start_daemon: StartDaemon,
    recorder: Callable[..., Awaitable[Recorder]],
) -> None:
    target = await recorder()
    target.delay = 1.0  # the action runs this long
    running = await start_daemon(write_config(base_config({"svc": target.server.url}, RULES)))
    daemon = running.daemon
    await daemon.leases.stop()
    daemon.leases.every = 0.1
    daemon.leases.start()

    assert (await running.post_alerts(notification(alert("Slow")))).status_code == 200
    renewed: list[Claim] = []
    async with asyncio.timeout(10):
        while not renewed:
            renewed = [
                c
                for c in await daemon.store.claims_in((RUNNING,))
                if c.lease_renewed_at is not None
                and c.started_at is not None
                and c.lease_renewed_at > c.started_at
            ]
            await asyncio.sleep(0.05)
    [claim] = renewed
    assert claim.lease_renewed_at is not None
    assert claim.lease_until == claim.lease_renewed_at + CLAIM_LEASE
    assert daemon.executor.holding == {claim.id}

    await running.settle()
    settled = await daemon.store.claim(claim.id)
    assert settled is not None
    assert (settled.status, settled.lease_until) == ("succeeded", None)
    assert daemon.executor.holding == set()
    assert await daemon.leases.renew() == 0
