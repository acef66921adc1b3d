"""The daemon under soak, with a sampler in its own event loop: every SAMPLE_EVERY seconds one
JSON line of resident memory, open file descriptors and asyncio tasks (only the process itself
can count its tasks). Runs `Daemon` exactly as `remediator serve` does, logging included.

Usage: python -m bench.soak_daemon --config FILE --listen HOST:PORT --samples FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import time
from pathlib import Path

from bench.common import rss_kib
from remediator.config import load_config
from remediator.safetext import OneLine
from remediator.server import Daemon

SAMPLE_EVERY = float(os.environ.get("SOAK_SAMPLE_EVERY", "10"))


def sample(started: float) -> dict[str, float]:
    return {
        "t": round(time.monotonic() - started, 1),
        "rss_kib": rss_kib(os.getpid())["VmRSS"],
        "fds": len(os.listdir("/proc/self/fd")),
        "tasks": len(asyncio.all_tasks()),
    }


async def sampler(out: Path) -> None:
    started = time.monotonic()
    with out.open("a") as f:
        while True:
            f.write(json.dumps(sample(started)) + "\n")
            f.flush()
            await asyncio.sleep(SAMPLE_EVERY)


async def serve(config: Path, host: str, port: int, samples: Path) -> None:
    daemon = Daemon(load_config(config))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await daemon.start(host, port)
    task = asyncio.create_task(sampler(samples))
    await stopping.wait()
    task.cancel()
    await daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--samples", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(OneLine())
    host, _, port = args.listen.rpartition(":")
    asyncio.run(serve(args.config, host, int(port), args.samples))


if __name__ == "__main__":
    main()
