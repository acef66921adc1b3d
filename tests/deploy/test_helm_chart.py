"""The Helm chart under deploy/helm/remediator and the Dockerfile: what Helm's own checks do not
cover (test_helm_render.py renders, lints and validates the chart with Helm's SDK).

The values files against values.schema.json with Helm's own validator; every `.Values` reference
in the templates has a default and every default is used; the default configuration passes the
real `remediator check` laid out as the pod sees it; the files the chart copies from the
repository have not drifted; the Role grants what the `kubernetes` kind calls.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from remediator.actions.kubernetes import RESOURCES
from tests.peers import REMEDIATOR
from tests.standins import KubeApi

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "remediator"
TEMPLATES = CHART / "templates"
CONFIG_DIR = "/etc/remediator"
STATE_DIR = "/var/lib/remediator"

# -- the chart's files ----------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


CHART_HANDLE = helm.Chart.load(CHART)
DEFAULTS: dict[str, Any] = load_yaml(CHART / "values.yaml")
PROFILES = {
    "values.yaml": DEFAULTS,
    "values-sqlite.yaml": CHART_HANDLE.merge_values(load_yaml(CHART / "values-sqlite.yaml")),
    "values-postgres.yaml": CHART_HANDLE.merge_values(load_yaml(CHART / "values-postgres.yaml")),
}


def templates() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(TEMPLATES.iterdir())}


def values_references() -> set[tuple[str, ...]]:
    found = set()
    for text in templates().values():
        for match in re.finditer(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text):
            found.add(tuple(match.group(1).split(".")[1:]))
    return found


def leaves(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    else:
        yield path


def lookup(values: Any, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(values, dict) or key not in values:
            return False
        values = values[key]
    return True


# -- tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Chart.yaml", "values.yaml", "values-sqlite.yaml", "values-postgres.yaml"]
)
def test_the_plain_yaml_files_parse(name: str) -> None:
    assert isinstance(load_yaml(CHART / name), dict)


def test_chart_yaml_deploys_this_version() -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    with (ROOT / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "remediator"
    assert chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    assert chart["appVersion"] == version


@pytest.mark.parametrize("profile", PROFILES)
def test_the_schema_accepts_the_shipped_values(profile: str) -> None:
    CHART_HANDLE.validate_schema(PROFILES[profile])


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"replicaCount": "two"}, "'/replicaCount': got string, want integer"),
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        ({"image": {"pullPolicy": "Sometimes"}}, "'/image/pullPolicy': value must be one of"),
        ({"logLevel": "verbose"}, "'/logLevel'"),
        ({"containerPort": 70000}, "'/containerPort': maximum"),
        ({"persistence": {"size": "lots"}}, "'/persistence/size'"),
        ({"persistence": {"enable": True}}, "'enable' not allowed"),
        ({"securityContext": {"allowPrivilegeEscalation": True}}, "allowPrivilegeEscalation"),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
        ({"rules": {"cdc.txt": "rules: []"}}, "invalid propertyName 'cdc.txt'"),
        ({"rules": {"extra.yaml": 3}}, "'/rules/extra.yaml': got number"),
        ({"secrets": {"keys": ["../etc/passwd"]}}, "'/secrets/keys/0'"),
        ({"secrets": {"keys": ["a", "a"]}}, "items at 0 and 1 are equal"),
        ({"serviceMonitor": {"interval": "soon"}}, "'/serviceMonitor/interval'"),
        ({"podDisruptionBudget": {"minAvailable": "half"}}, "minAvailable"),
        ({"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}, "grafana_dashboard"),
        ({"rbac": {"create": "yes"}}, "'/rbac/create': got string, want boolean"),
        ({"rbac": {"namespaces": ["Ingestion_Workers"]}}, "'/rbac/namespaces/0'"),
        ({"rbac": {"namespace": ["ingestion"]}}, "'namespace' not allowed"),
        ({"rbac": {"resourceNames": ["parse-worker", "parse-worker"]}}, "are equal"),
        ({"serviceAccount": {"automountToken": "true"}}, "'/serviceAccount/automountToken'"),
        ({"ingress": {"host": "Remediator.Example"}}, "'/ingress/host'"),
        ({"networkPolicy": {"from": []}}, "'/networkPolicy/from'"),
    ],
)
def test_the_schema_rejects_mistakes(change: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm.HelmValuesError) as refused:
        CHART_HANDLE.validate_schema(CHART_HANDLE.merge_values(change))
    assert complaint in str(refused.value)


def test_every_values_reference_in_the_templates_has_a_default() -> None:
    missing = [".".join(p) for p in values_references() if not lookup(DEFAULTS, p)]
    assert missing == []


def test_every_default_value_is_used_by_a_template() -> None:
    used = values_references()
    unused = [
        ".".join(leaf)
        for leaf in leaves(DEFAULTS)
        if not any(leaf[:n] in used for n in range(1, len(leaf) + 1))
    ]
    assert unused == []


def render_config(values: dict[str, Any], directory: Path) -> Path:
    """Lay out /etc/remediator as the pod sees it: the ConfigMap's remediator.yaml and rule files,
    and a file per secret key (with a stand-in value)."""
    main = directory / "remediator.yaml"
    main.write_text(yaml.safe_dump(values["config"]), encoding="utf-8")
    (directory / "rules").mkdir()
    for name, rules in values["rules"].items():
        text = rules if isinstance(rules, str) else yaml.safe_dump(rules)
        (directory / "rules" / name).write_text(text, encoding="utf-8")
    (directory / "secrets").mkdir()
    for key in values["secrets"]["keys"]:
        (directory / "secrets" / key).write_text(f"test-{key}\n", encoding="utf-8")
    return main


def remediator_check(values: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REMEDIATOR), "check", "--config", str(render_config(values, tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("profile", ["values.yaml", "values-sqlite.yaml"])
def test_the_configmap_config_passes_remediator_check(profile: str, tmp_path: Path) -> None:
    result = remediator_check(PROFILES[profile], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_the_postgres_profile_passes_remediator_check(tmp_path: Path) -> None:
    result = remediator_check(PROFILES["values-postgres.yaml"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


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


@pytest.mark.parametrize("profile", PROFILES)
def test_every_secret_file_the_config_names_is_mounted(profile: str) -> None:
    values = PROFILES[profile]
    for path in secret_files(values["config"]):
        assert path.startswith("secrets/"), path
        assert path.removeprefix("secrets/") in values["secrets"]["keys"], path


@pytest.mark.parametrize("profile", PROFILES)
def test_the_sqlite_store_is_on_the_state_volume(profile: str) -> None:
    sqlite = PROFILES[profile]["config"]["store"].get("sqlite")
    if sqlite is not None:
        assert sqlite["path"].startswith(STATE_DIR + "/")


def test_the_profiles_say_what_they_are() -> None:
    sqlite, postgres = PROFILES["values-sqlite.yaml"], PROFILES["values-postgres.yaml"]
    assert sqlite["replicaCount"] == 1
    assert sqlite["persistence"]["enabled"] is True
    assert postgres["replicaCount"] > 1
    assert postgres["persistence"]["enabled"] is False
    assert postgres["podDisruptionBudget"]["enabled"] is True
    assert "sqlite" not in postgres["config"]["store"]
    assert "leader" in (CHART / "values-postgres.yaml").read_text(encoding="utf-8")


def test_the_default_rules_are_the_shipped_rule_packs() -> None:
    shipped = {p.name: load_yaml(p) for p in sorted((ROOT / "rules").glob("*.yaml"))}
    charted = {
        name: yaml.safe_load(rules) if isinstance(rules, str) else rules
        for name, rules in DEFAULTS["rules"].items()
    }
    assert charted == shipped, "copy rules/*.yaml into values.yaml's `rules` (as strings)"


def test_the_prometheusrule_carries_remediators_self_alerts() -> None:
    copy = (CHART / "files" / "remediator-alerts.yml").read_text(encoding="utf-8")
    source = ROOT / "alerting" / "prometheus" / "rules" / "remediator.yml"
    assert copy == source.read_text(encoding="utf-8"), f"copy {source} to files/"
    assert 'job="remediator"' in copy  # what templates/prometheusrule.yaml rewrites
    assert '.Files.Get "files/remediator-alerts.yml"' in templates()["prometheusrule.yaml"]


def test_the_dashboard_file_is_a_dashboard() -> None:
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text(encoding="utf-8"))
    assert dashboard["title"] == "remediator"
    assert isinstance(dashboard["panels"], list)
    text = templates()["dashboard-configmap.yaml"]
    assert '.Files.Get "files/dashboard.json"' in text
    assert DEFAULTS["grafanaDashboard"]["labels"] == {"grafana_dashboard": "1"}


def test_the_deployment_probes_and_mounts_what_remediator_needs() -> None:
    text = templates()["deployment.yaml"]
    for needle in (
        "path: /healthz",
        "path: /readyz",
        f"mountPath: {CONFIG_DIR}",
        f"mountPath: {STATE_DIR}",
        "mountPath: /tmp",
        "readOnly: true",
        "path: secrets/{{ . }}",
        "path: rules/{{ $name }}",
    ):
        assert needle in text, needle


def test_the_pod_runs_locked_down_by_default() -> None:
    pod, container = DEFAULTS["podSecurityContext"], DEFAULTS["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] != 0
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    assert DEFAULTS["resources"]["requests"]
    assert DEFAULTS["resources"]["limits"]


def test_the_dockerfile_agrees_with_the_chart() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    instructions = [line.split(None, 1) for line in text.splitlines() if line[:1].isupper()]
    by_name = {name: rest for name, rest in instructions}
    assert by_name["FROM"] == "python:3.11-slim"
    assert "pip install ." in text
    assert by_name["USER"] == "{0}:{0}".format(DEFAULTS["podSecurityContext"]["runAsUser"])
    assert by_name["EXPOSE"] == str(DEFAULTS["containerPort"])
    entrypoint = json.loads(by_name["ENTRYPOINT"])
    assert entrypoint == ["remediator", "serve", "--config", f"{CONFIG_DIR}/remediator.yaml"]


def test_the_readme_says_what_is_untested() -> None:
    text = (CHART / "README.md").read_text(encoding="utf-8")
    for needle in ("helm lint", "helm template", "docker build"):
        assert needle in text, needle


# -- RBAC for the kubernetes actions ------------------------------------------------------------


def role_rules() -> list[dict[str, Any]]:
    """The Role's rules in templates/rbac.yaml, template lines left out (the rules themselves are
    plain YAML; only the optional resourceNames are templated)."""
    text = templates()["rbac.yaml"]
    block = text.split("\nrules:\n", 1)[1].split("\n---", 1)[0]
    plain = [line for line in block.splitlines() if "{{" not in line]
    rules: list[dict[str, Any]] = yaml.safe_load("\n".join(plain))
    return rules


def test_the_role_grants_exactly_what_the_kubernetes_kind_calls() -> None:
    """The kind GETs and PATCHes a Deployment or StatefulSet and its /scale (KubeApi, the API
    server stand-in its tests run against, serves exactly those routes)."""
    verbs = {"GET": "get", "PATCH": "patch"}
    called = set()
    for route in KubeApi().server.app.router.routes():
        if route.method not in verbs:
            continue
        path = route.resource.canonical if route.resource is not None else ""
        scale = "/scale" if path.endswith("/scale") else ""
        called |= {(verbs[route.method], f"{r}{scale}") for r in RESOURCES.values()}
    granted = {
        (verb, resource)
        for rule in role_rules()
        for verb in rule["verbs"]
        for resource in rule["resources"]
    }
    assert granted == called
    assert all(rule["apiGroups"] == ["apps"] for rule in role_rules())


def test_rbac_binds_the_role_to_remediators_service_account_in_each_namespace() -> None:
    text = templates()["rbac.yaml"]
    assert "{{- if .Values.rbac.create }}" in text
    assert "{{- range $namespace := .Values.rbac.namespaces }}" in text
    assert text.count("namespace: {{ $namespace }}") == 2  # the Role and its RoleBinding
    assert 'name: {{ include "remediator.serviceAccountName" $ }}' in text
    assert "namespace: {{ $.Release.Namespace }}" in text
    assert text.count("{{- with $.Values.rbac.resourceNames }}") == 2
    helpers = templates()["_helpers.tpl"]
    assert "never the namespace's default" in helpers  # refuses to bind the default account


def test_the_token_is_mounted_with_rbac_or_when_asked_and_not_by_default() -> None:
    mounted = "{{ or .Values.rbac.create .Values.serviceAccount.automountToken }}"
    assert f"automountServiceAccountToken: {mounted}" in templates()["deployment.yaml"]
    assert DEFAULTS["rbac"]["create"] is False
    assert DEFAULTS["serviceAccount"]["automountToken"] is False
    assert "automountServiceAccountToken: false" in templates()["serviceaccount.yaml"]


def test_rbac_covers_the_namespaces_the_default_rules_act_in() -> None:
    """Every in-cluster kubernetes action of the default rule files acts in rbac.namespaces."""
    config = DEFAULTS["config"]
    in_cluster = {
        name
        for name, target in config["targets"].items()
        if (target.get("kubernetes") or {}).get("in_cluster")
    }
    acted_in = set()
    for rules in DEFAULTS["rules"].values():
        pack = yaml.safe_load(rules) if isinstance(rules, str) else rules
        for action in (pack.get("actions") or {}).values():
            if action["kind"] == "kubernetes" and action["cluster"] in in_cluster:
                acted_in.add(action["workload"]["namespace"])
    assert acted_in, "the default rules no longer act on this cluster: revisit rbac"
    assert acted_in <= set(DEFAULTS["rbac"]["namespaces"])
