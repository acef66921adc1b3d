"""The daemon under soak, with a sampler in its own event loop: every SAMPLE_EVERY seconds one
JSON line of resident memory, open file descriptors, asyncio tasks (only the process itself
can count its tasks) and claims queued for their target's turn. Runs `Daemon` exactly as
`remediator serve` does, logging included.

With SOAK_TRACEMALLOC=N (frames per traceback) it also traces Python allocations: a snapshot at
SOAK_TRACE_AT seconds (default 300, the soak's warm-up) and one at shutdown; the 40 largest
growths between them go to `<samples>.tracemalloc.txt` (where RSS growth comes from). Tracing
costs CPU: use it to diagnose, not for the recorded run.

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
import tracemalloc
from pathlib import Path

from bench.common import rss_kib
from remediator.config import load_config
from remediator.safetext import OneLine
from remediator.server import Daemon

SAMPLE_EVERY = float(os.environ.get("SOAK_SAMPLE_EVERY", "10"))
TRACE_FRAMES = int(os.environ.get("SOAK_TRACEMALLOC", "0"))
TRACE_AT = float(os.environ.get("SOAK_TRACE_AT", "300"))


def sample(started: float, daemon: Daemon) -> dict[str, float]:
    return {
        "t": round(time.monotonic() - started, 1),
        "rss_kib": rss_kib(os.getpid())["VmRSS"],
        "fds": len(os.listdir("/proc/self/fd")),
        "tasks": len(asyncio.all_tasks()),
        "queued_claims": daemon.executor.queued(),
    }


class Tracer:
    """tracemalloc's growth from the warm-up to the end (only when SOAK_TRACEMALLOC is set)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.base: tracemalloc.Snapshot | None = None
        if TRACE_FRAMES:
            tracemalloc.start(TRACE_FRAMES)

    def at(self, t: float) -> None:
        if TRACE_FRAMES and self.base is None and t >= TRACE_AT:
            self.base = tracemalloc.take_snapshot()

    def report(self) -> None:
        if self.base is None:
            return
        stats = tracemalloc.take_snapshot().compare_to(self.base, "traceback")
        with self.out.open("w") as f:
            for stat in stats[:40]:
                f.write(f"{stat.size_diff / 1024:+.1f} KiB {stat.count_diff:+d} blocks\n")
                f.writelines(f"    {line}\n" for line in stat.traceback.format())


async def sampler(out: Path, daemon: Daemon, tracer: Tracer) -> None:
    started = time.monotonic()
    with out.open("a") as f:
        while True:
            now = sample(started, daemon)
            f.write(json.dumps(now) + "\n")
            f.flush()
            tracer.at(now["t"])
            await asyncio.sleep(SAMPLE_EVERY)


async def serve(config: Path, host: str, port: int, samples: Path) -> None:
    daemon = Daemon(load_config(config))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await daemon.start(host, port)
    tracer = Tracer(samples.with_suffix(".tracemalloc.txt"))
    task = asyncio.create_task(sampler(samples, daemon, tracer))
    await stopping.wait()
    task.cancel()
    tracer.report()
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
