"""The `kubernetes` kind against an HTTP server on 127.0.0.1 that answers like the API server
(tests/standins.py KubeApi: the same paths, verbs, content types and Status objects), over plain
HTTP and over TLS with a CA, a bearer token or a client certificate. No cluster runs here."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web

from remediator.actions import kubernetes as kube_kind
from remediator.actions.base import AttemptResult, RenderContext
from remediator.actions.kubernetes import KubernetesAction
from remediator.config import load_config
from remediator.errors import ConfigError, RenderError
from remediator.trust import default_tls
from tests.actions.kinds import FAST_RETRIES, actions_yaml, attempt_ctx
from tests.conftest import Running, StartDaemon, base_config
from tests.payloads import alert, notification
from tests.standins import KubeApi, Workload, kube_status
from tests.tls import Pki, make_pki

TOKEN = "sa-token-for-tests"
DEPLOYMENTS = "/apis/apps/v1/namespaces/ingestion/deployments"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def token_or_client_certificate(request: web.Request) -> web.Response | None:
    """The API server's authentication: a bearer token, or a client certificate from its CA."""
    if request.headers.get("Authorization") == f"Bearer {TOKEN}":
        return None
    cert = request.transport.get_extra_info("peercert") if request.transport else None
    if cert and ((("commonName", "remediator"),) in cert.get("subject", ())):
        return None
    return kube_status(401, "Unauthorized", "Unauthorized")


@pytest.fixture
async def api() -> AsyncIterator[KubeApi]:
    server = KubeApi(
        {
            ("deployments", "ingestion", "parse-worker"): Workload(replicas=5),
            ("statefulsets", "ingestion", "promotion-worker"): Workload(replicas=2),
        }
    )
    server.authorize = token_or_client_certificate
    await server.server.start()
    yield server
    server.release.set()
    await server.server.stop()


def kubeconfig(
    directory: Path,
    server: str,
    user: dict[str, Any] | None = None,
    cluster: dict[str, Any] | None = None,
) -> Path:
    path = directory / "kubeconfig.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}],
                "clusters": [{"name": "c", "cluster": {"server": server, **(cluster or {})}}],
                "users": [{"name": "u", "user": user if user is not None else {"token": TOKEN}}],
            }
        )
    )
    return path


def main_config(actions: str, rules: str = "") -> str:
    return (
        base_config({"web": "http://127.0.0.1:9"})
        + "  k8s: {kubernetes: {kubeconfig: kubeconfig.yaml}}\n"
        + actions
        + rules
    )


Make = Callable[..., KubernetesAction]


@pytest.fixture
def make(write_config: Callable[..., Path], tmp_path: Path, api: KubeApi) -> Make:
    def build(
        user: dict[str, Any] | None = None,
        cluster: dict[str, Any] | None = None,
        server: str | None = None,
        **definition: Any,
    ) -> KubernetesAction:
        kubeconfig(tmp_path, server or api.server.url, user, cluster)
        spec = {"kind": "kubernetes", "cluster": "k8s"} | definition
        config = load_config(write_config(main_config(actions_yaml(act=spec))))
        found = config.actions["act"]
        assert isinstance(found, KubernetesAction)
        return found

    return build


def workload(name: str = "{worker}", kind: str = "Deployment", namespace: str = "ingestion") -> Any:
    return {"kind": kind, "namespace": namespace, "name": name}


def restart(make: Make, kind: str = "Deployment", **more: Any) -> KubernetesAction:
    return make(operation="rollout_restart", workload=workload(kind=kind), **more)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=default_tls()) as c:
        yield c


async def attempt(
    action: KubernetesAction,
    client: httpx.AsyncClient,
    n: int = 1,
    timeout: float = 5.0,
    **labels: str,
) -> AttemptResult:
    prepared = action.prepare(RenderContext({"alertname": "X", **labels}))
    return await action.attempt(prepared, attempt_ctx(client, timeout, n))


def requests(api: KubeApi) -> list[tuple[str, str, str]]:
    return [(s.method, s.path, s.headers.get("Content-Type", "")) for s in api.server.seen]


# --- rollout restart ------------------------------------------------------------------------


async def test_rollout_restart_patches_the_pod_template_like_kubectl(
    make: Make, api: KubeApi, client: httpx.AsyncClient
) -> None:
    action = restart(make)
    before = datetime.now(UTC).replace(microsecond=0)

    result = await attempt(action, client, worker="parse-worker")

    [(method, path, content_type)] = requests(api)
    assert (method, path, content_type) == (
        "PATCH",
        f"{DEPLOYMENTS}/parse-worker",
        "application/strategic-merge-patch+json",
    )
    body = api.server.seen[0].json()
    stamp = body["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
    assert body == {
        "spec": {"template": {"metadata": {"annotations": {kube_kind.RESTARTED_AT: stamp}}}}
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
    assert before <= datetime.fromisoformat(stamp) <= datetime.now(UTC)
    assert api.workloads[("deployments", "ingestion", "parse-worker")].rollouts == 1
    assert result.ok
    assert result.detail == (
        f"HTTP 200: pods of Deployment ingestion/parse-worker restarting (restartedAt {stamp})"
    )
    assert json.loads(result.output) == {
        "kind": "Deployment",
        "namespace": "ingestion",
        "name": "parse-worker",
        "restartedAt": stamp,
    }
    assert api.server.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"


async def test_a_statefulset_is_under_statefulsets(
    make: Make, api: KubeApi, client: httpx.AsyncClient
) -> None:
    result = await attempt(restart(make, "StatefulSet"), client, worker="promotion-worker")
    assert result.ok
    assert requests(api)[0][1] == "/apis/apps/v1/namespaces/ingestion/statefulsets/promotion-worker"


def test_the_stored_request_and_its_description(make: Make) -> None:
    action = restart(make)
    prepared = action.prepare(RenderContext({"worker": "parse-worker"}))
    assert prepared == {
        "operation": "rollout_restart",
        "kind": "Deployment",
        "namespace": "ingestion",
        "name": "parse-worker",
        "path": f"{DEPLOYMENTS}/parse-worker",
    }
    assert action.describe(prepared) == "rollout restart Deployment ingestion/parse-worker on k8s"


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"worker": "../kube-system"}, "'../kube-system' is not a valid Kubernetes name"),
        ({"worker": "Parse-Worker"}, "'Parse-Worker' is not a valid Kubernetes name"),
        ({"worker": "a" * 254}, "is not a valid Kubernetes name"),
        ({"worker": "w", "ns": "kube/system"}, "'kube/system' is not a valid Kubernetes namespace"),
        ({"worker": "w", "ns": "x" * 64}, "is not a valid Kubernetes namespace"),
    ],
)
def test_names_from_labels_must_be_kubernetes_names(
    make: Make, labels: dict[str, str], message: str
) -> None:
    namespace = "{ns}" if "ns" in labels else "ingestion"
    action = make(operation="rollout_restart", workload=workload(namespace=namespace))
    with pytest.raises(RenderError, match=re.escape(message)):
        action.prepare(RenderContext(labels))


# --- scale, and putting it back -----------------------------------------------------------------


async def test_scale_reads_the_count_then_patches_the_scale_subresource(
    make: Make, api: KubeApi, client: httpx.AsyncClient
) -> None:
    action = make(operation="scale", workload=workload("parse-worker"), replicas=0)

    result = await attempt(action, client)

    assert requests(api) == [
        ("GET", f"{DEPLOYMENTS}/parse-worker/scale", ""),
        ("PATCH", f"{DEPLOYMENTS}/parse-worker/scale", "application/merge-patch+json"),
    ]
    assert api.server.seen[1].json() == {
        "metadata": {"resourceVersion": "1"},
        "spec": {"replicas": 0},
    }
    assert json.loads(result.output) == {"previous_replicas": 5, "replicas": 0}
    assert (
        result.detail == "HTTP 200: Deployment ingestion/parse-worker scaled from 5 to 0 replicas"
    )
    assert api.workloads[("deployments", "ingestion", "parse-worker")].replicas == 0


async def test_a_retry_after_a_lost_answer_still_reports_the_original_count(
    make: Make, api: KubeApi, client: httpx.AsyncClient
) -> None:
    """The first PATCH went through but its answer was lost (504): the retry sees 0 replicas,
    and still reports 5, the count to restore."""
    action = make(operation="scale", workload=workload("parse-worker"), replicas=0)
    api.lose_answers = 1

    first = await attempt(action, client, n=1)
    second = await attempt(action, client, n=2)

    assert (first.ok, first.retryable, first.status_code) == (False, True, 504)
    assert json.loads(second.output) == {"previous_replicas": 5, "replicas": 0}
    assert action._memo == {}  # forgotten once the claim finished


async def test_a_retried_restart_sends_the_same_patch_and_rolls_once(
    make: Make, api: KubeApi, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock moved between the attempts: the retry still sends the first attempt's time."""
    stamps = iter(["2026-11-22T09:00:00Z", "2026-11-22T09:00:07Z"])
    monkeypatch.setattr(kube_kind, "_now", lambda: next(stamps))
    action = restart(make)
    api.lose_answers = 1
    first = await attempt(action, client, n=1, worker="parse-worker")
    second = await attempt(action, client, n=2, worker="parse-worker")
    assert (first.retryable, second.ok) == (True, True)
    assert api.server.seen[0].body == api.server.seen[1].body
    assert "2026-11-22T09:00:00Z" in api.server.seen[1].body.decode()
    assert api.workloads[("deployments", "ingestion", "parse-worker")].rollouts == 1
    third = await attempt(action, client, n=1, worker="parse-worker")  # a new claim: a new time
    assert json.loads(third.output)["restartedAt"] == "2026-11-22T09:00:07Z"


async def test_scale_down_then_restore_on_resolve_through_the_daemon(
    write_config: Callable[..., Path], start_daemon: StartDaemon, tmp_path: Path, api: KubeApi
) -> None:
    kubeconfig(tmp_path, api.server.url)
    common = {"kind": "kubernetes", "cluster": "k8s", "operation": "scale", "workload": workload()}
    actions = actions_yaml(
        scale_down=common | {"replicas": 0},
        scale_up=common | {"replicas": "{$results.scale_down.previous_replicas}"},
    )
    rules = (
        "rules:\n  - {name: r, match: '{alertname=\"X\"}', incident_key: [worker],\n"
        "     tiers: [{actions: [scale_down]}],\n"
        "     on_resolved: [{action: scale_up, if_ran: [scale_down]}]}\n"
    )
    running = await start_daemon(write_config(main_config(actions, rules)))
    worker = api.workloads[("deployments", "ingestion", "parse-worker")]
    await fire(running, "firing")
    assert worker.replicas == 0
    await fire(running, "resolved")
    assert worker.replicas == 5
    items = (await running.api("/api/v1/actions"))["items"]
    assert [(a["action"], a["status"]) for a in reversed(items)] == [
        ("scale_down", "succeeded"),
        ("scale_up", "succeeded"),
    ]
    assert items[0]["request"]["replicas"] == 5
    assert items[0]["detail"].endswith("scaled from 0 to 5 replicas")


async def fire(running: Running, status: str) -> None:
    payload = notification(alert("X", status, worker="parse-worker"))
    assert (await running.post_alerts(payload)).status_code == 200
    await running.settle()


# --- errors ------------------------------------------------------------------------------------


async def test_an_unknown_workload_is_a_final_failure_naming_it(
    make: Make, client: httpx.AsyncClient
) -> None:
    result = await attempt(restart(make), client, worker="ghost")
    assert (result.ok, result.retryable, result.status_code) == (False, False, 404)
    assert result.detail == (
        "HTTP 404: Deployment ingestion/ghost not found on cluster 'k8s' "
        '(deployments.apps "ghost" not found)'
    )


async def test_a_404_without_a_status_is_not_an_api_server(
    make: Make, client: httpx.AsyncClient, recorder: Callable[..., Awaitable[Any]]
) -> None:
    other = await recorder(404)
    result = await attempt(restart(make, server=other.server.url), client, worker="w")
    assert (result.ok, result.retryable) == (False, False)
    assert result.detail.startswith("HTTP 404 without a Kubernetes Status: is cluster 'k8s'")


async def test_the_api_server_refuses_a_patch_type_it_does_not_know(
    make: Make, api: KubeApi, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stand-in is faithful about content types (415), and a 415 is final."""
    monkeypatch.setattr(kube_kind, "STRATEGIC_MERGE", "application/json")
    result = await attempt(restart(make), client, worker="parse-worker")
    assert (result.ok, result.retryable, result.status_code) == (False, False, 415)
    assert result.detail.startswith(
        "HTTP 415 UnsupportedMediaType: the body of the request was in an unknown format"
    )
    assert api.workloads[("deployments", "ingestion", "parse-worker")].rollouts == 0


@pytest.mark.parametrize(
    ("status", "reason", "retryable"),
    [
        (403, "Forbidden", False),
        (422, "Invalid", False),
        (409, "Conflict", True),
        (429, "TooManyRequests", True),
        (500, "InternalError", True),
        (503, "ServiceUnavailable", True),
    ],
)
async def test_api_errors_by_reason(
    make: Make,
    api: KubeApi,
    client: httpx.AsyncClient,
    status: int,
    reason: str,
    retryable: bool,
) -> None:
    api.authorize = lambda request: kube_status(status, reason, "no")
    result = await attempt(restart(make), client, worker="parse-worker")
    assert (result.ok, result.retryable, result.status_code) == (False, retryable, status)


async def test_rbac_forbidden_says_what_is_missing(
    make: Make, api: KubeApi, client: httpx.AsyncClient
) -> None:
    message = (
        'deployments.apps "parse-worker" is forbidden: User "system:serviceaccount:remediator:'
        'remediator" cannot patch resource "deployments" in API group "apps" in the namespace '
        '"ingestion"'
    )
    api.authorize = lambda request: kube_status(403, "Forbidden", message)
    result = await attempt(restart(make), client, worker="parse-worker")
    assert result.detail == f"HTTP 403 Forbidden: {message}"


async def test_wrong_credentials_are_final(make: Make, client: httpx.AsyncClient) -> None:
    result = await attempt(restart(make, user={"token": "stale"}), client, worker="parse-worker")
    assert (result.ok, result.retryable, result.status_code) == (False, False, 401)
    assert result.detail.startswith("HTTP 401: cluster 'k8s' refused the credentials (")
    assert "stale" not in result.detail + result.output


async def test_a_hanging_api_server_times_out(
    make: Make, api: KubeApi, client: httpx.AsyncClient
) -> None:
    api.hang.set()
    result = await attempt(restart(make), client, timeout=0.2, worker="parse-worker")
    assert result == AttemptResult(False, "timed out after 0.2s", retryable=True)


async def test_conflicts_and_unavailability_are_retried_by_the_executor(
    write_config: Callable[..., Path], start_daemon: StartDaemon, tmp_path: Path, api: KubeApi
) -> None:
    kubeconfig(tmp_path, api.server.url)
    api.conflicts, api.failures = 1, 1
    definition = {"kind": "kubernetes", "cluster": "k8s", "operation": "scale",
                  "workload": workload("parse-worker"), "replicas": 1,
                  "retries": 3} | FAST_RETRIES  # fmt: skip
    actions = actions_yaml(act=definition)
    rule = "rules:\n  - {name: r, match: '{alertname=\"X\"}', tiers: [{actions: [act]}]}\n"
    running = await start_daemon(write_config(main_config(actions, rule)))
    await fire(running, "firing")
    [action] = (await running.api("/api/v1/actions"))["items"]
    assert (action["status"], action["attempts"]) == ("succeeded", 3)
    assert action["detail"].endswith("scaled from 5 to 1 replicas")
    assert [(m, p.rsplit("/", 1)[-1]) for m, p, _ in requests(api)] == [
        ("GET", "scale"),  # 503
        ("GET", "scale"),
        ("PATCH", "scale"),  # 409: stale resourceVersion
        ("GET", "scale"),
        ("PATCH", "scale"),
    ]


# --- TLS: a CA, a token, a client certificate, in-cluster ---------------------------------


@pytest.fixture
async def tls_api(pki: Pki) -> AsyncIterator[KubeApi]:
    server = KubeApi({("deployments", "ingestion", "parse-worker"): Workload()})
    server.authorize = token_or_client_certificate
    await server.server.start(tls=pki.server_context())
    yield server
    await server.server.stop()


@pytest.mark.parametrize(
    ("user", "cluster", "ok"),
    [
        ({"token": TOKEN}, {"certificate-authority": "CA"}, True),
        ({"token": TOKEN}, {"certificate-authority-data": "CA-DATA"}, True),
        (
            {"client-certificate": "CERT", "client-key": "KEY"},
            {"certificate-authority": "CA"},
            True,
        ),
        (
            {"client-certificate-data": "CERT-DATA", "client-key-data": "KEY-DATA"},
            {"certificate-authority": "CA"},
            True,
        ),
        ({}, {"certificate-authority": "CA"}, False),  # no credentials: 401
        ({"token": TOKEN}, {"insecure-skip-tls-verify": True}, True),
    ],
)
async def test_tls_with_a_ca_and_a_token_or_client_certificate(
    make: Make,
    tls_api: KubeApi,
    pki: Pki,
    client: httpx.AsyncClient,
    user: dict[str, Any],
    cluster: dict[str, Any],
    ok: bool,
) -> None:
    files = {"CA": str(pki.path("ca.crt")), "CERT": str(pki.path("client.crt")),
             "KEY": str(pki.path("client.key")), "CA-DATA": pki.data("ca.crt"),
             "CERT-DATA": pki.data("client.crt"), "KEY-DATA": pki.data("client.key")}  # fmt: skip
    resolve = {k: files.get(v, v) if isinstance(v, str) else v for k, v in user.items()}
    resolve_cluster = {k: files.get(v, v) if isinstance(v, str) else v for k, v in cluster.items()}
    action = restart(make, user=resolve, cluster=resolve_cluster, server=tls_api.server.url)
    result = await attempt(action, client, worker="parse-worker")
    assert (result.ok, result.status_code) == (ok, 200 if ok else 401), result.detail


async def test_tls_with_the_wrong_ca_does_not_connect(
    make: Make, tls_api: KubeApi, pki: Pki, client: httpx.AsyncClient
) -> None:
    action = restart(make, cluster={"certificate-authority": str(pki.path("ca-other.crt"))},
                     server=tls_api.server.url)  # fmt: skip
    result = await attempt(action, client, worker="parse-worker")
    assert not result.ok
    assert "CERTIFICATE_VERIFY_FAILED" in result.detail
    assert tls_api.server.seen == []


def in_cluster_action(write_config: Callable[..., Path]) -> Any:
    definition = {"kind": "kubernetes", "cluster": "k8s", "operation": "rollout_restart",
                  "workload": workload("parse-worker")}  # fmt: skip
    main = base_config({"web": "http://127.0.0.1:9"}) + "  k8s: {kubernetes: {in_cluster: true}}\n"
    return load_config(write_config(main + actions_yaml(act=definition))).actions["act"]


async def test_in_cluster_reads_the_service_account_at_each_attempt(
    write_config: Callable[..., Path],
    tls_api: KubeApi,
    pki: Pki,
    client: httpx.AsyncClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "ca.crt").write_bytes(pki.path("ca.crt").read_bytes())
    (account / "token").write_text("expired-token\n")
    monkeypatch.setattr("remediator.kubeconfig.SERVICE_ACCOUNT", account)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(tls_api.server.port))
    action = in_cluster_action(write_config)

    stale = await action.attempt(action.prepare(RenderContext({})), attempt_ctx(client))
    (account / "token").write_text(TOKEN + "\n")  # the kubelet rotated it
    fresh = await action.attempt(action.prepare(RenderContext({})), attempt_ctx(client))

    assert (stale.status_code, fresh.status_code) == (401, 200)


async def test_in_cluster_outside_a_pod_fails_clearly(
    write_config: Callable[..., Path], client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    action = in_cluster_action(write_config)
    result = await action.attempt(action.prepare(RenderContext({})), attempt_ctx(client))
    assert result == AttemptResult(
        False,
        "cannot reach cluster 'k8s': not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST "
        "and KUBERNETES_SERVICE_PORT are not set",
    )


# --- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"cluster": "web"}, "actions.act.cluster: target 'web' is not a Kubernetes cluster"),
        ({"operation": "delete"}, "actions.act.operation: invalid value 'delete'"),
        ({"replicas": 2}, "actions.act: give 'replicas' for operation scale, and only for it"),
        ({"operation": "scale"}, "actions.act: give 'replicas' for operation scale"),
        (
            {"workload": workload(kind="DaemonSet")},
            "actions.act.workload.kind: invalid value 'DaemonSet'",
        ),
        ({"workload": workload("{a b}")}, "actions.act.workload.name: invalid placeholder"),
        ({"workload": {"kind": "Deployment", "name": "n"}}, "actions.act.workload: missing"),
        ({"workload": workload() | {"uid": "1"}}, "actions.act.workload.uid: unknown key"),
        ({"path": "/x"}, "actions.act.path: unknown key 'path'"),
    ],
)
def test_config_errors(
    write_config: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: dict[str, Any],
    problem: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    kubeconfig(tmp_path, "http://127.0.0.1:9")
    definition = {"kind": "kubernetes", "cluster": "k8s", "operation": "rollout_restart",
                  "workload": workload("n")} | change  # fmt: skip
    text = actions_yaml(act=definition)
    with pytest.raises(ConfigError) as info:
        load_config(write_config(main_config(text)))
    [found] = info.value.problems
    assert found.startswith(f"remediator.yaml: {problem}"), found
