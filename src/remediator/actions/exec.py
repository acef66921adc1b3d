"""`exec`: run a program, never a shell.

The command is an argv list from config; a placeholder fills part of one element and stays in that
element whatever it contains (spaces, quotes, `;`, `$(...)`). Alert data also reaches the program
as environment variables. The program gets a minimal environment (not the daemon's, which holds
secrets), is killed with its process group on timeout, and its exit code and the first bytes of its
output are recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path

from remediator.actions import COMMON_KEYS, ActionCommon, ActionRegistry, ParseEnv
from remediator.actions.base import (
    AttemptContext,
    AttemptResult,
    Prepared,
    RenderContext,
    RetryPolicy,
    Template,
)
from remediator.schema import Node, resolve_path

KEYS = COMMON_KEYS | {
    "argv",
    "env",
    "pass_env",
    "cwd",
    "target",
    "max_output_bytes",
    "retry_on_exit_codes",
}
PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "TZ")
_ENV_NAME = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True, slots=True)
class ExecAction:
    name: str
    timeout: float
    retry: RetryPolicy
    argv: tuple[Template, ...]
    env: dict[str, str]
    pass_env: tuple[str, ...]  # read from the daemon's environment at run time, never stored
    cwd: str | None
    target: str
    max_output_bytes: int
    retry_on_exit_codes: frozenset[int]
    description: str = ""
    kind: str = "exec"

    def prepare(self, ctx: RenderContext) -> Prepared:
        return {
            "argv": [part.render(ctx) for part in self.argv],
            "env": {**self.env, **alert_environment(ctx)},
        }

    def describe(self, prepared: Prepared) -> str:
        return " ".join(
            json.dumps(arg) if " " in arg or not arg else arg for arg in prepared["argv"]
        )

    async def attempt(self, prepared: Prepared, ctx: AttemptContext) -> AttemptResult:
        passed = PASSED_THROUGH + self.pass_env
        env = {k: os.environ[k] for k in passed if k in os.environ}
        env.update(prepared["env"])
        env["REMEDIATOR_IDEMPOTENCY_KEY"] = ctx.idempotency_key
        env["REMEDIATOR_ATTEMPT"] = str(ctx.attempt)
        try:
            process = await asyncio.create_subprocess_exec(
                *prepared["argv"],
                env=env,
                cwd=self.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            return AttemptResult(False, f"cannot start {prepared['argv'][0]!r}: {e.strerror}")
        except ValueError as e:  # a NUL byte from alert data cannot be in argv or environ
            return AttemptResult(False, f"cannot start {prepared['argv'][0]!r}: {e}")
        return await self._wait(process, ctx.timeout)

    async def _wait(self, process: asyncio.subprocess.Process, limit: float) -> AttemptResult:
        assert process.stdout is not None
        reader = asyncio.ensure_future(_read_bounded(process.stdout, self.max_output_bytes))
        try:
            code = await asyncio.wait_for(process.wait(), limit)
        except TimeoutError:
            _kill_group(process)
            await process.wait()
            output = await reader
            return AttemptResult(
                False, f"killed after {limit:g}s timeout", retryable=True, output=output
            )
        except asyncio.CancelledError:
            _kill_group(process)
            await asyncio.shield(process.wait())  # reap it: never leave a running transport
            raise
        _kill_group(process)  # leave nothing behind, and close the pipe a straggler holds open
        output = await reader
        if code == 0:
            return AttemptResult(True, "exit 0", exit_code=0, output=output)
        ended = f"exit {code}" if code > 0 else f"killed by signal {-code}"
        return AttemptResult(
            False,
            ended + (f": {output.strip()[-200:]}" if output.strip() else ""),
            retryable=code in self.retry_on_exit_codes,
            exit_code=code,
            output=output,
        )


def alert_environment(ctx: RenderContext) -> dict[str, str]:
    """REMEDIATOR_LABEL_<NAME>, REMEDIATOR_ANNOTATION_<NAME> and the incident's facts."""
    env = {
        "REMEDIATOR_RULE": ctx.rule,
        "REMEDIATOR_TIER": ctx.tier,
        "REMEDIATOR_INCIDENT_ID": str(ctx.incident_id),
        "REMEDIATOR_FINGERPRINT": ctx.fingerprint,
        "REMEDIATOR_VALUE": "" if ctx.value is None else f"{ctx.value:g}",
        "REMEDIATOR_LABELS_JSON": json.dumps(dict(ctx.labels), sort_keys=True),
    }
    for name, value in ctx.labels.items():
        env["REMEDIATOR_LABEL_" + _ENV_NAME.sub("_", name).upper()] = value
    for name, value in ctx.annotations.items():
        env["REMEDIATOR_ANNOTATION_" + _ENV_NAME.sub("_", name).upper()] = value
    return env


async def _read_bounded(stream: asyncio.StreamReader, limit: int) -> str:
    """Keep the first `limit` bytes; drain the rest so the program never blocks on a full pipe."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return kept.decode("utf-8", errors="replace")


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def build(node: Node, common: ActionCommon, env: ParseEnv) -> ExecAction:
    node.mapping(KEYS)
    argv_node = node.require("argv")
    argv = tuple(Template.parse(item) for item in argv_node.sequence())
    if not argv:
        raise argv_node.fail("argv must name a program")
    if "{" in argv[0].text:
        raise argv_node.child(0).fail("the program itself cannot come from alert data")
    if not argv[0].text.strip():
        raise argv_node.child(0).fail("the program name is empty")
    target = node.get("target")
    cwd = node.get("cwd")
    return ExecAction(
        name=common.name,
        timeout=common.timeout,
        retry=common.retry,
        argv=argv,
        env=node.string_map("env"),
        pass_env=tuple(node.strings("pass_env")),
        cwd=None if cwd is None else str(resolve_path(cwd.string(), env.base_dir)),
        target=env.target(target).name if target is not None else f"exec:{Path(argv[0].text).name}",
        max_output_bytes=node.opt("max_output_bytes", lambda n: n.integer(minimum=0), 65536),
        retry_on_exit_codes=frozenset(node.integers("retry_on_exit_codes")),
        description=common.description,
    )


def register(registry: ActionRegistry) -> None:
    registry.register("exec", build, timeout=30.0, retries=0)
