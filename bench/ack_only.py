"""The daemon with its engine unplugged, for the ingest benchmark's diagnostic row: the
acknowledgement path alone (auth, validation, the journal commit at synchronous=FULL, the 200),
with nothing decided or acted on. Not a way to run remediator: an acknowledged notification is
never decided here.

Usage: python -m bench.ack_only CONFIG PORT
"""

from __future__ import annotations

import asyncio
import sys

from remediator.alerts import Notification
from remediator.config import load_config
from remediator.server import Daemon


async def serve(config: str, port: int) -> None:
    daemon = Daemon(load_config(config))

    def unplugged(journal_id: int, notification: Notification) -> None:
        pass

    daemon.engine.submit = unplugged  # type: ignore[method-assign]
    await daemon.serve("127.0.0.1", port)


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2])))
