"""Real servers started by tests: Prometheus from the Debian package, on a free loopback port,
stopped by the test."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

import httpx

from tests.binaries import require_binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prepare(workdir: Path, config: str) -> IO[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(
        textwrap.dedent(config) or "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
    )
    return (workdir / "prometheus.log").open("wb")


@asynccontextmanager
async def prometheus(workdir: Path, config: str = "") -> AsyncIterator[str]:
    """Run Prometheus with `config` (YAML; default: no scrape targets); yield its base URL."""
    binary = require_binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(
        textwrap.dedent(config) or "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
    )
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(30):
            while True:
                assert proc.poll() is None, (workdir / "prometheus.log").read_text()[-2000:]
                try:
                    if (await client.get(f"{url}/-/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
