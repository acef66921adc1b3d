"""The Helm chart under deploy/helm/remediator and the Dockerfile, tested without Helm or Docker.

Neither can run here, so these tests check what can be checked from Python (the chart's README
lists what cannot): the values files parse and validate against values.schema.json the way
`helm install -f` merges them; every `.Values` reference in the templates has a default and every
default is used; the default configuration passes the real `remediator check` laid out as the
pod sees it; the files the chart copies from the repository have not drifted.

jsonschema is not a dependency of the project, so the schema is checked by `validate` below, a
small draft-07 validator that refuses any keyword it does not implement (a schema using one
fails the test rather than being half-checked).
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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

# -- a small JSON Schema (draft-07) validator ------------------------------------------------------

KEYWORDS = {
    "$schema", "$comment", "title", "description", "definitions", "$ref", "type", "enum",
    "properties", "additionalProperties", "required", "propertyNames", "minLength", "pattern",
    "minimum", "maximum", "items", "minItems", "uniqueItems",
}  # fmt: skip
TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


class UnsupportedKeyword(Exception):
    pass


def validate(value: Any, schema: dict[str, Any], root: dict[str, Any], at: str = "") -> list[str]:
    """The ways `value` violates `schema` (empty if none), each naming where."""
    unknown = schema.keys() - KEYWORDS
    if unknown:
        raise UnsupportedKeyword(
            f"{at or '/'}: this validator does not implement {sorted(unknown)}"
        )
    if "$ref" in schema:  # draft-07: keywords beside $ref are ignored
        return validate(value, resolve(schema["$ref"], root), root, at)
    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else types
        if not any(TYPES[t](value) for t in allowed):
            return [f"{at or '/'}: expected {' or '.join(allowed)}, got {value!r}"]
    if "enum" in schema and not any(same(value, e) for e in schema["enum"]):
        return [f"{at or '/'}: {value!r} is not one of {schema['enum']}"]
    if isinstance(value, str):
        return check_string(value, schema, at)
    if TYPES["number"](value):
        return check_number(value, schema, at)
    if isinstance(value, list):
        return check_array(value, schema, root, at)
    if isinstance(value, dict):
        return check_object(value, schema, root, at)
    return []


def resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    assert ref.startswith("#/"), ref
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return dict(node)


def same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def check_string(value: str, schema: dict[str, Any], at: str) -> list[str]:
    errors = []
    if len(value) < schema.get("minLength", 0):
        errors.append(f"{at}: shorter than {schema['minLength']}")
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        errors.append(f"{at}: {value!r} does not match {schema['pattern']}")
    return errors


def check_number(value: float, schema: dict[str, Any], at: str) -> list[str]:
    errors = []
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{at}: {value} < {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{at}: {value} > {schema['maximum']}")
    return errors


def check_array(
    value: list[Any], schema: dict[str, Any], root: dict[str, Any], at: str
) -> list[str]:
    errors = []
    if len(value) < schema.get("minItems", 0):
        errors.append(f"{at}: fewer than {schema['minItems']} items")
    if schema.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) < len(
        value
    ):
        errors.append(f"{at}: items are not unique")
    for i, item in enumerate(value):
        errors += validate(item, schema.get("items", {}), root, f"{at}[{i}]")
    return errors


def check_object(
    value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], at: str
) -> list[str]:
    errors = [
        f"{at}: {key!r} is required" for key in schema.get("required", []) if key not in value
    ]
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        where = f"{at}.{key}" if at else key
        if "propertyNames" in schema:
            errors += validate(key, schema["propertyNames"], root, f"{where} (name)")
        if key in properties:
            errors += validate(item, properties[key], root, where)
        elif extra is False:
            errors.append(f"{where}: unknown key")
        elif isinstance(extra, dict):
            errors += validate(item, extra, root, where)
    return errors


# -- the chart's files ----------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def coalesce(base: Any, override: Any) -> Any:
    """Values as `helm install -f override.yaml` merges them: maps merge key by key, null deletes
    a key, anything else replaces."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return override
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = coalesce(base.get(key), value)
    return merged


SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
DEFAULTS: dict[str, Any] = load_yaml(CHART / "values.yaml")
PROFILES = {
    "values.yaml": DEFAULTS,
    "values-sqlite.yaml": coalesce(DEFAULTS, load_yaml(CHART / "values-sqlite.yaml")),
    "values-postgres.yaml": coalesce(DEFAULTS, load_yaml(CHART / "values-postgres.yaml")),
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


def test_the_schema_is_draft_07_and_uses_only_implemented_keywords() -> None:
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"

    def walk(node: Any, at: str) -> Iterator[str]:
        if isinstance(node, dict):
            yield from (f"{at}.{k}" for k in node.keys() - KEYWORDS)
            for key in ("properties", "definitions"):
                for name, child in node.get(key, {}).items():
                    yield from walk(child, f"{at}.{key}.{name}")
            for key in ("items", "additionalProperties", "propertyNames"):
                yield from walk(node.get(key), f"{at}.{key}")

    assert list(walk(SCHEMA, "")) == []


@pytest.mark.parametrize("profile", PROFILES)
def test_the_schema_accepts_the_shipped_values(profile: str) -> None:
    assert validate(PROFILES[profile], SCHEMA, SCHEMA) == []


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"replicaCount": "two"}, "replicaCount: expected integer"),
        ({"replicas": 2}, "replicas: unknown key"),
        ({"image": {"pullPolicy": "Sometimes"}}, "image.pullPolicy"),
        ({"logLevel": "verbose"}, "logLevel"),
        ({"containerPort": 70000}, "containerPort: 70000 > 65535"),
        ({"persistence": {"size": "lots"}}, "persistence.size"),
        ({"persistence": {"enable": True}}, "persistence.enable: unknown key"),
        ({"securityContext": {"allowPrivilegeEscalation": True}}, "allowPrivilegeEscalation"),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
        ({"rules": {"cdc.txt": "rules: []"}}, "cdc.txt (name)"),
        ({"rules": {"extra.yaml": 3}}, "rules.extra.yaml: expected"),
        ({"secrets": {"keys": ["../etc/passwd"]}}, "secrets.keys[0]"),
        ({"secrets": {"keys": ["a", "a"]}}, "not unique"),
        ({"serviceMonitor": {"interval": "soon"}}, "serviceMonitor.interval"),
        ({"podDisruptionBudget": {"minAvailable": "half"}}, "minAvailable"),
        ({"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}, "grafana_dashboard"),
        ({"rbac": {"create": "yes"}}, "rbac.create: expected boolean"),
        ({"rbac": {"namespaces": ["Ingestion_Workers"]}}, "rbac.namespaces[0]"),
        ({"rbac": {"namespace": ["ingestion"]}}, "rbac.namespace: unknown key"),
        ({"rbac": {"resourceNames": ["parse-worker", "parse-worker"]}}, "not unique"),
        ({"serviceAccount": {"automountToken": "true"}}, "automountToken: expected boolean"),
    ],
)
def test_the_schema_rejects_mistakes(change: dict[str, Any], complaint: str) -> None:
    errors = validate(coalesce(DEFAULTS, change), SCHEMA, SCHEMA)
    assert any(complaint in e for e in errors), errors


def test_the_validator_refuses_keywords_it_does_not_implement() -> None:
    with pytest.raises(UnsupportedKeyword, match="oneOf"):
        validate(1, {"oneOf": [{"type": "integer"}]}, {})


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


def test_every_included_template_is_defined() -> None:
    texts = templates()
    defined = {m for t in texts.values() for m in re.findall(r'define\s+"([^"]+)"', t)}
    included = {
        m for t in texts.values() for m in re.findall(r'(?:include|template)\s+"([^"]+)"', t)
    }
    assert included - defined == set()


@pytest.mark.parametrize("name", sorted(templates()))
def test_template_actions_are_balanced(name: str) -> None:
    code = re.sub(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", "", templates()[name], flags=re.DOTALL)
    assert "/*" not in code, "an unclosed template comment"
    assert "*/" not in code, "an unopened template comment"
    assert code.count("{{") == code.count("}}")


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
    assert "NOT IMPLEMENTED" in (CHART / "values-postgres.yaml").read_text(encoding="utf-8")


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
