"""Open-loop load generator for the alert-to-action benchmark (its own process, on LOAD_CPU).

Sends `rate` notifications per second for `seconds`, each one new alert instance `seq`, at
scheduled times (not waiting for answers, so a slow server does not slow the sending). Records,
per seq, CLOCK_MONOTONIC just before the request is handed to the HTTP client and when its answer
arrived, and writes them as JSON.

Usage: python -m bench.a2a_load --port N --rate R --seconds S --first SEQ --out FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import aiohttp

from bench.common import WEBHOOK_TOKEN
from bench.workload import a2a_notification


async def send(
    session: aiohttp.ClientSession,
    url: str,
    seq: int,
    sent: dict[int, int],
    acked: dict[int, tuple[int, int]],
) -> None:
    body = json.dumps(a2a_notification(seq)).encode()
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
    sent[seq] = time.monotonic_ns()
    try:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            acked[seq] = (time.monotonic_ns(), response.status)
    except aiohttp.ClientError:
        acked[seq] = (time.monotonic_ns(), 0)


async def load(port: int, rate: float, seconds: float, first: int) -> dict[str, object]:
    url = f"http://127.0.0.1:{port}/alerts"
    sent: dict[int, int] = {}
    acked: dict[int, tuple[int, int]] = {}
    tasks: set[asyncio.Task[None]] = set()
    total = int(rate * seconds)
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.monotonic()
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(send(session, url, first + i, sent, acked))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elapsed = time.monotonic() - start
        if tasks:
            await asyncio.wait(list(tasks), timeout=30)
    return {"sent": sent, "acked": acked, "send_seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = asyncio.run(load(args.port, args.rate, args.seconds, args.first))
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
