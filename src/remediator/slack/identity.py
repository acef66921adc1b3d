"""auth.test at start: who the bot is, or why its token does not work.

Run in the background once the daemon listens, so that a Slack outage never delays a start. A
token Slack refuses is an error in the log with its fix and a warning on /readyz; an outage is
retried until Slack answers. Slack is delivery only: neither makes the daemon unready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from remediator.slack.fixes import TOKEN_ERRORS, explain

log = logging.getLogger(__name__)

RETRY = 30.0  # seconds between attempts while Slack cannot be reached


class TokenCheck:
    def __init__(self, token: str, base_url: str, retry: float = RETRY) -> None:
        self.client = AsyncWebClient(token=token, base_url=base_url, timeout=10)
        self.retry = retry
        self.identity: dict[str, Any] = {}  # auth.test's answer once the token works
        self.problem = ""  # why the token does not work, for /readyz
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="remediator-slack-auth-test")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()  # an auth.test in flight
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        session = getattr(self.client, "session", None)
        if session is not None:
            await session.close()

    async def _run(self) -> None:
        while not await self.check():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.retry)
            if self._stopping.is_set():
                return

    async def check(self) -> bool:
        """One auth.test; True once it has an answer about the token (works or refused)."""
        try:
            answer = await self.client.auth_test()
        except SlackApiError as e:
            return self._refused(e)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
            return self._unreachable(f"{type(e).__name__}: {e}")
        self.identity, self.problem = dict(answer.data), ""  # type: ignore[arg-type]
        log.info(
            "slack: bot token works: @%s (user %s, bot %s) in workspace %s (%s, %s)",
            answer.get("user"),
            answer.get("user_id"),
            answer.get("bot_id"),
            answer.get("team"),
            answer.get("team_id"),
            answer.get("url"),
        )
        return True

    def _refused(self, e: SlackApiError) -> bool:
        status = getattr(e.response, "status_code", 200)
        error = str(e.response.get("error", "")) if status < 500 else ""
        if error not in TOKEN_ERRORS:
            return self._unreachable(f"HTTP {status}" + (f": {error}" if error else ""))
        self.problem = f"slack: auth.test refused the bot token: {explain(error)}"
        log.error("%s; no message reaches Slack until it is fixed", self.problem)
        return True

    def _unreachable(self, why: str) -> bool:
        log.warning(
            "slack: auth.test could not check the bot token (%s); messages wait in the outbox; "
            "trying again in %gs",
            why,
            self.retry,
        )
        return False
