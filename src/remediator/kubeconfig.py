"""Credentials for a Kubernetes API server: the pod's service account, or a kubeconfig file.

A target with a `kubernetes` block is a cluster the `kubernetes` action kind drives:

    targets:
      prod:    {kubernetes: {in_cluster: true}}
      staging: {kubernetes: {kubeconfig: ~/.kube/config, context: staging}}

In the cluster (client-go's InClusterConfig): `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`,
the CA and the token from /var/run/secrets/kubernetes.io/serviceaccount/. They are read at each
attempt, never at load: the kubelet rotates projected service-account tokens, and
`remediator check` outside a pod must still pass.

A kubeconfig is read at load (its errors are config errors): the context (or the current one),
its cluster's `server`, `certificate-authority(-data)`, `insecure-skip-tls-verify`, and its
user's `token`, `tokenFile`, `client-certificate(-data)` with `client-key(-data)`. Relative paths
are relative to the kubeconfig, as kubectl reads them. Credential plugins (`exec`,
`auth-provider`), basic auth and proxies are refused by name: remediator runs no programs to get
a token, so give it a service account token or a client certificate.

This is the one reader of YAML outside config.py: a kubeconfig is kubectl's format, not ours.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from remediator.schema import Node, Secret, resolve_path

KEYS = frozenset({"in_cluster", "kubeconfig", "context"})
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
REFUSED_USER_KEYS = {
    "exec": "credential plugins (exec) are not supported: remediator runs no program to get a "
    "token; use a service account token (token or tokenFile) or a client certificate",
    "auth-provider": "auth-provider plugins are not supported; use a service account token "
    "(token or tokenFile) or a client certificate",
    "username": "basic auth is not supported by Kubernetes since 1.19; use a token or a "
    "client certificate",
    "password": "basic auth is not supported by Kubernetes since 1.19; use a token or a "
    "client certificate",
}
REFUSED_CLUSTER_KEYS = ("proxy-url", "tls-server-name")


class KubeAuthError(Exception):
    """The credentials cannot be read now (in a pod without a token, a missing file)."""


@dataclass(frozen=True, slots=True)
class Connection:
    """What one attempt needs: the server's base URL, TLS settings, the auth header."""

    server: str
    verify: ssl.SSLContext | bool
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class KubeCluster:
    """How to reach one API server. Secrets are `Secret`s or paths, read when connecting."""

    source: str  # "in-cluster" or "<kubeconfig> (context x)", for messages
    in_cluster: bool = False
    server: str = ""
    ca_file: Path | None = None
    ca_data: str | None = field(default=None, repr=False)  # public, but long
    insecure: bool = False
    token: Secret | None = None
    token_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    cert_data: Secret | None = None
    key_data: Secret | None = None

    def connect(self) -> Connection:
        """Read what is read at attempt time and build the TLS context. KubeAuthError if the
        credentials are not there."""
        if self.in_cluster:
            return _in_cluster()
        headers = {}
        token = self.token.reveal() if self.token is not None else _read(self.token_file)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return Connection(self.server, self._verify(), headers)

    def _verify(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https://"):
            return True
        context = ssl.create_default_context(
            cafile=None if self.ca_file is None else str(self.ca_file), cadata=self.ca_data
        )
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            self._client_certificate(context)
        except (OSError, ssl.SSLError) as e:
            raise KubeAuthError(f"cannot load the client certificate ({self.source}): {e}") from e
        return context

    def _client_certificate(self, context: ssl.SSLContext) -> None:
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        elif self.cert_data is not None and self.key_data is not None:
            with _private_files(self.cert_data.reveal(), self.key_data.reveal()) as (cert, key):
                context.load_cert_chain(cert, key)


def _in_cluster() -> Connection:
    host, port = (
        os.environ.get("KUBERNETES_SERVICE_HOST"),
        os.environ.get("KUBERNETES_SERVICE_PORT"),
    )
    if not host or not port:
        raise KubeAuthError(
            "not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST and "
            "KUBERNETES_SERVICE_PORT are not set"
        )
    token = _read(SERVICE_ACCOUNT / "token")
    ca = SERVICE_ACCOUNT / "ca.crt"
    try:
        context = ssl.create_default_context(cafile=str(ca))
    except OSError as e:
        raise KubeAuthError(f"cannot read the service account's CA {ca}: {e.strerror}") from e
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return Connection(server, context, {"Authorization": f"Bearer {token}"})


def _read(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        hint = (
            " (is a service account token mounted? automountServiceAccountToken)"
            if path.is_relative_to(SERVICE_ACCOUNT)
            else ""
        )
        raise KubeAuthError(f"cannot read {path}: {e.strerror}{hint}") from e
    if not value:
        raise KubeAuthError(f"{path} is empty")
    return value


@contextmanager
def _private_files(cert: str, key: str) -> Iterator[tuple[str, str]]:
    """ssl loads a certificate chain only from files: write the PEMs into a directory only we
    can read, for as long as loading takes."""
    with tempfile.TemporaryDirectory(prefix="remediator-kube-") as directory:
        paths = (os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem"))
        for path, text in zip(paths, (cert, key), strict=True):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        yield paths


# -- config ----------------------------------------------------------------------------------


def parse_kubernetes(node: Node, base_dir: Path) -> KubeCluster:
    """A target's `kubernetes` block."""
    node.mapping(KEYS)
    in_cluster = node.opt("in_cluster", Node.boolean, False)
    kubeconfig = node.get("kubeconfig")
    if in_cluster == (kubeconfig is not None):
        raise node.fail("give either in_cluster: true or kubeconfig: <path>")
    if kubeconfig is None:
        if node.has("context"):
            raise node.child("context").fail("only with kubeconfig")
        return KubeCluster("in-cluster", in_cluster=True)
    path = resolve_path(kubeconfig.string(), base_dir)
    return read_kubeconfig(path, node.opt("context", Node.string, None), kubeconfig)


def read_kubeconfig(path: Path, context: str | None, at: Node) -> KubeCluster:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise at.fail(f"cannot read kubeconfig {str(path)!r}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise at.fail(f"kubeconfig {str(path)!r} is not YAML: {e}") from None
    if not isinstance(data, dict):
        raise at.fail(f"kubeconfig {str(path)!r} is not a kubeconfig (expected a mapping)")
    root = Node(data, str(path), "")
    current = root.value.get("current-context")
    name = context or (current if isinstance(current, str) else "")
    if not name:
        raise at.fail(f"kubeconfig {str(path)!r} has no current-context: give context")
    ctx = _named(root, "contexts", name, "context")
    cluster = _named(root, "clusters", ctx.require("cluster").string(), "cluster")
    user_name = ctx.get("user")
    user = None if user_name is None else _named(root, "users", user_name.string(), "user")
    found = _cluster(path, name, cluster, user)
    try:
        found.connect()  # the CA and client certificate load now, or `check` says why not
    except (KubeAuthError, OSError, ssl.SSLError) as e:
        raise at.fail(f"kubeconfig {str(path)!r}, context {name!r}: {e}") from None
    return found


def _named(root: Node, section: str, name: str, inner: str) -> Node:
    for item in root.children(section):
        if isinstance(item.value, dict) and item.value.get("name") == name:
            return item.require(inner)
    known = [i.value.get("name") for i in root.children(section) if isinstance(i.value, dict)]
    raise root.fail(f"no {inner} named {name!r} in {section} (known: {known})")


def _cluster(path: Path, context: str, cluster: Node, user: Node | None) -> KubeCluster:
    for key in REFUSED_CLUSTER_KEYS:
        if cluster.has(key):
            raise cluster.child(key).fail("not supported")
    server = cluster.require("server").string()
    if urlsplit(server).scheme not in ("http", "https") or not urlsplit(server).netloc:
        raise cluster.child("server").fail(f"expected an http(s) URL, got {server!r}")
    base = path.parent
    fields: dict[str, Any] = {
        "source": f"{path} (context {context})",
        "server": server.rstrip("/"),
        "ca_file": _path(cluster, "certificate-authority", base),
        "ca_data": _pem(cluster, "certificate-authority-data"),
        "insecure": cluster.opt("insecure-skip-tls-verify", Node.boolean, False),
    }
    if user is not None:
        fields |= _user(user, base, str(path))
    return KubeCluster(**fields)


def _user(user: Node, base: Path, source: str) -> dict[str, Any]:
    for key, why in REFUSED_USER_KEYS.items():
        if user.has(key):
            raise user.child(key).fail(why)
    if user.has("token") and user.has("tokenFile"):
        raise user.fail("give token or tokenFile, not both")
    token = user.get("token")
    fields: dict[str, Any] = {
        "token": None if token is None else Secret(token.string(), source),
        "token_file": _path(user, "tokenFile", base),
        "cert_file": _path(user, "client-certificate", base),
        "key_file": _path(user, "client-key", base),
    }
    cert_pem, key_pem = _pem(user, "client-certificate-data"), _pem(user, "client-key-data")
    fields["cert_data"] = None if cert_pem is None else Secret(cert_pem, source)
    fields["key_data"] = None if key_pem is None else Secret(key_pem, source)
    has_cert = fields["cert_file"] is not None or cert_pem is not None
    has_key = fields["key_file"] is not None or key_pem is not None
    if has_cert != has_key:
        raise user.fail("a client certificate needs its key, and a key its certificate")
    return fields


def _path(node: Node, key: str, base: Path) -> Path | None:
    value = node.get(key)
    return None if value is None else resolve_path(value.string(), base)


def _pem(node: Node, key: str) -> str | None:
    value = node.get(key)
    if value is None:
        return None
    try:
        return base64.b64decode(value.string(), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise value.fail("expected base64-encoded PEM") from None
