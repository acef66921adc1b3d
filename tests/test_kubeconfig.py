"""Kubernetes credentials: a kubeconfig read at load (its problems are config problems), the
pod's service account read at each attempt."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediator import kubeconfig
from remediator.config import load_config
from remediator.errors import ConfigError
from remediator.kubeconfig import KubeAuthError, KubeCluster
from tests.conftest import base_config
from tests.tls import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write_kubeconfig(path: Path, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "prod",
        "contexts": [
            {"name": "prod", "context": {"cluster": "prod", "user": "bot"}},
            {"name": "staging", "context": {"cluster": "staging", "user": "bot"}},
        ],
        "clusters": [
            {"name": "prod", "cluster": {"server": "http://prod.test:6443"}},
            {"name": "staging", "cluster": {"server": "http://staging.test:6443/k8s/clusters/c"}},
        ],
        "users": [{"name": "bot", "user": {"token": "kube-token"}}],
        "preferences": {},
    }
    data.update(overrides)
    path.write_text(yaml.safe_dump(data))
    return data


@pytest.fixture
def cluster(write_config: Callable[..., Path], tmp_path: Path) -> Callable[..., KubeCluster]:
    """The cluster of target `k8s` with the given `kubernetes` block (YAML flow text)."""

    def load(block: str) -> KubeCluster:
        main = base_config({"web": "http://127.0.0.1:9"}) + f"  k8s: {{kubernetes: {block}}}\n"
        found = load_config(write_config(main)).targets["k8s"].kubernetes
        assert found is not None
        return found

    return load


@pytest.fixture
def problem(
    write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], str]:
    monkeypatch.chdir(tmp_path)

    def load(target: str) -> str:
        main = base_config({"web": "http://127.0.0.1:9"}) + f"  k8s: {target}\n"
        with pytest.raises(ConfigError) as info:
            load_config(write_config(main))
        [found] = info.value.problems
        return found

    return load


def test_the_current_context(cluster: Callable[..., KubeCluster], tmp_path: Path) -> None:
    write_kubeconfig(tmp_path / "kubeconfig")
    found = cluster("{kubeconfig: kubeconfig}")
    connection = found.connect()
    assert (connection.server, connection.verify) == ("http://prod.test:6443", True)
    assert connection.headers == {"Authorization": "Bearer kube-token"}
    assert found.source == f"{tmp_path / 'kubeconfig'} (context prod)"
    assert "kube-token" not in repr(found)


def test_a_named_context_and_a_server_path(
    cluster: Callable[..., KubeCluster], tmp_path: Path
) -> None:
    write_kubeconfig(tmp_path / "kubeconfig")
    found = cluster("{kubeconfig: kubeconfig, context: staging}")
    assert found.connect().server == "http://staging.test:6443/k8s/clusters/c"


def test_a_token_file_is_read_at_each_connection(
    cluster: Callable[..., KubeCluster], tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("first\n")
    write_kubeconfig(
        tmp_path / "kubeconfig", users=[{"name": "bot", "user": {"tokenFile": "token"}}]
    )
    found = cluster("{kubeconfig: kubeconfig}")
    before = found.connect().headers
    (tmp_path / "token").write_text("rotated\n")
    assert (before, found.connect().headers) == (
        {"Authorization": "Bearer first"},
        {"Authorization": "Bearer rotated"},
    )
    (tmp_path / "token").unlink()
    with pytest.raises(KubeAuthError, match=r"cannot read .*token: No such file"):
        found.connect()


def test_relative_certificate_paths_are_the_kubeconfigs(
    cluster: Callable[..., KubeCluster], tmp_path: Path, pki: Pki
) -> None:
    kube = tmp_path / "kube"
    kube.mkdir()
    for name in ("ca.crt", "client.crt", "client.key"):
        (kube / name).write_bytes(pki.path(name).read_bytes())
    write_kubeconfig(
        kube / "config",
        clusters=[{"name": "prod", "cluster": {"server": "https://127.0.0.1:6443",
                                               "certificate-authority": "ca.crt"}}],
        users=[{"name": "bot", "user": {"client-certificate": "client.crt",
                                        "client-key": "client.key"}}],
    )  # fmt: skip
    found = cluster("{kubeconfig: kube/config}")
    assert (found.ca_file, found.cert_file) == (kube / "ca.crt", kube / "client.crt")
    assert found.connect().headers == {}


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ({"exec": {"command": "aws"}}, "users[0].user.exec: credential plugins (exec) are not "),
        ({"auth-provider": {"name": "gcp"}}, "users[0].user.auth-provider: auth-provider plugins"),
        ({"username": "a", "password": "b"}, "users[0].user.username: basic auth is not supported"),
        ({"token": "t", "tokenFile": "f"}, "users[0].user: give token or tokenFile, not both"),
        ({"client-certificate": "c.crt"}, "users[0].user: a client certificate needs its key"),
        ({"client-key-data": "!!"}, "users[0].user.client-key-data: expected base64-encoded PEM"),
    ],
)
def test_refused_users(
    problem: Callable[[str], str], tmp_path: Path, user: dict[str, Any], message: str
) -> None:
    write_kubeconfig(tmp_path / "kubeconfig", users=[{"name": "bot", "user": user}])
    found = problem("{kubernetes: {kubeconfig: kubeconfig}}")
    assert found.startswith(f"{tmp_path / 'kubeconfig'}: {message}"), found


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"current-context": ""}, "has no current-context: give context"),
        ({"current-context": "dev"}, ": no context named 'dev' in contexts (known: ['prod', "),
        ({"clusters": []}, ": no cluster named 'prod' in clusters (known: [])"),
        (
            {"clusters": [{"name": "prod", "cluster": {"server": "ftp://x"}}]},
            "clusters[0].cluster.server: expected an http(s) URL, got 'ftp://x'",
        ),
        (
            {"clusters": [{"name": "prod", "cluster": {"server": "https://x", "proxy-url": "p"}}]},
            "clusters[0].cluster.proxy-url: not supported",
        ),
        (
            {"clusters": [{"name": "prod", "cluster": {"server": "https://x",
                                                       "certificate-authority": "nope.crt"}}]},
            "context 'prod': [Errno 2] No such file or directory",
        ),
    ],
)  # fmt: skip
def test_refused_kubeconfigs(
    problem: Callable[[str], str], tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    write_kubeconfig(tmp_path / "kubeconfig", **overrides)
    assert message in problem("{kubernetes: {kubeconfig: kubeconfig}}")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("{kubernetes: {}}", "targets.k8s.kubernetes: give either in_cluster: true or kubeconfig"),
        (
            "{kubernetes: {in_cluster: true, kubeconfig: k}}",
            "targets.k8s.kubernetes: give either in_cluster: true or kubeconfig",
        ),
        (
            "{kubernetes: {in_cluster: true, context: x}}",
            "kubernetes.context: only with kubeconfig",
        ),
        ("{kubernetes: {kubeconfig: missing}}", "cannot read kubeconfig"),
        (
            "{url: 'http://x', kubernetes: {in_cluster: true}}",
            "targets.k8s.url: not with kubernetes",
        ),
        ("{kubernetes: {in_cluster: true, namespace: x}}", "kubernetes.namespace: unknown key"),
    ],
)
def test_refused_targets(problem: Callable[[str], str], target: str, message: str) -> None:
    assert message in problem(target)


def test_a_kubeconfig_that_is_not_yaml_or_a_mapping(
    problem: Callable[[str], str], tmp_path: Path
) -> None:
    (tmp_path / "kubeconfig").write_text("- just\n- a list\n")
    assert "is not a kubeconfig (expected a mapping)" in problem(
        "{kubernetes: {kubeconfig: kubeconfig}}"
    )
    (tmp_path / "kubeconfig").write_text("a: [\n")
    assert "is not YAML" in problem("{kubernetes: {kubeconfig: kubeconfig}}")


def test_in_cluster_is_read_when_connecting(
    cluster: Callable[..., KubeCluster],
    tmp_path: Path,
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = cluster("{in_cluster: true}")  # loads outside a pod: `remediator check` passes
    account = tmp_path / "serviceaccount"
    account.mkdir()
    monkeypatch.setattr(kubeconfig, "SERVICE_ACCOUNT", account)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(KubeAuthError, match=r"token: No such file.*automountServiceAccountToken"):
        found.connect()
    (account / "token").write_text("sa-token\n")
    with pytest.raises(KubeAuthError, match="cannot read the service account's CA"):
        found.connect()
    (account / "ca.crt").write_bytes(pki.path("ca.crt").read_bytes())
    connection = found.connect()
    assert connection.server == "https://[fd00::1]:443"
    assert connection.headers == {"Authorization": "Bearer sa-token"}
    assert not isinstance(connection.verify, bool)


def test_embedded_certificates_are_loaded_from_private_files(
    cluster: Callable[..., KubeCluster], tmp_path: Path, pki: Pki
) -> None:
    def data(name: str) -> str:
        return base64.b64encode(pki.path(name).read_bytes()).decode()

    write_kubeconfig(
        tmp_path / "kubeconfig",
        clusters=[{"name": "prod", "cluster": {"server": "https://127.0.0.1:6443",
                                               "certificate-authority-data": data("ca.crt")}}],
        users=[{"name": "bot", "user": {"client-certificate-data": data("client.crt"),
                                        "client-key-data": data("client.key")}}],
    )  # fmt: skip
    found = cluster("{kubeconfig: kubeconfig}")
    assert "PRIVATE KEY" not in repr(found)
    found.connect()
    broken = KubeCluster(
        "test",
        server="https://x",
        cert_data=found.cert_data,
        key_data=found.cert_data,  # a certificate where the key should be
    )
    with pytest.raises(KubeAuthError, match="cannot load the client certificate"):
        broken.connect()
