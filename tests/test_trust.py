import asyncio
import os
import ssl
import sys
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from remediator.trust import default_tls
from tests.tls import Pki, make_pki


def test_the_default_trust_verifies_certificates_and_host_names_against_certifi() -> None:
    context = default_tls()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    reference = httpx.create_ssl_context(trust_env=False)
    assert context.cert_store_stats()["x509_ca"] >= reference.cert_store_stats()["x509_ca"] > 100


def test_the_default_trust_is_loaded_once_per_process() -> None:
    assert default_tls() is default_tls()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def https_server(pki: Pki) -> AsyncIterator[str]:
    """An HTTPS server on loopback whose certificate a private CA signed."""

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_context())
    await site.start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}/"
    await runner.cleanup()


CLIENT = """
import asyncio, sys, aiohttp
from remediator.trust import default_tls

async def main() -> None:
    connector = aiohttp.TCPConnector(ssl=default_tls())
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            async with session.get(sys.argv[1]) as response:
                print(response.status)
        except aiohttp.ClientConnectorCertificateError:
            print("untrusted")

asyncio.run(main())
"""


async def _get(url: str, env: dict[str, str]) -> str:
    """The answer of a client in a process of its own (the trust is loaded once per process)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, url, env=env, stdout=PIPE, stderr=PIPE
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


async def test_a_private_ca_named_in_ssl_cert_file_is_trusted_as_the_system_store_is(
    https_server: str, pki: Pki
) -> None:
    """As Prometheus and Alertmanager: SSL_CERT_FILE names the CA of an internal target."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SSL_CERT_")}
    assert await _get(https_server, base) == "untrusted"
    assert await _get(https_server, {**base, "SSL_CERT_FILE": str(pki.path("ca.crt"))}) == "200"
    other = {**base, "SSL_CERT_FILE": str(pki.path("ca-other.crt"))}
    assert await _get(https_server, other) == "untrusted"
