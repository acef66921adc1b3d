"""The Helm chart as Helm itself renders it, and what Kubernetes would say of each object.

helm-python-sdk (`helm_python`) is Helm v4's own Go SDK behind a C ABI: the same template engine,
values coalescing, values.schema.json validation and linter as the `helm` binary, with no binary.
kubernetes-validate checks each rendered object against the OpenAPI schemas of a stated Kubernetes
version, strictly (an unknown field is an error). The prometheus-operator objects have no schema
there: their rule groups go through the real promtool, and their selectors are checked against
the ones kube-prometheus-stack renders by default.

Every profile renders: each values file, everything on, and each `helm install` command the
READMEs give, parsed from the README itself.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.binaries import require_binary
from tests.peers import REMEDIATOR

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "remediator"
# The Kubernetes version the rendered objects are validated against (kubernetes-validate's
# schemas of that release, strict).
KUBERNETES = "1.33.0"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

# What kube-prometheus-stack (chart 88.5.3, templates/prometheus/prometheus.yaml and values.yaml)
# renders by default: with serviceMonitorSelectorNilUsesHelmValues and
# ruleSelectorNilUsesHelmValues true, its Prometheus selects ServiceMonitors and PrometheusRules
# labelled `release: <its release name>`, in every namespace (the namespace selectors are {});
# its Grafana's dashboard sidecar loads ConfigMaps labelled grafana_dashboard: "1" from every
# namespace (searchNamespace: ALL); its Alertmanager selects every AlertmanagerConfig ({}).
KPS_RELEASE = "kube-prometheus-stack"
KPS_SERVICE_MONITOR_SELECTOR = {"matchLabels": {"release": KPS_RELEASE}}
KPS_RULE_SELECTOR = {"matchLabels": {"release": KPS_RELEASE}}
KPS_DASHBOARD_LABEL = ("grafana_dashboard", "1")


# -- values and rendering ------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """How the helm CLI folds several -f files and --set flags into one map (maps merge key by
    key, the later value wins); the chart's defaults are then coalesced by the SDK."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class Install:
    """A `helm install` of this chart: release, namespace and the values given."""

    release: str
    namespace: str
    values: dict[str, Any] = field(default_factory=dict)


def parse_install(command: str) -> Install:
    words = shlex.split(command.replace("\\\n", " "))
    assert words[:2] == ["helm", "install"], command
    positional: list[str] = []
    namespace = "default"
    values: dict[str, Any] = {}
    rest = iter(words[2:])
    for word in rest:
        if word in ("-n", "--namespace"):
            namespace = next(rest)
        elif word in ("-f", "--values"):
            values = merge(values, load_yaml(ROOT / next(rest)))
        elif word == "--set":
            values = merge(values, helm.parse_set_string(next(rest)))
        elif word.startswith("-"):
            raise AssertionError(f"an option this test does not know: {word}")
        else:
            positional.append(word)
    release, chart = positional
    assert chart == "deploy/helm/remediator", command
    return Install(release, namespace, values)


def readme_installs(path: Path) -> list[Install]:
    text = path.read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)
    commands = re.findall(
        r"^helm install (?:[^\n]*\\\n)*[^\n]*$", "\n".join(blocks), flags=re.MULTILINE
    )
    return [parse_install(c) for c in commands]


README_INSTALLS = {
    f"{path.relative_to(ROOT)}#{i}": install
    for path in (ROOT / "README.md", CHART / "README.md")
    for i, install in enumerate(readme_installs(path))
}
EVERYTHING_ON = {
    "serviceMonitor": {"enabled": True, "labels": {"release": KPS_RELEASE}},
    "prometheusRule": {
        "enabled": True,
        "runbookAlerts": True,
        "labels": {"release": KPS_RELEASE},
    },
    "grafanaDashboard": {"enabled": True},
    "ingress": {"enabled": True, "className": "nginx", "tlsSecretName": "remediator-tls"},
    "networkPolicy": {"enabled": True},
    "rbac": {"create": True, "resourceNames": ["parse-worker", "promotion-worker"]},
    "podDisruptionBudget": {"enabled": True},
}
SLACK_KEYS = ["webhook-token", "api-token", "slack-bot-token", "slack-signing-secret"]
SLACK_HTTP = {
    "secrets": {"keys": SLACK_KEYS},
    "config": {
        "slack": {
            "bot_token_file": "secrets/slack-bot-token",
            "signing_secret_file": "secrets/slack-signing-secret",
            "channel": "C0123456789",
        }
    },
    "ingress": {"enabled": True, "host": "remediator.example.com"},
}
SLACK_SOCKET = {
    "secrets": {"keys": [*SLACK_KEYS[:3], "slack-app-token"]},
    "config": {
        "slack": {
            "bot_token_file": "secrets/slack-bot-token",
            "app_token_file": "secrets/slack-app-token",
            "socket_mode": True,
            "channel": "C0123456789",
        }
    },
}
SLACK_PROFILES = {
    "slack-http": Install(
        "remediator", "remediator", merge(load_yaml(CHART / "values-sqlite.yaml"), SLACK_HTTP)
    ),
    "slack-socket-mode": Install(
        "remediator", "remediator", merge(load_yaml(CHART / "values-sqlite.yaml"), SLACK_SOCKET)
    ),
}
PROFILES: dict[str, Install] = {
    "values.yaml": Install("remediator", "remediator"),
    "values-sqlite.yaml": Install(
        "remediator", "remediator", load_yaml(CHART / "values-sqlite.yaml")
    ),
    "values-postgres.yaml": Install(
        "remediator", "remediator", load_yaml(CHART / "values-postgres.yaml")
    ),
    "everything-on": Install(
        "rem", "ops", merge(load_yaml(CHART / "values-sqlite.yaml"), EVERYTHING_ON)
    ),
    **README_INSTALLS,
    **SLACK_PROFILES,
}


@dataclass(frozen=True)
class Rendered:
    install: Install
    values: dict[str, Any]  # the chart's defaults coalesced with the install's values
    objects: list[dict[str, Any]]
    notes: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if name in (None, o["metadata"]["name"])]
        assert len(found) == 1, f"{len(found)} {kind} named {name}"
        return found[0]


CHART_HANDLE = helm.Chart.load(CHART)


def render(install: Install) -> Rendered:
    manifests = CHART_HANDLE.render(
        install.values, name=install.release, namespace=install.namespace, is_install=True
    )
    objects = [
        doc
        for path, text in sorted(manifests.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    notes = manifests.get(f"{CHART_HANDLE.name}/templates/NOTES.txt", "")
    return Rendered(install, CHART_HANDLE.merge_values(install.values), objects, notes)


RENDERED = {name: render(install) for name, install in PROFILES.items()}


def profiles_with(kind: str) -> list[str]:
    return [name for name, r in RENDERED.items() if r.of_kind(kind)]


# -- label selectors -------------------------------------------------------------------------------


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions) against a label set."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        present, values = key in labels, expression.get("values") or []
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not ok:
            return False
    return True


def test_selects_reads_match_labels_and_expressions() -> None:
    labels = {"app": "x", "release": "kps"}
    assert selects({}, labels)
    assert selects({"matchLabels": {"release": "kps"}}, labels)
    assert not selects({"matchLabels": {"release": "other"}}, labels)
    in_x = {"key": "app", "operator": "In", "values": ["x"]}
    assert selects({"matchExpressions": [in_x]}, labels)
    assert not selects({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, labels)
    assert selects({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, labels)


def pod_labels(rendered: Rendered) -> dict[str, str]:
    labels: dict[str, str] = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    return labels


# -- Helm: render, lint, schema ------------------------------------------------------------------


def test_the_readmes_give_install_commands_this_test_renders() -> None:
    assert len(README_INSTALLS) >= 2, "the main README and the chart's README install the chart"


@pytest.mark.parametrize("profile", PROFILES)
def test_helm_renders_the_profile(profile: str) -> None:
    rendered = RENDERED[profile]
    kinds = {o["kind"] for o in rendered.objects}
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount"} <= kinds
    assert all(o["metadata"]["name"] for o in rendered.objects)


@pytest.mark.parametrize("profile", PROFILES)
def test_helm_lint_finds_nothing_worse_than_info(profile: str) -> None:
    report = helm.lint(
        CHART,
        PROFILES[profile].values,
        strict=True,
        namespace=PROFILES[profile].namespace,
        kube_version=f"v{KUBERNETES}",
    )
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] > 1] == []


def test_helm_lint_reports_a_broken_template(tmp_path: Path) -> None:
    """The lint has teeth: an unclosed action in a copy of the chart is an error."""
    copy = Path(CHART_HANDLE.save_dir(tmp_path))
    broken = copy / "templates" / "service.yaml"
    broken.write_text(broken.read_text(encoding="utf-8") + "\n{{ .Values.service.port\n")
    report = helm.lint(copy, strict=True)
    assert report["errors"] or [m for m in report["messages"] if m["severity"] == 3]


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"ingress": {"host": "Not A Host"}}, "/ingress/host"),
        ({"prometheusRule": {"runbookAlerts": "yes"}}, "/prometheusRule/runbookAlerts"),
        ({"networkPolicy": {"from": []}}, "/networkPolicy/from"),
        ({"podAntiAffinity": "always"}, "/podAntiAffinity"),
    ],
)
def test_helm_refuses_values_the_schema_rejects(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=complaint):
        CHART_HANDLE.render(values, name="remediator", namespace="remediator")


def test_helm_refuses_several_replicas_on_sqlite() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"replicaCount > 1 needs config.store.postgres"):
        CHART_HANDLE.render({"replicaCount": 2}, name="remediator", namespace="remediator")
    sqlite = merge(load_yaml(CHART / "values-sqlite.yaml"), {"replicaCount": 3})
    with pytest.raises(helm.HelmRenderError, match=r"SQLite is one process's file"):
        CHART_HANDLE.render(sqlite, name="remediator", namespace="remediator")


def test_helm_refuses_a_disruption_budget_that_would_block_every_drain() -> None:
    postgres = merge(
        load_yaml(CHART / "values-postgres.yaml"), {"podDisruptionBudget": {"minAvailable": 3}}
    )
    with pytest.raises(helm.HelmRenderError, match=r"minAvailable 3 with replicaCount 3 would"):
        CHART_HANDLE.render(postgres, name="remediator", namespace="remediator")
    postgres["podDisruptionBudget"]["minAvailable"] = 2  # one may go: renders
    CHART_HANDLE.render(postgres, name="remediator", namespace="remediator")


# -- several replicas ------------------------------------------------------------------------------


def spread_problems(rendered: Rendered) -> list[str]:
    """What would keep several replicas from riding out a node drained or lost: fewer than three
    of them, no PodDisruptionBudget over the pods or one that lets none go, no preferred
    anti-affinity by node between the pods."""
    problems = []
    deployment = rendered.one("Deployment")
    replicas, labels = deployment["spec"]["replicas"], pod_labels(rendered)
    if replicas < 3:
        problems.append(f"{replicas} replicas")
    budgets = [
        b["spec"]
        for b in rendered.of_kind("PodDisruptionBudget")
        if selects(b["spec"]["selector"], labels)
    ]
    if not budgets:
        problems.append("no PodDisruptionBudget selects the pods")
    for budget in budgets:
        if budget.get("maxUnavailable") in (0, "0%"):
            problems.append("the PodDisruptionBudget allows no pod to go")
        if isinstance(budget.get("minAvailable"), int) and budget["minAvailable"] >= replicas:
            problems.append("the PodDisruptionBudget allows no pod to go")
    affinity = deployment["spec"]["template"]["spec"].get("affinity", {})
    preferred = affinity.get("podAntiAffinity", {}).get(
        "preferredDuringSchedulingIgnoredDuringExecution", []
    )
    if not any(
        term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        and selects(term["podAffinityTerm"]["labelSelector"], labels)
        for term in preferred
    ):
        problems.append("no preferred anti-affinity by node between the pods")
    return problems


def test_the_postgres_profile_runs_three_replicas_that_ride_out_a_node() -> None:
    rendered = RENDERED["values-postgres.yaml"]
    assert spread_problems(rendered) == []
    assert rendered.one("Deployment")["spec"]["replicas"] == 3
    assert rendered.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_the_sqlite_profile_runs_one_replica_and_no_budget() -> None:
    rendered = RENDERED["values-sqlite.yaml"]
    assert rendered.one("Deployment")["spec"]["replicas"] == 1
    assert rendered.of_kind("PodDisruptionBudget") == []
    assert spread_problems(rendered) == [
        "1 replicas",
        "no PodDisruptionBudget selects the pods",
        "no preferred anti-affinity by node between the pods",
    ]


ZONE_ONLY = {
    "podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 100,
                "podAffinityTerm": {
                    "topologyKey": "topology.kubernetes.io/zone",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "remediator"}},
                },
            }
        ]
    }
}
OTHER_PODS = {
    "podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 100,
                "podAffinityTerm": {
                    "topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "other"}},
                },
            }
        ]
    }
}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"replicaCount": 2}, "2 replicas"),
        ({"podDisruptionBudget": {"enabled": False}}, "no PodDisruptionBudget"),
        ({"podDisruptionBudget": {"maxUnavailable": 0}}, "allows no pod to go"),
        ({"podAntiAffinity": ""}, "no preferred anti-affinity"),
        ({"podAntiAffinity": "hard"}, "no preferred anti-affinity"),
        ({"affinity": ZONE_ONLY}, "no preferred anti-affinity"),
        ({"affinity": OTHER_PODS}, "no preferred anti-affinity"),
    ],
)
def test_spread_problems_finds_what_breaks_the_spread(change: dict[str, Any], problem: str) -> None:
    install = PROFILES["values-postgres.yaml"]
    rendered = render(Install(install.release, install.namespace, merge(install.values, change)))
    assert any(problem in p for p in spread_problems(rendered)), spread_problems(rendered)
    kubernetes_validate.validate(rendered.one("Deployment"), KUBERNETES, strict=True)


# -- kubernetes-validate ---------------------------------------------------------------------------


def validated_objects() -> Iterator[tuple[str, int]]:
    for profile, rendered in RENDERED.items():
        for i, obj in enumerate(rendered.objects):
            if obj["kind"] not in CRD_KINDS:
                yield profile, i


@pytest.mark.parametrize(("profile", "index"), list(validated_objects()))
def test_kubernetes_accepts_the_object(profile: str, index: int) -> None:
    obj = RENDERED[profile].objects[index]
    try:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = ".".join(str(p) for p in e.path)
        pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {e.message}")


def test_kubernetes_validate_rejects_an_unknown_field() -> None:
    """The validation has teeth: strict schemas refuse a misspelt field."""
    service = dict(RENDERED["values.yaml"].one("Service"))
    service["spec"] = {**service["spec"], "selectors": {"a": "b"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES, strict=True)


def test_every_kind_the_chart_renders_is_validated_or_a_known_crd() -> None:
    kinds = {o["kind"] for r in RENDERED.values() for o in r.objects}
    assert kinds >= {
        "Deployment", "Service", "ConfigMap", "ServiceAccount", "PersistentVolumeClaim",
        "Role", "RoleBinding", "PodDisruptionBudget", "Ingress", "NetworkPolicy",
        "ServiceMonitor", "PrometheusRule",
    }  # fmt: skip


# -- what matters per object -----------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_the_pod_is_probed_and_locked_down(profile: str) -> None:
    rendered = RENDERED[profile]
    spec = rendered.one("Deployment")["spec"]["template"]["spec"]
    pod_security = spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] != 0
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert "http" in ports
    assert container["args"][:2] == ["--listen", f"0.0.0.0:{ports['http']}"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"]["memory"]


@pytest.mark.parametrize("profile", PROFILES)
def test_selectors_match_the_pods_labels(profile: str) -> None:
    rendered = RENDERED[profile]
    deployment = rendered.one("Deployment")
    labels = pod_labels(rendered)
    assert selects(deployment["spec"]["selector"], labels)
    assert selects({"matchLabels": rendered.one("Service")["spec"]["selector"]}, labels)
    for kind in ("PodDisruptionBudget",):
        for obj in rendered.of_kind(kind):
            assert selects(obj["spec"]["selector"], labels), kind
    for policy in rendered.of_kind("NetworkPolicy"):
        assert selects(policy["spec"]["podSelector"], labels)


@pytest.mark.parametrize("profile", PROFILES)
def test_the_service_and_its_monitor_reach_the_pods_port(profile: str) -> None:
    rendered = RENDERED[profile]
    service = rendered.one("Service")
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    for monitor in rendered.of_kind("ServiceMonitor"):
        assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == [port["name"]]
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def config_of(rendered: Rendered) -> dict[str, Any]:
    configmap = rendered.one("ConfigMap", rendered.one("Deployment")["metadata"]["name"])
    config: dict[str, Any] = yaml.safe_load(configmap["data"]["remediator.yaml"])
    return config


def secret_files(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("_file") and isinstance(value, str):
                yield value
            else:
                yield from secret_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from secret_files(item)


def projected(rendered: Rendered) -> dict[str, str]:
    """Path under /etc/remediator -> the ConfigMap or Secret it comes from."""
    volumes = rendered.one("Deployment")["spec"]["template"]["spec"]["volumes"]
    (config,) = [v for v in volumes if v["name"] == "config"]
    paths = {}
    for source in config["projected"]["sources"]:
        ((kind, ref),) = source.items()
        for item in ref["items"]:
            paths[item["path"]] = f"{kind}/{ref['name']}"
    return paths


@pytest.mark.parametrize("profile", PROFILES)
def test_every_file_the_config_reads_is_mounted_from_the_one_secret(profile: str) -> None:
    rendered = RENDERED[profile]
    mounted = projected(rendered)
    secret = rendered.values["secrets"]["existingSecret"]
    assert secret == "remediator"
    for path in secret_files(config_of(rendered)):
        assert mounted.get(path) == f"secret/{secret}", path


@pytest.mark.parametrize("profile", PROFILES)
def test_the_notes_give_the_receiver_url_with_the_namespace(profile: str) -> None:
    rendered = RENDERED[profile]
    service = rendered.one("Service")
    url = (
        f"http://{service['metadata']['name']}.{rendered.install.namespace}.svc:"
        f"{service['spec']['ports'][0]['port']}/alerts"
    )
    assert f"url: {url}" in rendered.notes
    assert f'of Secret "{rendered.values["secrets"]["existingSecret"]}"' in rendered.notes


def test_the_ingress_exposes_only_slack() -> None:
    rendered = RENDERED["everything-on"]
    ingress = rendered.one("Ingress")
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/slack", "Prefix")
    backend = path["backend"]["service"]
    assert backend["name"] == rendered.one("Service")["metadata"]["name"]
    assert backend["port"] == {"name": rendered.one("Service")["spec"]["ports"][0]["name"]}
    assert ingress["spec"]["tls"] == [{"hosts": [rule["host"]], "secretName": "remediator-tls"}]
    host = rule["host"]
    assert f"https://{host}/slack/commands" in rendered.notes
    assert f"https://{host}/slack/interactions" in rendered.notes


def test_the_network_policy_admits_monitoring_and_the_ingress_controller_only() -> None:
    rendered = RENDERED["everything-on"]
    policy = rendered.one("NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (ingress,) = policy["spec"]["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    namespaces = [p["namespaceSelector"]["matchLabels"] for p in ingress["from"]]
    assert namespaces == [
        {"kubernetes.io/metadata.name": "monitoring"},
        {"kubernetes.io/metadata.name": "ingress-nginx"},
    ]
    without_ingress = render(Install("r", "n", {"networkPolicy": {"enabled": True}}))
    assert len(without_ingress.one("NetworkPolicy")["spec"]["ingress"][0]["from"]) == 1


def promtool_check(groups: list[dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    result = subprocess.run(
        [require_binary("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("profile", profiles_with("PrometheusRule"))
def test_promtool_accepts_every_prometheusrule(profile: str, tmp_path: Path) -> None:
    for rule in RENDERED[profile].of_kind("PrometheusRule"):
        assert rule["apiVersion"] == "monitoring.coreos.com/v1"
        promtool_check(rule["spec"]["groups"], tmp_path)


def alert_names(groups: list[dict[str, Any]]) -> set[str]:
    return {r["alert"] for g in groups for r in g["rules"] if "alert" in r}


def test_the_runbook_alerts_are_the_repositorys() -> None:
    rendered = RENDERED["everything-on"]
    runbooks = rendered.one("PrometheusRule", "rem-remediator-runbooks")
    sources = sorted((ROOT / "alerting" / "prometheus" / "rules").glob("*.yml"))
    expected = [p for p in sources if p.name != "remediator.yml"]
    copies = sorted((CHART / "files" / "runbook-alerts").glob("*.yml"))
    assert [p.name for p in copies] == [p.name for p in expected]
    for source, copy in zip(expected, copies, strict=True):
        assert copy.read_text(encoding="utf-8") == source.read_text(encoding="utf-8"), (
            f"copy {source} to {copy.parent}"
        )
    groups = [g for p in expected for g in load_yaml(p)["groups"]]
    assert runbooks["spec"]["groups"] == groups
    assert "IngestionHighErrorRate" in alert_names(runbooks["spec"]["groups"])
    self_alerts = rendered.one("PrometheusRule", "rem-remediator")
    assert alert_names(self_alerts["spec"]["groups"]) == alert_names(
        load_yaml(ROOT / "alerting" / "prometheus" / "rules" / "remediator.yml")["groups"]
    )


def test_the_dashboard_configmap_is_labelled_for_the_grafana_sidecar() -> None:
    rendered = RENDERED["everything-on"]
    dashboard = rendered.one("ConfigMap", "rem-remediator-dashboard")
    key, value = KPS_DASHBOARD_LABEL
    assert dashboard["metadata"]["labels"][key] == value
    assert '"title": "remediator"' in dashboard["data"]["remediator.json"]


# -- kube-prometheus-stack ---------------------------------------------------------------------


@pytest.mark.parametrize("profile", list(README_INSTALLS))
def test_the_readme_install_is_picked_up_by_kube_prometheus_stack(profile: str) -> None:
    """With the README's command, kube-prometheus-stack's default Prometheus selects the
    ServiceMonitor and both PrometheusRules, and its Grafana sidecar the dashboard."""
    rendered = RENDERED[profile]
    monitors = rendered.of_kind("ServiceMonitor")
    rules = rendered.of_kind("PrometheusRule")
    assert len(monitors) == 1
    assert len(rules) == 2
    for monitor in monitors:
        assert selects(KPS_SERVICE_MONITOR_SELECTOR, monitor["metadata"]["labels"])
    for rule in rules:
        assert selects(KPS_RULE_SELECTOR, rule["metadata"]["labels"])
    key, value = KPS_DASHBOARD_LABEL
    fullname = rendered.one("Deployment")["metadata"]["name"]
    dashboard = rendered.one("ConfigMap", f"{fullname}-dashboard")
    assert dashboard["metadata"]["labels"][key] == value


def test_without_the_release_label_kube_prometheus_stack_would_not_select_them() -> None:
    """The check above has teeth: the labels the chart's defaults give are not selected."""
    rendered = RENDERED["values-sqlite.yaml"]
    for obj in rendered.of_kind("ServiceMonitor") + rendered.of_kind("PrometheusRule"):
        assert not selects(KPS_RULE_SELECTOR, obj["metadata"]["labels"])


@pytest.mark.parametrize("profile", [*README_INSTALLS, *SLACK_PROFILES])
def test_the_rendered_config_passes_remediator_check(profile: str, tmp_path: Path) -> None:
    """The configuration the README's command (or a Slack setup) renders into the ConfigMap, laid
    out as the pod sees /etc/remediator, passes the real `remediator check`."""
    rendered = RENDERED[profile]
    configmap = rendered.one("ConfigMap", rendered.one("Deployment")["metadata"]["name"])
    for path, source in projected(rendered).items():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.startswith("configMap/"):
            key = path.replace("/", ".") if path.startswith("rules/") else path
            target.write_text(configmap["data"][key], encoding="utf-8")
        else:
            target.write_text(f"test-{target.name}\n", encoding="utf-8")
    result = subprocess.run(
        [str(REMEDIATOR), "check", "--config", str(tmp_path / "remediator.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_secret_name_everywhere() -> None:
    """The chart's Secret, the AlertmanagerConfig's and the READMEs' `kubectl create secret`."""
    name = CHART_HANDLE.values["secrets"]["existingSecret"]
    amconfig = load_yaml(ROOT / "alerting" / "alertmanager" / "alertmanagerconfig.yaml")
    (receiver,) = amconfig["spec"]["receivers"]
    credentials = receiver["webhookConfigs"][0]["httpConfig"]["authorization"]["credentials"]
    assert credentials == {"name": name, "key": "webhook-token"}
    for readme in (ROOT / "README.md", CHART / "README.md", ROOT / "alerting" / "README.md"):
        created = re.findall(r"create secret generic (\S+)", readme.read_text(encoding="utf-8"))
        assert created, readme
        assert set(created) == {name}, readme
