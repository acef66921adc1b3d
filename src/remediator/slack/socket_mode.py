"""Socket Mode: the slash command and the buttons over a websocket remediator opens to Slack, for
clusters that cannot expose an HTTPS endpoint (slack-sdk's Socket Mode client, aiohttp flavour).

Slack hands out the websocket's URL (apps.connections.open, with the xapp- app-level token), says
`hello`, then sends each command or click as an envelope that must be acknowledged with its
`envelope_id` within three seconds; a command's ephemeral answer travels in the acknowledgement.
The websocket itself is authenticated by the app token, so there is no request signature to check;
who may use a verb is checked exactly as over HTTP (SlackApp.command and SlackApp.interaction), and
what a command or click carries is held to what the store can hold, as an HTTP form is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from remediator.slack.app import SlackApp

log = logging.getLogger(__name__)


class SocketMode:
    def __init__(self, app_token: str, base_url: str, app: SlackApp, retry: float = 5.0) -> None:
        self.app_token = app_token
        self.base_url = base_url
        self.app = app
        self.retry = retry  # seconds between attempts to (re)connect
        self.client: SocketModeClient | None = None
        self._connecting: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Connect in the background: a start never waits for Slack."""
        self.client = SocketModeClient(
            app_token=self.app_token,
            logger=log,
            web_client=AsyncWebClient(base_url=self.base_url, timeout=10),
            ping_interval=self.retry,
        )
        self.client.socket_mode_request_listeners.append(self._on_request)
        self._connecting = asyncio.create_task(self._connect(), name="remediator-slack-socket")

    async def _connect(self) -> None:
        assert self.client is not None
        await self.client.connect()  # type: ignore[no-untyped-call]  # retries until connected
        log.info("slack: Socket Mode connected; commands and clicks arrive over the websocket")

    async def stop(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self.client is not None:
            await self.client.close()  # type: ignore[no-untyped-call]

    async def _on_request(self, client: Any, request: SocketModeRequest) -> None:
        body = await self.answer(request.type, request.payload)
        await client.send_socket_mode_response(SocketModeResponse(request.envelope_id, body))

    async def answer(self, kind: str, payload: Any) -> dict[str, Any] | None:
        """The acknowledgement's payload for one envelope (None: a bare acknowledgement)."""
        if kind == "slash_commands":
            response = await self.app.socket_command(payload)
        elif kind == "interactive":
            response = await self.app.interaction(payload)
        else:
            return None  # events_api and anything newer: acknowledged, not used
        if response.content_type != "application/json" or response.text is None:
            return None
        body: dict[str, Any] = json.loads(response.text)
        return body if kind == "slash_commands" else None
