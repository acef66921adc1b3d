"""Benchmark: fifty connectors failing on one Kafka Connect cluster.

Fifty ConnectorDown alerts arrive together (one notification each, as Alertmanager grouped by
connector sends them), for the shipped rule cdc-connector-down, whose restart_connector checks
the connector is FAILED, then restarts it and its failed tasks. Connect is bench/servers.py's
`connect` stand-in, where a restart takes RESTART_DELAY to answer. Measured: for each connector,
from the alert's send to its restart request's arrival at Connect.

* measured: the shipped rule, one at a time per connector (`one_at_a_time_by: [connector]`);
* baseline, same run: the same rule without it, one at a time per cluster (the target).

Target: every restart starts within 1 s of its alert.

    .venv/bin/python -m bench.connectors
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    ROOT,
    WEBHOOK_TOKEN,
    Figure,
    Section,
    Workdir,
    daemon,
    free_port,
    helper,
    http_get,
    percentile,
    print_section,
    wait_ready,
)

CONNECTORS = 50
RESTART_DELAY = 0.2  # seconds Connect takes to answer a restart
KEY_LINE = "    one_at_a_time_by: [connector]"
# actions running at once (default 16): room for the fifty, as a fleet this size would configure
EXECUTOR = "executor: {max_concurrency: 64}"


def _notification(connector: str) -> dict[str, Any]:
    labels = {"alertname": "ConnectorDown", "connector": connector, "severity": "critical"}
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": f"Connector {connector} is not running"},
        "startsAt": "2026-12-03T15:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": f"{abs(hash(connector)):016x}"[:16],
    }
    return {
        "version": "4",
        "groupKey": f'{{}}:{{connector="{connector}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "remediator",
        "groupLabels": {"connector": connector},
        "commonLabels": labels,
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }


async def _send_all(port: int, names: list[str]) -> dict[str, int]:
    url = f"http://127.0.0.1:{port}/alerts"
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
    sent: dict[str, int] = {}
    async with aiohttp.ClientSession() as session:

        async def one(name: str) -> None:
            body = json.dumps(_notification(name)).encode()
            sent[name] = time.monotonic_ns()
            async with session.post(url, data=body, headers=headers) as r:
                assert r.status == 200, await r.text()

        await asyncio.gather(*(one(n) for n in names))
    return sent


def _pack_without_key(work: Workdir) -> Path:
    """The shipped rule packs, cdc.yaml's connector rule without its per-connector key."""
    rules = work.path / "packs"
    rules.mkdir()
    for pack in (ROOT / "rules").glob("*.yaml"):
        text = pack.read_text()
        if pack.name == "cdc.yaml":
            assert KEY_LINE in text, "the shipped cdc pack no longer keys by connector"
            text = text.replace(
                KEY_LINE + "  # connectors of one cluster restart side by side\n", ""
            )
            assert KEY_LINE not in text
        (rules / pack.name).write_text(text)
    return rules


def measure(keyed: bool, limit: float = 60.0) -> list[float]:
    """Seconds from each alert's send to its restart's arrival at Connect, sorted."""
    with Workdir.make(f"connectors-{'keyed' if keyed else 'target'}") as work:
        connect_port, port = free_port(), free_port()
        with helper(work, "connect", connect_port, "--delay", str(RESTART_DELAY)) as connect:
            wait_ready(connect, connect_port)
            config = work.config(connect_port, "rules: []\n", EXECUTOR)
            if not keyed:
                text = config.read_text().replace(
                    f"{ROOT / 'rules'}/", f"{_pack_without_key(work)}/"
                )
                config.write_text(text)
            names = [f"connector-{i:02d}" for i in range(CONNECTORS)]
            with daemon(work, config, port) as proc:
                wait_ready(proc, port)
                sent = asyncio.run(_send_all(port, names))
                deadline = time.monotonic() + limit
                while True:
                    arrivals = json.loads(http_get(connect_port, "/_arrivals")[1])["arrivals"]
                    if len(arrivals) >= CONNECTORS or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
    return sorted((arrivals[n] - sent[n]) / 1e9 if n in arrivals else float("inf") for n in names)


def run(quick: bool = False) -> Section:
    started = time.monotonic()
    section = Section("connectors", f"{CONNECTORS} connectors failing on one Connect cluster")
    keyed = measure(keyed=True)
    target = measure(keyed=False)
    section.figures += [
        Figure(f"{CONNECTORS} connectors: last restart started after its alert, per connector",
               keyed[-1], "s", "<= 1 s", keyed[-1] <= 1.0, target[-1],
               "one at a time per cluster (the target), same run"),
        Figure(f"{CONNECTORS} connectors: median restart start, per connector",
               percentile(keyed, 50), "s", "-", None, percentile(target, 50),
               "one at a time per cluster (the target), same run"),
    ]  # fmt: skip
    section.notes.append(
        f"{CONNECTORS} ConnectorDown notifications sent together; Connect answers each restart "
        f"after {RESTART_DELAY:g} s; the restart's precondition (GET status: FAILED) runs first; "
        "`executor.max_concurrency: 64` (the default 16 would run the fifty in four rounds). "
        "Per connector: the shipped cdc-connector-down (`one_at_a_time_by: [connector]`); per "
        "cluster: the same pack with that line removed."
    )
    section.seconds = time.monotonic() - started
    return section


if __name__ == "__main__":
    print_section(run())
