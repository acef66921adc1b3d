"""Real servers started by tests, each on a free loopback port and stopped by the test: the
daemon itself as a separate process, and Prometheus from the Debian package."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import httpx

from tests.binaries import require_binary
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN


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


REMEDIATOR = Path(sys.executable).parent / "remediator"


class DaemonProcess:
    """`remediator serve` in its own process on a free loopback port. The webhook and API tokens
    are the tests' (TEST_WEBHOOK_TOKEN, TEST_API_TOKEN in its environment)."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.AsyncClient(base_url=self.url)
        self.env = {**os.environ, "TEST_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "TEST_API_TOKEN": API_TOKEN}

    async def start(self) -> None:
        with (self.config.parent / "daemon.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(REMEDIATOR),
                    "serve",
                    "--config",
                    str(self.config),
                    "--listen",
                    f"127.0.0.1:{self.port}",
                ],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        async with asyncio.timeout(20):
            while True:
                assert self.proc.poll() is None, self.log()
                try:
                    if (await self.client.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    async def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        await self.client.aclose()

    async def post(self, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(
            "/alerts", json=body, headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
        )

    async def api(self, path: str) -> Any:
        r = await self.client.get(
            f"/api/v1{path}", headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
        r.raise_for_status()
        return r.json()

    async def actions(self) -> dict[str, dict[str, Any]]:
        items = (await self.api("/actions"))["items"]
        return {a["context"]["labels"]["connector"]: a for a in items}

    def log(self) -> str:
        return (self.config.parent / "daemon.log").read_text()
