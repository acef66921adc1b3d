"""What the daemon says about itself: JSON logs that parse line by line (a label with a newline
stays inside its line), UTC timestamps, ids as fields, a start banner, no scheduler noise at INFO,
whole Slack messages when Slack goes to the log, dry-run and kill switch in /readyz and /metrics,
process metrics, and one clear line for a port in use."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from remediator import __version__
from remediator.logs import JsonFormatter, TextFormatter, lean_records
from tests.conftest import StartDaemon, base_config
from tests.payloads import alert, notification
from tests.peers import REMEDIATOR, DaemonProcess
from tests.standins import Recorder

RULES = """
actions:
  restart_worker: {kind: http, target: svc, path: '/restart/{worker}', retries: 0}
rules:
  - name: worker-stuck
    match: '{alertname="WorkerStuck"}'
    incident_key: [alertname, worker]
    tiers:
      - actions: [restart_worker]
"""
EVIL = "w1\n2026-12-03T00:00:00.000Z INFO forged: line"


@pytest.fixture
async def svc(recorder: Callable[..., Awaitable[Recorder]]) -> Recorder:
    return await recorder()


@pytest.fixture
def config(write_config: Callable[..., Path], svc: Recorder) -> Path:
    return write_config(
        base_config({"svc": svc.server.url}, "rule_files: [rules.yaml]\n"), rules=RULES
    )


@pytest.fixture
async def json_daemon(config: Path) -> AsyncIterator[DaemonProcess]:
    d = DaemonProcess(config, "--log-format", "json")
    await d.start()
    yield d
    await d.close()


def lines(d: DaemonProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in d.log().splitlines()]


async def test_json_logs_parse_line_by_line_and_a_newline_stays_inside_its_line(
    json_daemon: DaemonProcess, svc: Recorder
) -> None:
    body = notification(alert("WorkerStuck", worker="w1", annotations={"summary": EVIL}))
    assert (await json_daemon.post(body)).status_code == 200
    async with asyncio.timeout(20):
        while not any(r.get("claim_id") for r in lines(json_daemon)):
            await asyncio.sleep(0.05)
        while not any("forged: line" in r["message"] for r in lines(json_daemon)):
            await asyncio.sleep(0.05)
    records = lines(json_daemon)  # every line parses: json.loads raised otherwise
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"]) for r in records)
    assert not any(r["message"].startswith("2026-12-03T00:00:00.000Z") for r in records)
    [done] = [r for r in records if r.get("claim_id")]
    assert done["rule"] == "worker-stuck"
    assert isinstance(done["incident_id"], int)
    assert done["action"] == "restart_worker"
    # Slack goes to the log (no token): the whole message, the alert's newline inside its line
    slack = [r for r in records if r["logger"] == "remediator.slack.outbox"]
    assert any(EVIL in r["message"] and "*Owner:*" in r["message"] for r in slack)
    [banner] = [r for r in records if r["message"].startswith("remediator ")]
    for part in (
        __version__,
        f"127.0.0.1:{json_daemon.port}",
        "store: sqlite",
        "1 rules from",
        "Slack: to the log (no bot token), no commands",
        "dry-run: off",
        "kill switch: off (from the config)",
    ):
        assert part in banner["message"], part


def test_text_logs_keep_a_newline_inside_the_line_and_name_the_ids() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "worker %s", (EVIL,), None)
    record.claim_id, record.rule = 7, "worker-stuck"
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert line.endswith("forged: line rule=worker-stuck claim_id=7")
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO x: worker w1\\n", line)
    parsed = json.loads(JsonFormatter().format(record))
    assert parsed["message"] == f"worker {EVIL}"
    assert (parsed["claim_id"], parsed["rule"]) == (7, "worker-stuck")


async def test_readyz_and_metrics_say_dry_run_and_kill_switch(
    write_config: Callable[..., Path], start_daemon: StartDaemon
) -> None:
    config = write_config(
        base_config({}, "guardrails: {dry_run: true}\n") + RULES.replace("svc", "elsewhere"),
    )
    config.write_text(
        config.read_text().replace(
            "targets:\n  {}", "targets:\n  elsewhere: {url: 'http://127.0.0.1:1'}"
        )
    )
    running = await start_daemon(config)
    ready = (await running.client.get("/readyz")).json()
    assert (ready["dry_run"], ready["killswitch"]) == (True, False)
    metrics = (await running.client.get("/metrics")).text
    assert "remediator_dry_run 1.0" in metrics
    assert "process_resident_memory_bytes" in metrics
    assert "process_cpu_seconds_total" in metrics


def test_a_port_in_use_is_one_clear_line(config: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [str(REMEDIATOR), "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            env={"TEST_WEBHOOK_TOKEN": "w", "TEST_API_TOKEN": "a", "PATH": "/usr/bin:/bin"},
        )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"cannot listen on 127.0.0.1:{port}: address already in use"
    )


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def lean() -> Iterator[None]:
    """logs.lean_records() for one test: the logging module's switches as they were after."""
    kept = (logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing)
    lean_records()
    yield
    logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing = kept


@pytest.mark.usefixtures("lean")
def test_lean_records_skip_the_caller_and_keep_every_field_shown() -> None:
    logger = logging.getLogger("remediator.test_lean")
    handler = Kept()
    logger.addHandler(handler)
    try:
        logger.warning("%s done", "restart", extra={"incident_id": 7, "rule": "r"})
    finally:
        logger.removeHandler(handler)
    (record,) = handler.records
    assert (record.lineno, record.threadName, record.processName) == (0, None, None)
    line = TextFormatter().format(record)
    assert re.fullmatch(
        r"\S+Z WARNING remediator\.test_lean: restart done incident_id=7 rule=r", line
    )
    assert json.loads(JsonFormatter().format(record))["incident_id"] == 7
