"""The TLS trust of the HTTP clients the daemon makes for itself: certifi's bundle (httpx's
default) and the system's trust store (OpenSSL's default paths, which the SSL_CERT_FILE and
SSL_CERT_DIR environment variables name, as Prometheus and Alertmanager honour them), loaded once
per process. A private CA is trusted by adding it to the image's store or naming it in
SSL_CERT_FILE.

httpx reads and parses the whole bundle (~150 certificates) for every client it makes: 30-90 ms of
CPU each, three times per daemon start (actions, Slack, pagers). One `ssl.SSLContext` serves them
all: it is configuration, safe to share; each client still keeps its own connections. A client
that needs another trust (a Kubernetes cluster's CA from its kubeconfig) builds its own.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def default_tls() -> ssl.SSLContext:
    """Certificates verified against certifi's bundle and the system's store, host names
    checked; built once."""
    context = httpx.create_ssl_context(trust_env=False)
    context.set_default_verify_paths()
    return context
