import ssl

import httpx

from remediator.trust import default_tls


def test_the_default_trust_verifies_certificates_and_host_names_against_certifi() -> None:
    context = default_tls()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    reference = httpx.create_ssl_context(trust_env=False)
    assert context.cert_store_stats() == reference.cert_store_stats()
    assert context.cert_store_stats()["x509_ca"] > 100  # the bundle, not an empty store


def test_the_default_trust_is_loaded_once_per_process() -> None:
    assert default_tls() is default_tls()
