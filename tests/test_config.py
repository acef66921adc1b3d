"""Loading config: every problem names file, path and value; all problems are reported at once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from remediator import config as config_module
from remediator import targets as targets_module
from remediator.actions import ActionRegistry, default_registry, http
from remediator.actions import exec as exec_kind
from remediator.actions import http as http_kind
from remediator.actions.exec import ExecAction
from remediator.actions.http import HttpAction
from remediator.config import load_config
from remediator.errors import ConfigError
from remediator.matchers import parse_matchers
from remediator.rules import Condition, ResolvedStep, Tier, ValueSource
from remediator.schema import Invalid, Node, Secret, format_duration, parse_duration
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN, base_config

SHIPPED_RULES = Path(__file__).resolve().parent.parent / "rules"
KUBECONFIG = SHIPPED_RULES.parent / "examples" / "kubeconfig.yaml"
CONNECT = {"kafka-connect": "http://connect.test:8083"}
RULE_FILES = "rule_files: [rules/*.yaml]\n"
TOP_KEYS = ", ".join(sorted(config_module.TOP_KEYS))
RULE_KEYS = ", ".join(sorted(config_module.RULE_KEYS))
TIER_KEYS = ", ".join(sorted(config_module.TIER_KEYS))
TARGET_KEYS = ", ".join(sorted(targets_module.TARGET_KEYS))
HTTP_KEYS = ", ".join(sorted(http_kind.KEYS))
EXEC_KEYS = ", ".join(sorted(exec_kind.KEYS))
KNOWN_ACTIONS = "(known: pause_connector, restart_connector)"
ACTIONS = """\
actions:
  restart_connector:
    kind: http
    target: kafka-connect
    path: /connectors/{connector}/restart
  pause_connector:
    {kind: http, target: kafka-connect, method: PUT, path: "/connectors/{connector}/pause"}
"""

Write = Callable[..., Path]


@pytest.fixture
def write(write_config: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Write:
    """write(extra, targets, main, **rule_files): remediator.yaml (`main`, or base_config plus
    `extra`) and rules/<name>.yaml. Runs in the config's directory, so that messages name the
    files `remediator.yaml` and `rules/cdc.yaml`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules").mkdir()

    def write_files(
        extra: str = "", targets: dict[str, str] | None = None, main: str = "", **rules: str
    ) -> Path:
        files = {f"rules/{name}": text for name, text in rules.items()}
        base = base_config(CONNECT if targets is None else targets)
        overridden = {line.split(":")[0] for line in extra.splitlines() if line[:1].isalpha()}
        base = "\n".join(line for line in base.splitlines() if line.split(":")[0] not in overridden)
        main = main or base + "\n" + extra
        return write_config(main, **files)

    return write_files


def problems(path: Path, registry: ActionRegistry | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, registry)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def rules(tiers: str = "[{actions: [restart_connector]}]", *extra: str, name: str = "r") -> str:
    """A `rules:` section with one rule; each of `extra` is one more `key: value` line."""
    return "rules:\n" + rule(tiers, *extra, name=name)


def rule(tiers: str, *extra: str, name: str) -> str:
    """One item of a `rules:` list."""
    lines = [
        f"  - name: {name}",
        "    match: '{alertname=\"ConnectorDown\"}'",
        f"    tiers: {tiers}",
        *(f"    {line}" for line in extra),
    ]
    return "\n".join(lines) + "\n"


def swap(old: str, new: str) -> str:
    """base_config with one piece of text replaced."""
    text = base_config(CONNECT)
    assert old in text
    return text.replace(old, new, 1)


def load_rule_file(write: Write, text: str) -> list[str]:
    return problems(write(RULE_FILES, cdc=text))


# --- a valid configuration ----------------------------------------------------------------


def test_the_shipped_rule_packs_load(write: Write) -> None:
    targets = {
        "kafka-connect": "http://connect.test:8083",
        "ingestion-config": "http://config.test:8081",
        "feature-flags": "http://flags.test:8082/",
        "migration-api": "http://migrations.test:8085",
        "alertmanager": "http://alertmanager.test:9093",
    }
    cluster = f"  ingestion-cluster: {{kubernetes: {{kubeconfig: {KUBECONFIG}}}}}\n"
    config = load_config(write(cluster + f"rule_files: [{SHIPPED_RULES}/*.yaml]\n", targets))
    assert config.rule_files == tuple(
        SHIPPED_RULES / f"{pack}.yaml" for pack in ("cdc", "incident", "ingestion", "migration")
    )
    kinds = {(a.kind, a.target) for a in config.actions.values()}
    assert kinds == {
        ("kafka_connect", "kafka-connect"),
        ("alertmanager_silence", "alertmanager"),
        ("http", "ingestion-config"),
        ("http", "feature-flags"),
        ("kubernetes", "ingestion-cluster"),
        ("http", "migration-api"),
    }
    assert config.targets["feature-flags"].url == "http://flags.test:8082"
    by_name = {r.name: r for r in config.rules}
    assert [r.name for r in config.rules][:3] == [
        "cdc-connector-down",
        "cdc-replication-lag",
        "cdc-data-mismatch",
    ]
    cdc = by_name["cdc-connector-down"]
    assert cdc.matchers == parse_matchers('{alertname="ConnectorDown"}')
    assert cdc.incident_key == ("alertname", "connector")
    assert cdc.source == f"{SHIPPED_RULES}/cdc.yaml: rules[0]"
    ingestion = by_name["ingestion-error-rate"]
    assert ingestion.incident_key == ("alertname",)
    assert ingestion.value == ValueSource("annotation", "error_rate")
    assert ingestion.tiers == (
        Tier(0, "notify", Condition(">", 0.05), ()),
        Tier(1, "pause", Condition(">", 0.1), ("pause_ingestion",), page=True),
        Tier(
            2,
            "rollback",
            Condition(">", 0.2),
            ("pause_ingestion", "rollback_feature_flag"),
            page=True,
        ),
    )
    assert ingestion.on_resolved == (ResolvedStep("resume_ingestion", ("pause_ingestion",)),)
    assert config.policy("rollback_feature_flag").destructive
    assert config.policy("rollback_migration").destructive


def test_defaults_and_tokens_from_the_environment(write: Write, tmp_path: Path) -> None:
    config = load_config(write())
    assert config.path == tmp_path / "remediator.yaml"
    assert (config.server.host, config.server.port) == ("127.0.0.1", 9095)
    assert (config.server.max_body_bytes, config.server.shutdown_grace) == (1 << 20, 20.0)
    assert config.max_concurrency == 16
    assert config.webhook_auth.bearer_token is not None
    assert config.webhook_auth.bearer_token.reveal() == WEBHOOK_TOKEN
    assert config.api_token is not None
    assert config.api_token.reveal() == API_TOKEN
    assert (config.actions, config.rules, config.rule_files) == ({}, (), ())


def test_a_rule_may_use_an_action_from_another_file(write: Write) -> None:
    lag = rules("[{actions: [pause_connector]}]", name="lag")
    config = load_config(write(RULE_FILES, cdc=ACTIONS + rules(), lag=lag))
    assert [r.name for r in config.rules] == ["r", "lag"]
    assert config.rules[1].tiers[0].actions == ("pause_connector",)


def test_rule_defaults(write: Write) -> None:
    (rule,) = load_config(write(RULE_FILES, cdc=ACTIONS + rules())).rules
    assert (rule.incident_key, rule.value, rule.on_resolved, rule.description) == (
        ("alertname",),
        None,
        (),
        "",
    )
    assert rule.tiers == (Tier(0, "tier0", None, ("restart_connector",)),)


# --- unknown keys -------------------------------------------------------------------------


def test_unknown_top_level_key(write: Write) -> None:
    assert problems(write("colour: blue\n")) == [
        f"remediator.yaml: colour: unknown key 'colour' (known: {TOP_KEYS})"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            ACTIONS + rules("[{actions: [restart_connector]}]", "severity: critical"),
            f"rules[0].severity: unknown key 'severity' (known: {RULE_KEYS})",
        ),
        (
            ACTIONS + rules("[{actions: [restart_connector], after: 5m}]"),
            f"rules[0].tiers[0].after: unknown key 'after' (known: {TIER_KEYS})",
        ),
        (
            rules("[{when: '> 1'}]", "value: {annotation: lag, default: '0'}"),
            "rules[0].value.default: unknown key 'default' (known: annotation, label)",
        ),
        (
            ACTIONS + rules("[{}]", "on_resolved: [{action: pause_connector, unless: [x]}]"),
            "rules[0].on_resolved[0].unless: unknown key 'unless' (known: action, if_ran)",
        ),
        (
            ACTIONS.replace("kind: http\n", "kind: http\n    retry: 3\n"),
            f"actions.restart_connector.retry: unknown key 'retry' (known: {HTTP_KEYS})",
        ),
        (
            ACTIONS.replace("kind: http\n", "kind: http\n    backoff: {jitter: 1}\n"),
            "actions.restart_connector.backoff.jitter: unknown key 'jitter' "
            "(known: initial, max, multiplier)",
        ),
        (
            "actions:\n  run: {kind: exec, argv: [/bin/true], shell: sh}\n",
            f"actions.run.shell: unknown key 'shell' (known: {EXEC_KEYS})",
        ),
        ("targets: {}\n", "targets: unknown key 'targets' (known: actions, rules)"),
    ],
)
def test_unknown_keys_in_a_rule_file(write: Write, text: str, message: str) -> None:
    assert load_rule_file(write, text) == [f"rules/cdc.yaml: {message}"]


@pytest.mark.parametrize(
    ("extra", "targets", "message"),
    [
        (
            "",
            {"kafka-connect": "http://connect.test:8083, colour: red"},
            f"targets.kafka-connect.colour: unknown key 'colour' (known: {TARGET_KEYS})",
        ),
        (
            "server: {port: 9095}\n",
            CONNECT,
            "server.port: unknown key 'port' (known: body_timeout, idle_timeout, "
            "journal_timeout, listen, max_body_bytes, max_connections, shutdown_grace)",
        ),
        (
            "executor: {workers: 4}\n",
            CONNECT,
            "executor.workers: unknown key 'workers' (known: max_concurrency)",
        ),
        (
            "store: {mysql: {}}\n",
            CONNECT,
            "store.mysql: unknown key 'mysql' (known: postgres, retention, sqlite)",
        ),
    ],
)
def test_unknown_keys_in_the_main_file(
    write: Write, extra: str, targets: dict[str, str], message: str
) -> None:
    assert problems(write(extra, targets)) == [f"remediator.yaml: {message}"]


@pytest.mark.parametrize("value", ["0s", "-1"])
def test_a_journal_timeout_must_be_more_than_nothing(write: Write, value: str) -> None:
    message = "must be more than 0s" if value == "0s" else "duration must not be negative"
    [problem] = problems(write(f"server: {{journal_timeout: {value}}}\n", CONNECT))
    assert problem.startswith(f"remediator.yaml: server.journal_timeout: {message}")


# --- references between rules, actions, kinds and targets ---------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            ACTIONS + rules("[{actions: [restart_conector]}]"),
            f"rules[0].tiers[0].actions[0]: unknown action 'restart_conector' {KNOWN_ACTIONS}",
        ),
        (
            ACTIONS
            + rules("[{actions: [pause_connector]}, {actions: [pause_connector, restart]}]"),
            f"rules[0].tiers[1].actions[1]: unknown action 'restart' {KNOWN_ACTIONS}",
        ),
        (
            ACTIONS + rules("[{}]", "on_resolved: [resume_connector]"),
            f"rules[0].on_resolved[0]: unknown action 'resume_connector' {KNOWN_ACTIONS}",
        ),
        (
            ACTIONS + rules("[{}]", "on_resolved: [{action: pause_connector, if_ran: [restart]}]"),
            f"rules[0].on_resolved[0].if_ran[0]: unknown action 'restart' {KNOWN_ACTIONS}",
        ),
        (
            rules("[{actions: [restart_connector]}]"),
            "rules[0].tiers[0].actions[0]: unknown action 'restart_connector' "
            "(known: none defined)",
        ),
    ],
)
def test_unknown_action(write: Write, text: str, message: str) -> None:
    assert load_rule_file(write, text) == [f"rules/cdc.yaml: {message}"]


def test_unknown_action_kind_lists_the_known_kinds(write: Write) -> None:
    text = ACTIONS.replace("kind: http", "kind: shell", 1) + rules()
    assert load_rule_file(write, text) == [
        "rules/cdc.yaml: actions.restart_connector.kind: unknown action kind 'shell' "
        "(known: alertmanager_silence, exec, http, kafka_connect, kubernetes, sql)",
        # the rule that uses it cannot find it either
        "rules/cdc.yaml: rules[0].tiers[0].actions[0]: unknown action 'restart_connector' "
        "(known: pause_connector)",
    ]


UNKNOWN_TARGET = (
    "rules/cdc.yaml: actions.restart_connector.target: unknown target 'kafka-conect' "
    "(known: kafka-connect): skipped rule(s) 'r', 'r3', whose actions need it (define the "
    "target, or leave the rules out with rule_files: [{path: ..., disable: [...]}])"
)


def two_rules_on_a_missing_target(write: Write) -> Path:
    text = ACTIONS.replace("target: kafka-connect", "target: kafka-conect", 1)
    return write(
        RULE_FILES,
        cdc=text
        + rules()
        + rule("[{actions: [pause_connector]}]", name="r2")
        + rule("[{name: a}, {name: b, actions: [restart_connector]}]", name="r3"),
    )


def test_a_rule_whose_target_is_not_configured_is_skipped_with_one_warning(
    write: Write,
) -> None:
    config = load_config(two_rules_on_a_missing_target(write))
    assert [r.name for r in config.rules] == ["r2"]
    assert "restart_connector" not in config.actions
    assert config.warnings == (UNKNOWN_TARGET,)


def test_with_strict_a_skipped_rule_is_one_problem(write: Write) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(two_rules_on_a_missing_target(write), strict=True)
    assert caught.value.problems == [f"{UNKNOWN_TARGET} [--strict]"]


def test_an_unknown_target_in_an_action_no_rule_names_is_a_problem(write: Write) -> None:
    text = ACTIONS.replace("target: kafka-connect", "target: kafka-conect", 1)
    assert load_rule_file(write, text) == [
        "rules/cdc.yaml: actions.restart_connector.target: unknown target 'kafka-conect' "
        "(known: kafka-connect)"
    ]


def test_a_target_without_a_url_is_still_a_problem(write: Write) -> None:
    text = ACTIONS.replace("target: kafka-connect", "target: cluster", 1) + rules()
    cluster = f"  cluster: {{kubernetes: {{kubeconfig: {KUBECONFIG}}}}}\n"
    main = base_config(CONNECT) + cluster + RULE_FILES
    assert problems(write(main=main, cdc=text)) == [
        "rules/cdc.yaml: actions.restart_connector.target: target 'cluster' has no url",
        "rules/cdc.yaml: rules[0].tiers[0].actions[0]: unknown action 'restart_connector' "
        "(known: pause_connector)",
    ]


# --- packs you can take apart -------------------------------------------------------------

INGESTION = SHIPPED_RULES / "ingestion.yaml"
INGESTION_RULES = [
    "ingestion-error-rate",
    "ingestion-circuit-open",
    "ingestion-staging-backlog",
    "ingestion-uploads-stuck-processing",
    "ingestion-uploads-stuck-promoting",
]
INGESTION_TARGETS = {
    "ingestion-config": "http://config.test:8081",
    "feature-flags": "http://flags.test:8082",
}


def test_ingestion_error_rate_alone_loads_without_a_kubernetes_target(write: Write) -> None:
    entry = f"rule_files:\n  - {{path: {INGESTION}, enable: [ingestion-error-rate]}}\n"
    config = load_config(write(entry, INGESTION_TARGETS), strict=True)
    assert [r.name for r in config.rules] == ["ingestion-error-rate"]
    assert config.warnings == ()
    assert "ingestion-cluster" not in config.all_targets()


def test_the_whole_ingestion_pack_without_its_cluster_is_one_warning(write: Write) -> None:
    config = load_config(write(f"rule_files: [{INGESTION}]\n", INGESTION_TARGETS))
    assert [r.name for r in config.rules] == INGESTION_RULES[:3]
    (warning,) = config.warnings
    assert "unknown target 'ingestion-cluster'" in warning
    assert "'ingestion-uploads-stuck-processing', 'ingestion-uploads-stuck-promoting'" in warning


def test_disable_leaves_rules_out(write: Write) -> None:
    entry = (
        f"rule_files:\n  - path: {INGESTION}\n"
        "    disable: [ingestion-uploads-stuck-processing, ingestion-uploads-stuck-promoting]\n"
    )
    config = load_config(write(entry, INGESTION_TARGETS), strict=True)
    assert [r.name for r in config.rules] == INGESTION_RULES[:3]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "{path: rules/cdc.yaml, enable: [r, rr]}",
            "rule_files[0].enable[1]: rules/cdc.yaml has no rule 'rr' (its rules: 'r')",
        ),
        (
            "{path: rules/cdc.yaml, disable: [x]}",
            "rule_files[0].disable[0]: rules/cdc.yaml has no rule 'x' (its rules: 'r')",
        ),
        (
            "{path: rules/cdc.yaml, enable: [r], disable: [r]}",
            "rule_files[0]: give enable (only these rules) or disable (all but these), not both",
        ),
        (
            "{path: rules/cdc.yaml, only: [r]}",
            "rule_files[0].only: unknown key 'only' (known: disable, enable, path)",
        ),
        ("{enable: [r]}", "rule_files[0]: missing required key 'path'"),
    ],
)
def test_bad_rule_file_entries(write: Write, entry: str, message: str) -> None:
    path = write(f"rule_files: [{entry}]\n", cdc=ACTIONS + rules())
    assert problems(path) == [f"remediator.yaml: {message}"]


def test_duplicate_actions_name_both_places(write: Write) -> None:
    assert problems(write(RULE_FILES, cdc=ACTIONS + rules(), lag=ACTIONS)) == [
        "rules/lag.yaml: actions.restart_connector: action 'restart_connector' is already "
        "defined at rules/cdc.yaml: actions.restart_connector",
        "rules/lag.yaml: actions.pause_connector: action 'pause_connector' is already "
        "defined at rules/cdc.yaml: actions.pause_connector",
    ]


def test_an_action_in_the_main_file_and_a_rule_file_is_a_duplicate(write: Write) -> None:
    main = RULE_FILES + "actions:\n  pause_connector: {kind: exec, argv: [/bin/true]}\n"
    assert problems(write(main, cdc=ACTIONS)) == [
        "rules/cdc.yaml: actions.pause_connector: action 'pause_connector' is already "
        "defined at remediator.yaml: actions.pause_connector"
    ]


def test_duplicate_rules_name_both_places(write: Write) -> None:
    assert problems(write(RULE_FILES, cdc=ACTIONS + rules(), lag=rules())) == [
        "rules/lag.yaml: rules[0].name: rule 'r' is already defined at rules/cdc.yaml: rules[0]"
    ]


# --- rules, tiers, conditions -------------------------------------------------------------


BAD_CONDITION = "(e.g. '> 5%', '>= 0.1', '< 100')"
MUST_INCREASE = "tier thresholds must increase up the ladder"


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ("[{when: 'about 5'}]", f"tiers[0].when: invalid condition 'about 5' {BAD_CONDITION}"),
        ("[{}, {when: '=> 5'}]", f"tiers[1].when: invalid condition '=> 5' {BAD_CONDITION}"),
        (
            "[{}, {when: '== 5'}]",
            "tiers: tier conditions compare with >, >=, < or <=; == and != cannot rank tiers",
        ),
        ("[{when: 5}]", "tiers[0].when: expected a non-empty string, got 5"),
        ("[{when: '> 10%'}, {when: '> 5%'}]", f"tiers: {MUST_INCREASE} (> 0.1 then > 0.05)"),
        ("[{when: '> 5%'}, {when: '>= 5%'}]", f"tiers: {MUST_INCREASE} (> 0.05 then >= 0.05)"),
        ("[{when: '> 1'}, {}, {when: '> 1'}]", f"tiers: {MUST_INCREASE} (> 1 then > 1)"),
        (
            "[{when: '< 5'}, {when: '< 20'}]",
            "tiers: tier thresholds must decrease up the ladder (< 5 then < 20)",
        ),
        (
            "[{when: '> 5'}, {when: '< 10'}]",
            "tiers: tiers mix rising (>, >=) and falling (<, <=) conditions",
        ),
        ("[]", "tiers: a rule needs at least one tier"),
        ("{when: '> 5%'}", "tiers: expected a list, got a mapping"),
        (
            "[{name: a}, {name: a}]",
            "tiers: tier names must be unique and not 'on_resolved': ['a', 'a']",
        ),
        (
            "[{name: on_resolved}]",
            "tiers: tier names must be unique and not 'on_resolved': ['on_resolved']",
        ),
    ],
)
def test_bad_tiers(write: Write, tiers: str, message: str) -> None:
    text = rules(tiers, "value: {label: lag}")
    assert load_rule_file(write, text) == [f"rules/cdc.yaml: rules[0].{message}"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            rules("[{when: '> 5%'}]"),
            "rules[0]: tiers with 'when' need a 'value' (annotation or label to read)",
        ),
        (
            rules("[{}]", "value: {annotation: a, label: b}"),
            "rules[0].value: give exactly one of 'annotation' or 'label'",
        ),
        (rules("[{}]", "value: {}"), "rules[0].value: give exactly one of 'annotation' or 'label'"),
        ("rules:\n  - {match: 'a=b', tiers: [{}]}\n", "rules[0]: missing required key 'name'"),
        ("rules:\n  - {name: r, tiers: [{}]}\n", "rules[0]: missing required key 'match'"),
        ("rules:\n  - {name: r, match: 'a=b'}\n", "rules[0]: missing required key 'tiers'"),
        ("rules:\n  - just a string\n", "rules[0]: expected a mapping, got 'just a string'"),
        ("rules: {r: {}}\n", "rules: expected a list, got a mapping"),
    ],
)
def test_bad_rules(write: Write, text: str, message: str) -> None:
    assert load_rule_file(write, text) == [f"rules/cdc.yaml: {message}"]


@pytest.mark.parametrize(
    ("match", "message"),
    [
        ("'{alertname=\"A\"'", "missing closing '}' in '{alertname=\"A\"'"),
        (
            "'{alertname=~\"(\"}'",
            "invalid regex '(' in matcher 'alertname=~\"(\"': missing ): (",
        ),
        ("'alertname==A'", "unknown operator '==' in matcher 'alertname==A'"),
        (
            "['alertname=\"A\"', 'job']",
            "expected an operator ('=', '!=', '=~' or '!~') after label name 'job' "
            "in matcher 'job'",
        ),
        ("''", "a rule needs at least one matcher"),
        ("'{}'", "a rule needs at least one matcher"),
        ("[]", "a rule needs at least one matcher"),
        ("[3]", "[0]: expected a non-empty string, got 3"),
    ],
)
def test_bad_matchers_are_named(write: Write, match: str, message: str) -> None:
    text = f"rules:\n  - {{name: r, match: {match}, tiers: [{{}}]}}\n"
    where = "rules[0].match" + ("" if message.startswith("[") else ": ")
    assert load_rule_file(write, text) == [f"rules/cdc.yaml: {where}{message}"]


# --- durations and other values -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            ACTIONS.replace("kind: http\n", "kind: http\n    timeout: 10 s\n"),
            "actions.restart_connector.timeout: invalid duration '10 s' (e.g. 30s, 5m, 1h30m)",
        ),
        (
            ACTIONS.replace("kind: http\n", "kind: http\n    timeout: -1\n"),
            "actions.restart_connector.timeout: duration must not be negative, got -1",
        ),
        (
            ACTIONS.replace("kind: http\n", "kind: http\n    backoff: {initial: 1x}\n"),
            "actions.restart_connector.backoff.initial: invalid duration '1x' "
            "(e.g. 30s, 5m, 1h30m)",
        ),
        (
            ACTIONS.replace("kind: http\n", "kind: http\n    backoff: {multiplier: 0.5}\n"),
            "actions.restart_connector.backoff.multiplier: must be at least 1",
        ),
        (
            ACTIONS.replace("kind: http\n", "kind: http\n    retries: -1\n"),
            "actions.restart_connector.retries: must be at least 0, got -1",
        ),
    ],
)
def test_bad_action_values(write: Write, text: str, message: str) -> None:
    assert load_rule_file(write, text) == [f"rules/cdc.yaml: {message}"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "server: {shutdown_grace: soon}\n",
            "server.shutdown_grace: invalid duration 'soon' (e.g. 30s, 5m, 1h30m)",
        ),
        ("server: {listen: 'localhost'}\n", "server.listen: expected HOST:PORT, got 'localhost'"),
        ("server: {listen: ':99999'}\n", "server.listen: expected HOST:PORT, got ':99999'"),
        ("server: {listen: ':9\u00b2'}\n", "server.listen: expected HOST:PORT, got ':9\u00b2'"),
        ("server: {max_body_bytes: 10}\n", "server.max_body_bytes: must be at least 1024, got 10"),
        ("executor: {max_concurrency: 0}\n", "executor.max_concurrency: must be at least 1, got 0"),
        ("rule_files: rules/*.yaml\n", "rule_files: expected a list, got 'rules/*.yaml'"),
    ],
)
def test_bad_main_values(write: Write, extra: str, message: str) -> None:
    assert problems(write(extra)) == [f"remediator.yaml: {message}"]


def test_listen_and_durations_are_read(write: Write) -> None:
    server = (
        "server: {listen: '[::1]:9100', shutdown_grace: 1m30s}\nexecutor: {max_concurrency: 2}\n"
    )
    config = load_config(write(server))
    assert (config.server.host, config.server.port, config.server.shutdown_grace) == (
        "::1",
        9100,
        90.0,
    )
    assert config.max_concurrency == 2


def test_a_rule_files_glob_matching_nothing(write: Write) -> None:
    assert problems(write("rule_files: [rules/*.yaml, rules/*.yml]\n", cdc=ACTIONS)) == [
        "remediator.yaml: rule_files[1]: 'rules/*.yml' matches no file"
    ]


def test_overlapping_globs_load_each_rule_file_once(write: Write) -> None:
    config = load_config(
        write("rule_files: [rules/*.yaml, rules/cdc.yaml, '*.yaml']\n", cdc=ACTIONS + rules())
    )
    assert [r.name for r in config.rules] == ["r"]
    assert [p.name for p in config.rule_files] == ["cdc.yaml"]


def test_an_explicit_empty_incident_key_means_one_incident_per_rule(write: Write) -> None:
    config = load_config(
        write(
            RULE_FILES, cdc=ACTIONS + rules("[{actions: [restart_connector]}]", "incident_key: []")
        )
    )
    assert config.rules[0].incident_key == ()


def test_a_key_given_twice_is_an_error_not_a_silent_override(write: Write) -> None:
    twice = ACTIONS + "  restart_connector:\n    {kind: http, target: kafka-connect, path: /x}\n"
    assert problems(write(RULE_FILES, cdc=twice)) == [
        "rules/cdc.yaml: invalid YAML: line 8, column 3: duplicate key 'restart_connector'"
    ]


# --- invalid YAML -------------------------------------------------------------------------


def test_invalid_yaml_in_the_main_file(write: Write, tmp_path: Path) -> None:
    path = tmp_path / "remediator.yaml"
    path.write_text("server:\n  listen: [1, 2\nstore: {}\n")
    assert problems(path) == [
        "remediator.yaml: invalid YAML: line 3, column 6: expected ',' or ']', but got ':'"
    ]


def test_invalid_yaml_in_a_rule_file(write: Write) -> None:
    assert problems(write(RULE_FILES, cdc="rules:\n\t- name: r\n")) == [
        "rules/cdc.yaml: invalid YAML: line 2, column 1: found character '\\t' that cannot "
        "start any token"
    ]


def test_a_missing_main_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    assert problems(missing) == [f"{missing}: cannot read: No such file or directory"]


def test_an_empty_rule_file_is_valid(write: Write) -> None:
    assert load_config(write(RULE_FILES, cdc="")).rule_files[0].name == "cdc.yaml"


# --- secrets ------------------------------------------------------------------------------

KNOWN_AUTH = "(known: basic_auth, bearer_token_env, bearer_token_file)"


def test_an_inline_secret_is_refused_without_showing_it(write: Write) -> None:
    found = problems(write("webhook_auth: {bearer_token: hunter2}\n"))
    assert found == [
        "remediator.yaml: webhook_auth.bearer_token: inline secrets are not allowed: "
        "use bearer_token_env or bearer_token_file"
    ]
    assert "hunter2" not in "\n".join(found)


def test_node_secret_explains_an_inline_secret(tmp_path: Path) -> None:
    node = Node({"bearer_token": "hunter2"}, "remediator.yaml", "targets.t")
    with pytest.raises(Invalid) as caught:
        node.secret("bearer_token", tmp_path)
    assert str(caught.value) == (
        "remediator.yaml: targets.t.bearer_token: inline secrets are not allowed: "
        "use bearer_token_env or bearer_token_file"
    )


def test_a_target_with_an_inline_secret(write: Write) -> None:
    targets = {"kafka-connect": "http://connect.test:8083, bearer_token: hunter2"}
    assert problems(write("", targets)) == [
        "remediator.yaml: targets.kafka-connect.bearer_token: inline secrets are not allowed: "
        "use bearer_token_env or bearer_token_file"
    ]


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        (
            "{bearer_token_env: REMEDIATOR_TEST_UNSET}",
            "webhook_auth.bearer_token_env: environment variable 'REMEDIATOR_TEST_UNSET' "
            "is not set or empty",
        ),
        (
            "{bearer_token_env: REMEDIATOR_TEST_EMPTY}",
            "webhook_auth.bearer_token_env: environment variable 'REMEDIATOR_TEST_EMPTY' "
            "is not set or empty",
        ),
        (
            "{bearer_token_env: TEST_WEBHOOK_TOKEN, bearer_token_file: token}",
            "webhook_auth: give either bearer_token_env or bearer_token_file, not both",
        ),
        (
            "{basic_auth: {username: am}}",
            "webhook_auth.basic_auth: basic_auth needs password_env or password_file",
        ),
        (
            "{basic_auth: {password_env: TEST_API_TOKEN}}",
            "webhook_auth.basic_auth: missing required key 'username'",
        ),
    ],
)
def test_bad_secrets(
    write: Write, monkeypatch: pytest.MonkeyPatch, auth: str, message: str
) -> None:
    monkeypatch.delenv("REMEDIATOR_TEST_UNSET", raising=False)
    monkeypatch.setenv("REMEDIATOR_TEST_EMPTY", "")
    path = write(main=swap("{bearer_token_env: TEST_WEBHOOK_TOKEN}", auth))
    assert problems(path) == [f"remediator.yaml: {message}"]


def test_a_missing_secret_file(write: Write, tmp_path: Path) -> None:
    path = write(main=swap("{bearer_token_env: TEST_API_TOKEN}", "{bearer_token_file: secrets/x}"))
    assert problems(path) == [
        f"remediator.yaml: api_auth.bearer_token_file: cannot read secret file "
        f"'{tmp_path}/secrets/x': No such file or directory"
    ]


def test_an_empty_secret_file(write: Write, tmp_path: Path) -> None:
    (tmp_path / "token").write_text(" \n")
    targets = {"kafka-connect": "http://connect.test:8083, bearer_token_file: token"}
    assert problems(write("", targets)) == [
        "remediator.yaml: targets.kafka-connect.bearer_token_file: secret file "
        f"'{tmp_path}/token' is empty"
    ]


def test_a_secret_file_is_read_stripped_relative_to_the_config(
    write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "connect-token").write_text("  s3cret-token \n\n")
    targets = {
        "kafka-connect": "http://connect.test:8083, bearer_token_file: secrets/connect-token"
    }
    path = write("", targets)
    monkeypatch.chdir(tmp_path / "secrets")  # relative to the file, not the working directory
    token = load_config(path).targets["kafka-connect"].bearer_token
    assert token is not None
    assert token.reveal() == "s3cret-token"
    assert token.source == f"{tmp_path}/secrets/connect-token"


def test_basic_auth_for_the_webhook(write: Write, tmp_path: Path) -> None:
    (tmp_path / "am-password").write_text("pw\n")
    auth = "{basic_auth: {username: alertmanager, password_file: am-password}}"
    webhook = load_config(
        write(main=swap("{bearer_token_env: TEST_WEBHOOK_TOKEN}", auth))
    ).webhook_auth
    assert (webhook.enabled, webhook.bearer_token, webhook.basic_username) == (
        True,
        None,
        "alertmanager",
    )
    assert webhook.basic_password is not None
    assert webhook.basic_password.reveal() == "pw"


@pytest.mark.parametrize("show", [repr, str, lambda s: f"{s}", lambda s: f"{[s]}"])
def test_a_secret_never_shows_its_value(show: Callable[[Secret], str]) -> None:
    secret = Secret("hunter2", "$WEBHOOK_TOKEN")
    assert show(secret) in ("Secret(from $WEBHOOK_TOKEN)", "[Secret(from $WEBHOOK_TOKEN)]")
    assert secret.reveal() == "hunter2"


def test_a_loaded_config_never_shows_its_secrets(write: Write) -> None:
    config = load_config(write())
    assert WEBHOOK_TOKEN not in repr(config)
    assert API_TOKEN not in repr(config)
    assert "Secret(from $TEST_WEBHOOK_TOKEN)" in repr(config)


# --- paths --------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_directory(
    write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = "actions:\n  run: {kind: exec, argv: [./fix.sh], cwd: scripts}\n"
    path = write(RULE_FILES, cdc=run)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    assert config.store_path == tmp_path / "state" / "remediator.db"
    assert config.rule_files == (tmp_path / "rules" / "cdc.yaml",)
    action = config.actions["run"]
    assert isinstance(action, ExecAction)
    assert action.cwd == str(tmp_path / "scripts")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/var/lib/remediator.db", "/var/lib/remediator.db"),
        ("~/remediator.db", "home/remediator.db"),
    ],
)
def test_absolute_and_home_paths(
    write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, expected: str
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    main = swap("{path: state/remediator.db}", f"{{path: {path}}}")
    assert load_config(write(main=main)).store_path == tmp_path / expected


# --- all problems at once -----------------------------------------------------------------


def test_every_problem_is_reported_at_once(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REMEDIATOR_TEST_UNSET", raising=False)
    main = swap("TEST_API_TOKEN", "REMEDIATOR_TEST_UNSET") + (
        "colour: blue\nserver: {shutdown_grace: soon}\nrule_files: [rules/*.yaml, missing/*.yaml]\n"
    )
    cdc = (
        ACTIONS
        + rules("[{actions: [restart_connector]}]")
        + rule("[{when: '> 10%'}, {when: '> 5%'}]", "value: {label: lag}", name="lag")
    )
    assert problems(write(main=main, cdc=cdc)) == [
        f"remediator.yaml: colour: unknown key 'colour' (known: {TOP_KEYS})",
        "remediator.yaml: rule_files[1]: 'missing/*.yaml' matches no file",
        "rules/cdc.yaml: rules[1].tiers: tier thresholds must increase up the ladder "
        "(> 0.1 then > 0.05)",
        "remediator.yaml: server.shutdown_grace: invalid duration 'soon' (e.g. 30s, 5m, 1h30m)",
        "remediator.yaml: api_auth.bearer_token_env: environment variable "
        "'REMEDIATOR_TEST_UNSET' is not set or empty",
    ]


# --- the action-kind registry -------------------------------------------------------------


def test_the_built_in_kinds() -> None:
    assert default_registry().kinds() == [
        "alertmanager_silence",
        "exec",
        "http",
        "kafka_connect",
        "kubernetes",
        "sql",
    ]


def test_the_registry_refuses_a_duplicate_kind() -> None:
    registry = default_registry()
    with pytest.raises(ValueError, match=r"^action kind 'http' is already registered$"):
        registry.register("http", lambda node, common, env: registry.build("x", node, env))


@pytest.mark.parametrize(
    ("definition", "timeout", "retries"),
    [
        ("{kind: http, target: kafka-connect, path: /x}", 10.0, 2),
        ("{kind: exec, argv: [/bin/true]}", 30.0, 0),
        ("{kind: exec, argv: [/bin/true], timeout: 2m, retries: 5}", 120.0, 5),
    ],
)
def test_kind_defaults(write: Write, definition: str, timeout: float, retries: int) -> None:
    config = load_config(write(f"actions:\n  a: {definition}\n"))
    action = config.actions["a"]
    assert (action.timeout, action.retry.retries) == (timeout, retries)


def test_a_registered_kind_is_usable_from_config(write: Write) -> None:
    registry = ActionRegistry()
    registry.register("webhook", http.build, timeout=3.0, retries=1)
    config = load_config(
        write("actions:\n  a: {kind: webhook, target: kafka-connect, path: /x}\n"), registry
    )
    action = config.actions["a"]
    assert isinstance(action, HttpAction)
    assert (action.timeout, action.retry.retries, action.target) == (3.0, 1, "kafka-connect")
    assert problems(write("actions:\n  b: {kind: http}\n"), registry) == [
        "remediator.yaml: actions.b.kind: unknown action kind 'http' (known: webhook)"
    ]


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ("[kind, http]", "actions.a: expected a mapping with a 'kind'"),
        ("{target: kafka-connect}", "actions.a: missing required key 'kind'"),
    ],
)
def test_bad_action_definitions(write: Write, definition: str, message: str) -> None:
    assert problems(write(f"actions:\n  a: {definition}\n")) == [f"remediator.yaml: {message}"]


# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("250ms", 0.25),
        ("1m30s", 90.0),
        ("1d2h3m4s", 93784.0),
        ("1s500ms", 1.5),
        ("0s", 0.0),
        (" 5m ", 300.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", " ", "5", "1.5h", "5M", "1w", "30s1m", "5 m", "-5s", "1h-30m", "ms", "5mss"]
)
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="^" + text.replace("+", "\\+") + "$"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5400, "1h30m"),
        (90, "1m30s"),
        (86400, "1d"),
        (93784, "1d2h3m4s"),
        (3600, "1h"),
        (1, "1s"),
        (0, "0s"),
        (0.25, "0.25s"),
        (1.5, "1.5s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [1, 59, 60, 61, 3599, 3600, 86399, 86400, 90061, 10**7])
def test_format_then_parse_is_the_identity_for_whole_seconds(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


# --- the store: SQLite by default, or PostgreSQL with its DSN from the environment or a file -----


def test_postgres_takes_its_dsn_from_the_environment_with_its_pool_and_timeouts(
    write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PG_DSN", "postgresql://remediator:s3cret@db:5432/remediator")
    store = (
        "store:\n  postgres: {dsn_env: PG_DSN, pool_size: 4, connect_timeout: 3s, "
        "statement_timeout: 2s, application_name: rem-1}\n"
        "  retention: {journal: 1d, incidents: 30d, batch: 50}\n"
    )
    config = load_config(write(store))
    pg = config.store.postgres
    assert pg is not None
    assert config.store.backend == "postgres"
    assert pg.dsn.reveal() == "postgresql://remediator:s3cret@db:5432/remediator"
    assert "s3cret" not in repr(config.store)
    assert (pg.pool_size, pg.connect_timeout, pg.statement_timeout, pg.application_name) == (
        4,
        3.0,
        2.0,
        "rem-1",
    )
    assert (config.store.retention.journal, config.store.retention.batch) == (86400.0, 50)


@pytest.mark.parametrize(
    ("store", "message"),
    [
        (
            "store: {postgres: {dsn: 'postgresql://u:p@db/r'}}\n",
            "store.postgres.dsn: inline secrets are not allowed: use dsn_env or dsn_file",
        ),
        (
            "store: {postgres: {pool_size: 2}}\n",
            "store.postgres: postgres needs dsn_env or dsn_file (the postgresql:// URI)",
        ),
        (
            "store: {postgres: {dsn_env: NO_SUCH_VAR}}\n",
            "store.postgres.dsn_env: environment variable 'NO_SUCH_VAR' is not set or empty",
        ),
        (
            "store: {sqlite: {path: r.db}, postgres: {dsn_env: HOME}}\n",
            "store: give either sqlite or postgres, not both",
        ),
    ],
)
def test_a_postgres_store_is_refused_without_a_secret_dsn(
    write: Write, store: str, message: str
) -> None:
    assert problems(write(store)) == [f"remediator.yaml: {message}"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "on_interrupted: verify",
            "actions.restart_connector.on_interrupted: on_interrupted: verify needs a "
            "precondition or a verify check to read the target's state with",
        ),
        (
            "on_interrupted: repeat",
            "actions.restart_connector.on_interrupted: invalid value 'repeat' "
            "(expected one of: retry, verify, escalate)",
        ),
    ],
)
def test_on_interrupted_is_a_known_policy_and_verify_needs_a_check(
    write: Write, extra: str, message: str
) -> None:
    text = ACTIONS.replace("kind: http\n", f"kind: http\n    {extra}\n")
    assert load_rule_file(write, text) == [f"rules/cdc.yaml: {message}"]


def test_on_interrupted_is_read_and_defaults_to_the_kind(write: Write) -> None:
    text = ACTIONS.replace("kind: http\n", "kind: http\n    on_interrupted: retry\n")
    config = load_config(write(RULE_FILES, cdc=text))
    assert config.policy("restart_connector").on_interrupted == "retry"
    assert config.policy("pause_connector").on_interrupted is None
