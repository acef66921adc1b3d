"""The TLS trust of the HTTP clients the daemon makes for itself: httpx's default (certifi's
bundle, the environment ignored), loaded once per process.

httpx reads and parses the whole bundle (~150 certificates) for every client it makes: 30-90 ms of
CPU each, three times per daemon start (actions, Slack, pagers). One `ssl.SSLContext` serves them
all: it is configuration, safe to share; each client still keeps its own connections. A client
that needs another trust (a Kubernetes cluster's CA, a target's `verify:`) builds its own.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def default_tls() -> ssl.SSLContext:
    """Certificates verified against certifi's bundle, host names checked: what
    `httpx.AsyncClient(trust_env=False)` would build, built once."""
    return httpx.create_ssl_context(trust_env=False)
