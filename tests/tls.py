"""A throwaway PKI made with the openssl command: a CA, a server certificate for 127.0.0.1 and a
client certificate, for stand-ins that speak TLS like a Kubernetes API server does."""

from __future__ import annotations

import base64
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.binaries import require_binary

EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = {usage}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
{san}
"""


@dataclass(frozen=True)
class Pki:
    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    def data(self, name: str) -> str:
        """A file as kubeconfig's *-data fields hold it: base64 of the PEM."""
        return base64.b64encode(self.path(name).read_bytes()).decode()

    def server_context(self) -> ssl.SSLContext:
        """The server side: our certificate, and client certificates from our CA accepted (not
        required: token users connect without one)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.path("server.crt"), self.path("server.key"))
        context.load_verify_locations(self.path("ca.crt"))
        context.verify_mode = ssl.CERT_OPTIONAL
        return context


def make_pki(directory: Path) -> Pki:
    """ca (and a second, unrelated ca-other), server (127.0.0.1), client (CN=remediator)."""
    openssl = require_binary("openssl")
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True, timeout=60)

    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for ca in ("ca", "ca-other"):
        run("req", "-x509", *key, "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
            "-subj", f"/CN={ca}", "-days", "2")  # fmt: skip
    for name, subject, usage, san in (
        ("server", "/CN=kubernetes", "serverAuth", "subjectAltName = IP:127.0.0.1"),
        ("client", "/O=system:masters/CN=remediator", "clientAuth", ""),
    ):
        (directory / f"{name}.ext").write_text(EXTENSIONS.format(usage=usage, san=san))
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
            "-extfile", f"{name}.ext")  # fmt: skip
    return Pki(directory)
