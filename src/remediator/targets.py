"""Targets: the systems actions drive (a Kafka Connect cluster, a migration API, a flag service).

A target gives a name to a base URL and its credentials. Guardrails count cooldowns, budgets and
circuit breakers per target, and slash commands name targets, so actions refer to them by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from remediator.guardrails import Breaker
from remediator.kubeconfig import KubeCluster, parse_kubernetes
from remediator.schema import Node, Secret

BREAKER_KEYS = frozenset({"failures", "within", "open_for"})
TARGET_KEYS = frozenset(
    {
        "url",
        "headers",
        "bearer_token_env",
        "bearer_token_file",
        "basic_auth",
        "description",
        "circuit_breaker",
        "kubernetes",
    }
)
HTTP_ONLY_KEYS = ("url", "headers", "bearer_token_env", "bearer_token_file", "basic_auth")
BASIC_KEYS = frozenset({"username", "password_env", "password_file"})


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    url: str = ""  # base URL without a trailing slash; empty for targets that are not HTTP
    headers: dict[str, str] = field(default_factory=dict)
    bearer_token: Secret | None = None
    basic_username: str | None = None
    basic_password: Secret | None = None
    description: str = ""
    breaker: Breaker | None = None  # None: the global default
    kubernetes: KubeCluster | None = None  # a cluster for the `kubernetes` kind, not an HTTP URL

    def request_headers(self) -> dict[str, str]:
        """What every request to this target carries: its configured headers, then credentials."""
        return {**self.headers, **self.auth_headers()}

    def auth_headers(self) -> dict[str, str]:
        """Credential headers, built at request time so they never reach a stored request."""
        if self.bearer_token is not None:
            return {"Authorization": f"Bearer {self.bearer_token.reveal()}"}
        if self.basic_username is not None and self.basic_password is not None:
            import base64

            pair = f"{self.basic_username}:{self.basic_password.reveal()}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        return {}


def parse_target(name: str, node: Node, base_dir: Path) -> Target:
    node.mapping(TARGET_KEYS)
    kubernetes = node.get("kubernetes")
    if kubernetes is not None:
        return _cluster_target(name, node, kubernetes, base_dir)
    url = node.opt("url", _base_url, "")
    headers = node.string_map("headers")
    basic = node.get("basic_auth")
    username, password = None, None
    if basic is not None:
        basic.mapping(BASIC_KEYS)
        username = basic.require("username").string()
        password = basic.secret("password", base_dir)
        if password is None:
            raise basic.fail("basic_auth needs password_env or password_file")
    token = node.secret("bearer_token", base_dir)
    if token is not None and basic is not None:
        raise node.fail("give either a bearer token or basic_auth, not both")
    return Target(
        name,
        url,
        headers,
        token,
        username,
        password,
        node.opt("description", Node.string, ""),
        node.opt("circuit_breaker", parse_breaker, None),
    )


def _cluster_target(name: str, node: Node, kubernetes: Node, base_dir: Path) -> Target:
    """A Kubernetes cluster: its address and credentials come from the kubernetes block."""
    for key in HTTP_ONLY_KEYS:
        if node.has(key):
            raise node.child(key).fail(
                "not with kubernetes (the cluster's credentials come "
                "from in_cluster or the kubeconfig)"
            )
    return Target(
        name,
        description=node.opt("description", Node.string, ""),
        breaker=node.opt("circuit_breaker", parse_breaker, None),
        kubernetes=parse_kubernetes(kubernetes, base_dir),
    )


def parse_breaker(node: Node) -> Breaker:
    """`{failures: 3, within: 10m, open_for: 15m}`."""
    node.mapping(BREAKER_KEYS)
    return Breaker(
        failures=node.require("failures").integer(minimum=1),
        within=node.require("within").duration(),
        open_for=node.require("open_for").duration(),
    )


def _base_url(node: Node) -> str:
    text = node.string()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise node.fail(f"expected an http(s) URL with a host, got {text!r}")
    if parts.query or parts.fragment or "{" in text:
        raise node.fail(f"a target URL is a base: no query, fragment or placeholder ({text!r})")
    return text.rstrip("/")
