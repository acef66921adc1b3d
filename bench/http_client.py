"""Supporting measurement: the CPU one action's HTTP request costs the daemon, by client.

The profiles show the executor's HTTP client (httpx -> httpcore -> anyio) as the largest single
cost on the main thread. This measures, in one process pinned to SERVER_CPU, sequential POSTs to
the sink (LOAD_CPU) with:

* httpx.AsyncClient configured as the executor configures it (sniffio is a dependency now: before
  it was, httpcore tried and failed to import it on every request, ~860 µs per request then);
* aiohttp.ClientSession (already a dependency of the daemon), for comparison.

CPU = process time (all threads) per request; baseline = httpx as the executor runs it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import httpx

from bench.common import SERVER_CPU, Figure, Section, Workdir, free_port, helper, median, wait_ready

REQUESTS = 2000


async def _httpx(url: str, n: int) -> None:
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
        for _ in range(n):
            response = await client.request(
                "POST", url, headers={"Idempotency-Key": "k"}, content=b"{}", timeout=10.0
            )
            response.raise_for_status()


async def _aiohttp(url: str, n: int) -> None:
    timeout = aiohttp.ClientTimeout(total=10.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for _ in range(n):
            async with session.post(url, data=b"{}", headers={"Idempotency-Key": "k"}) as r:
                await r.read()
                r.raise_for_status()


def _cpu_us(run: Callable[[str, int], Coroutine[Any, Any, None]], url: str) -> float:
    asyncio.run(run(url, 200))  # warm up: connections, lazy imports
    started = time.process_time()
    asyncio.run(run(url, REQUESTS))
    return (time.process_time() - started) / REQUESTS * 1e6


def run(quick: bool = False) -> Section:
    started = time.monotonic()
    section = Section("http_client", "7. Supporting: CPU per action request, by HTTP client")
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {int(SERVER_CPU)})
    else:
        before = None
    results: dict[str, list[float]] = {"httpx": [], "aiohttp": []}
    try:
        with Workdir.make("http-client") as work:
            port = free_port()
            with helper(work, "sink", port) as sink:
                wait_ready(sink, port)
                url = f"http://127.0.0.1:{port}/a2a-client"
                for _ in range(1 if quick else 3):
                    results["httpx"].append(_cpu_us(_httpx, url))
                    results["aiohttp"].append(_cpu_us(_aiohttp, url))
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
    base = median(results["httpx"])
    for name in ("aiohttp",):
        section.figures.append(
            Figure(
                f"CPU per request, {name}",
                median(results[name]),
                "µs",
                "-",
                None,
                base,
                "httpx as the executor runs it",
                results[name],
            )
        )
    section.notes.append(
        f"{REQUESTS:,} sequential POSTs per client per repeat, medians of the repeats; "
        f"httpx today: {', '.join(f'{v:.0f}' for v in results['httpx'])} µs."
    )
    section.seconds = time.monotonic() - started
    return section


if __name__ == "__main__":
    from bench.common import print_section

    print_section(run())
