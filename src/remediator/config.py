"""The one place YAML becomes typed, validated, frozen configuration.

`load_config(path)` reads the main file and the rule files it names (paths or globs, relative to
the main file's directory), and either returns a Config or raises ConfigError listing every
problem found, each naming file, path and value.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import yaml

from remediator import commands, interrupted
from remediator.actions import ActionRegistry, ParseEnv, default_registry
from remediator.alerts import parse_time
from remediator.checks import (
    Check,
    Verification,
    parse_condition,
    parse_precondition,
    parse_verify,
)
from remediator.errors import ConfigError
from remediator.guardrails import Breaker, Budget, Window
from remediator.matchers import MatcherError, parse_matchers
from remediator.paging.policy import Paging, parse_paging
from remediator.rules import (
    Repeats,
    ResolvedStep,
    Rule,
    Tier,
    ValueSource,
    check_ladder,
)
from remediator.schema import Invalid, MissingTarget, Node, Secret, decimal, resolve_path
from remediator.store.records import RESOLVED_STEP
from remediator.store.settings import PostgresSettings, Retention, StoreSettings
from remediator.targets import Target, parse_breaker, parse_target
from remediator.types import Action

T = TypeVar("T")

TOP_KEYS = frozenset(
    {
        "server",
        "webhook_auth",
        "api_auth",
        "store",
        "executor",
        "rule_files",
        "targets",
        "actions",
        "rules",
        "guardrails",
        "maintenance_windows",
        "slack",
        "paging",
    }
)
RULE_FILE_KEYS = frozenset({"actions", "rules"})
RULE_FILE_ENTRY_KEYS = frozenset({"path", "enable", "disable"})
SERVER_KEYS = frozenset(
    {
        "listen",
        "max_body_bytes",
        "shutdown_grace",
        "idle_timeout",
        "body_timeout",
        "max_connections",
        "journal_timeout",
    }
)
AUTH_KEYS = frozenset({"bearer_token_env", "bearer_token_file", "basic_auth"})
API_AUTH_KEYS = frozenset({"bearer_token_env", "bearer_token_file"})
BASIC_KEYS = frozenset({"username", "password_env", "password_file"})
STORE_KEYS = frozenset({"sqlite", "postgres", "retention"})
SQLITE_KEYS = frozenset({"path"})
POSTGRES_KEYS = frozenset(
    {
        "dsn_env",
        "dsn_file",
        "pool_size",
        "connect_timeout",
        "statement_timeout",
        "application_name",
        "lease",
        "heartbeat",
    }
)
RETENTION_KEYS = frozenset({"journal", "incidents", "batch", "every"})
EXECUTOR_KEYS = frozenset({"max_concurrency"})
SLACK_KEYS = frozenset(
    {
        "bot_token_env",
        "bot_token_file",
        "signing_secret_env",
        "signing_secret_file",
        "app_token_env",
        "app_token_file",
        "socket_mode",
        "base_url",
        "channel",
        "command",
        "severity_label",
        "page_group",
        "page_severities",
        "access",
        "verbs",
        "templates_dir",
        "retry",
        "max_age",
    }
)
ACCESS_KEYS = frozenset({"users", "groups"})
SLACK_RETRY_KEYS = frozenset({"initial", "max"})
RULE_SLACK_KEYS = frozenset({"channel", "templates"})
VERBS = (
    "help",
    "status",
    "history",
    "pause",
    "resume",
    "restart",
    "rollback",
    "approve",
    "deny",
    "ack",
    "mute",
    "unmute",
    "killswitch",
    "close",
)
ACTION_VERBS = ("pause", "resume", "restart", "rollback")
READ_VERBS = ("help", "status", "history")
RULE_KEYS = frozenset(
    {
        "name",
        "previous_names",
        "description",
        "match",
        "incident_key",
        "value",
        "tiers",
        "on_resolved",
        "dry_run",
        "cooldown",
        "one_at_a_time_by",
        "during_maintenance",
        "slack",
        "escalation",
    }
)
VALUE_KEYS = frozenset({"annotation", "label"})
TIER_KEYS = frozenset({"name", "when", "actions", "escalate_after", "repeats", "approval", "page"})
REPEATS_KEYS = frozenset({"count", "within"})
GUARDRAIL_KEYS = frozenset(
    {
        "killswitch",
        "dry_run",
        "budget",
        "circuit_breaker",
        "approval_timeout",
        "storm",
        "on_killswitch",
        "on_mute",
    }
)
HOLD_OR_DROP = ("hold", "drop")
BUDGET_KEYS = frozenset({"max", "per"})
STORM_KEYS = frozenset({"incidents", "within", "summary_every"})
WINDOW_KEYS = frozenset(
    {"name", "cron", "duration", "timezone", "start", "end", "rules", "targets"}
)
DEFAULT_BREAKER = Breaker(failures=3, within=600.0, open_for=600.0)
RESOLVED_KEYS = frozenset({"action", "if_ran"})


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 9095
    max_body_bytes: int = 1 << 20
    shutdown_grace: float = 20.0
    idle_timeout: float = 15.0  # a connection without a whole request header by then is closed
    body_timeout: float = 15.0  # reading a request's body takes at most this
    max_connections: int = 512  # open connections; more are closed at once (see edge.py)
    journal_timeout: float = 5.0  # /alerts answers 503 if the journal has not taken it by then


@dataclass(frozen=True, slots=True)
class WebhookAuth:
    """How Alertmanager proves itself: http_config's `authorization` (Bearer) or `basic_auth`."""

    bearer_token: Secret | None = None
    basic_username: str | None = None
    basic_password: Secret | None = None

    @property
    def enabled(self) -> bool:
        return self.bearer_token is not None or self.basic_username is not None


@dataclass(frozen=True, slots=True)
class Storm:
    """More than `incidents` opening within `within`: one summary every `summary_every` instead
    of one message per incident (actions continue, within their budgets)."""

    incidents: int = 10
    within: float = 300.0
    summary_every: float = 300.0


@dataclass(frozen=True, slots=True)
class Guardrails:
    killswitch: bool = False  # the default; the runtime switch, once set, wins
    dry_run: bool = False
    budget: Budget | None = None
    breaker: Breaker | None = DEFAULT_BREAKER
    approval_timeout: float = 1800.0
    storm: Storm = field(default_factory=Storm)
    # what the kill switch and mutes do to an action they stop: drop it (refused for good), or
    # hold it until they lift and judge it again then
    on_killswitch: str = "drop"
    on_mute: str = "drop"


@dataclass(frozen=True, slots=True)
class ActionPolicy:
    """What an action's config says beyond how to run it."""

    destructive: bool = False
    budget: Budget | None = None
    precondition: Check | None = None
    verify: Verification | None = None
    announce: str = ""  # the Slack template telling its success: paused, resumed, rolled_back
    on_interrupted: str | None = None  # retry | verify | escalate; None: the kind's default
    # a higher tier listing it does not run it again once it took effect for the incident
    once_per_incident: bool = False


@dataclass(frozen=True, slots=True)
class Access:
    """Who may use a verb: Slack user IDs and user group IDs."""

    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class SlackConfig:
    token: Secret | None = None  # None: messages go to the log
    signing_secret: Secret | None = None  # None: /slack/* answer 404
    app_token: Secret | None = None  # xapp-, for Socket Mode
    socket_mode: bool = False  # commands and clicks over a websocket to Slack, not HTTP
    base_url: str = "https://slack.com/api/"
    channel: str = ""
    command: str = "/remediate"
    severity_label: str = "severity"
    page_group: str = ""  # a user group ID mentioned on page severities
    page_severities: frozenset[str] = frozenset({"P0", "P1"})
    access: Mapping[str, Access] = field(default_factory=dict)  # verb or "*"
    verbs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # verb -> target -> action
    templates_dir: Path | None = None
    retry_initial: float = 1.0
    retry_max: float = 60.0
    max_age: float = 86400.0  # a message undeliverable this long is dropped (and counted)


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    server: ServerConfig = field(default_factory=ServerConfig)
    webhook_auth: WebhookAuth = field(default_factory=WebhookAuth)
    api_token: Secret | None = None
    store_path: Path = Path("remediator.db")  # SQLite's file (store.sqlite_path)
    store: StoreSettings = field(default_factory=StoreSettings)
    max_concurrency: int = 16
    targets: dict[str, Target] = field(default_factory=dict)
    actions: dict[str, Action] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    rule_files: tuple[Path, ...] = ()
    action_policies: dict[str, ActionPolicy] = field(default_factory=dict)
    guardrails: Guardrails = field(default_factory=Guardrails)
    windows: tuple[Window, ...] = ()
    slack: SlackConfig = field(default_factory=SlackConfig)
    paging: Paging = field(default_factory=Paging)
    # what was skipped and why (a pack's rule whose target is not configured); errors with strict
    warnings: tuple[str, ...] = ()
    _rules_by_name: dict[str, Rule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rules_by_name", {r.name: r for r in self.rules})

    def rule(self, name: str) -> Rule | None:
        return self._rules_by_name.get(name)

    def all_targets(self) -> set[str]:
        """Every target: the configured ones and those the actions name."""
        return set(self.targets) | {a.target for a in self.actions.values()}

    def policy(self, action: str) -> ActionPolicy:
        return self.action_policies.get(action, NO_POLICY)

    def action_kind(self, action: str) -> str:
        """The action's kind, for metrics; "unknown" if it is no longer configured."""
        configured = self.actions.get(action)
        return configured.kind if configured else "unknown"

    def breaker(self, target: str) -> Breaker | None:
        own = self.targets[target].breaker if target in self.targets else None
        return own or self.guardrails.breaker


NO_POLICY = ActionPolicy()


def load_config(
    path: str | Path, registry: ActionRegistry | None = None, *, strict: bool = False
) -> Config:
    """Read and validate everything. Raises ConfigError with every problem found. A rule whose
    actions need a target the config does not define is skipped with one warning per target
    (Config.warnings), or is a problem with `strict`."""
    return _Loader(Path(path), registry or default_registry(), strict).load()


def read_yaml(path: str | Path) -> Node:
    """Another program's YAML file (Prometheus alerting rules), read the way ours are: strict
    (a key given twice is an error), and ConfigError naming the file when it cannot be read."""
    loader = _Loader(Path(path), default_registry())
    node = loader._read_yaml(Path(path))
    if node is None:
        raise ConfigError(loader.problems)
    return node


@dataclass
class _Loader:
    path: Path
    registry: ActionRegistry
    strict: bool = False
    problems: list[str] = field(default_factory=list)
    # action -> why it cannot be built (a target the config does not define)
    unavailable: dict[str, MissingTarget] = field(default_factory=dict)
    # missing target -> the first reference to it, and the rules skipped for it
    skipped: dict[str, tuple[MissingTarget, list[str]]] = field(default_factory=dict)
    # rule file -> which of its rules to load (rule_files: [{path, enable | disable}])
    selections: dict[Path, RuleSelection] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def load(self) -> Config:
        root = self._read_yaml(self.path)
        if root is None:
            raise ConfigError(self.problems)
        self._check(partial(root.mapping, TOP_KEYS))
        targets = dict(self._each(root.get("targets"), self._target))
        files = [(root, self.path), *self._rule_files(root)]
        env = ParseEnv(targets, self.base_dir)
        actions, policies = self._actions(files, env)
        rules = self._rules(files, actions)
        store = self._check(partial(self._store, root.get("store"))) or StoreSettings(Path())
        config = Config(
            path=self.path,
            server=self._check(partial(self._server, root.get("server"))) or ServerConfig(),
            webhook_auth=self._check(partial(self._webhook_auth, root.get("webhook_auth")))
            or WebhookAuth(),
            api_token=self._check(partial(self._api_token, root.get("api_auth"))),
            store_path=store.sqlite_path,
            store=store,
            max_concurrency=self._check(partial(self._executor, root.get("executor"))) or 16,
            targets=targets,
            actions=actions,
            rules=tuple(rules),
            rule_files=tuple(p for _, p in files[1:]),
            action_policies=policies,
            guardrails=self._check(partial(_guardrails, root.get("guardrails"))) or Guardrails(),
            windows=tuple(self._windows(root.get("maintenance_windows"))),
            slack=self._check(partial(self._slack, root.get("slack"), actions)) or SlackConfig(),
            warnings=tuple(self._skip_warnings()),
        )
        paging = self._check(partial(self._paging, root, config))
        if self.problems:
            raise ConfigError(self.problems)
        return replace(config, paging=paging or Paging())

    def _paging(self, root: Node, config: Config) -> Paging:
        """The `paging` section, and every rule's `escalation` naming one of its policies."""
        paging = parse_paging(root.get("paging"), self.base_dir, config.slack.page_group)
        for rule in config.rules:
            if rule.escalation and rule.escalation not in paging.policies:
                known = ", ".join(sorted(paging.policies)) or "none defined"
                self.problems.append(
                    f"{rule.source}.escalation: unknown escalation policy "
                    f"{rule.escalation!r} (known: {known})"
                )
        return paging

    # -- plumbing ------------------------------------------------------------------------------

    def _check(self, read: Callable[[], T]) -> T | None:
        """Run one reader; record its problem and carry on with None."""
        try:
            return read()
        except Invalid as e:
            self.problems.append(str(e))
            return None

    def _each(self, node: Node | None, read: Callable[[str, Node], T]) -> Iterator[tuple[str, T]]:
        if node is None:
            return
        try:
            items = list(node.items())
        except Invalid as e:
            self.problems.append(str(e))
            return
        for name, child in items:
            try:
                yield name, read(name, child)
            except Invalid as e:
                self.problems.append(str(e))

    def _read_yaml(self, path: Path) -> Node | None:
        shown = _display(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            self.problems.append(f"{shown}: cannot read: {e.strerror}")
            return None
        try:
            data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
        except yaml.YAMLError as e:
            self.problems.append(f"{shown}: invalid YAML: {_yaml_problem(e)}")
            return None
        return Node({} if data is None else data, shown, "")

    # -- sections ------------------------------------------------------------------------------

    def _server(self, node: Node | None) -> ServerConfig:
        if node is None:
            return ServerConfig()
        node.mapping(SERVER_KEYS)
        host, port = node.opt("listen", _listen, ("127.0.0.1", 9095))
        return ServerConfig(
            host=host,
            port=port,
            max_body_bytes=node.opt("max_body_bytes", lambda n: n.integer(minimum=1024), 1 << 20),
            shutdown_grace=node.opt("shutdown_grace", Node.duration, 20.0),
            idle_timeout=node.opt("idle_timeout", Node.duration, 15.0),
            body_timeout=node.opt("body_timeout", Node.duration, 15.0),
            max_connections=node.opt("max_connections", lambda n: n.integer(minimum=8), 512),
            journal_timeout=node.opt("journal_timeout", _journal_timeout, 5.0),
        )

    def _webhook_auth(self, node: Node | None) -> WebhookAuth:
        if node is None:
            return WebhookAuth()
        node.mapping(AUTH_KEYS)
        token = node.secret("bearer_token", self.base_dir)
        basic = node.get("basic_auth")
        if basic is None:
            return WebhookAuth(bearer_token=token)
        basic.mapping(BASIC_KEYS)
        password = basic.secret("password", self.base_dir)
        if password is None:
            raise basic.fail("basic_auth needs password_env or password_file")
        return WebhookAuth(token, basic.require("username").string(), password)

    def _api_token(self, node: Node | None) -> Secret | None:
        if node is None:
            return None
        node.mapping(API_AUTH_KEYS)
        return node.secret("bearer_token", self.base_dir)

    def _store(self, node: Node | None) -> StoreSettings:
        default = self.base_dir / "remediator.db"
        if node is None:
            return StoreSettings(default)
        node.mapping(STORE_KEYS)
        sqlite, postgres = node.get("sqlite"), node.get("postgres")
        if sqlite is not None and postgres is not None:
            raise node.fail("give either sqlite or postgres, not both")
        path = default
        if sqlite is not None:
            path = resolve_path(sqlite.mapping(SQLITE_KEYS).require("path").string(), self.base_dir)
        retention = node.get("retention")
        return StoreSettings(
            path,
            None if postgres is None else self._postgres(postgres),
            Retention() if retention is None else _retention(retention),
        )

    def _postgres(self, node: Node) -> PostgresSettings:
        node.mapping(POSTGRES_KEYS)
        dsn = node.secret("dsn", self.base_dir)
        if dsn is None:
            raise node.fail("postgres needs dsn_env or dsn_file (the postgresql:// URI)")
        lease = node.opt("lease", Node.duration, 8.0)
        heartbeat = node.opt("heartbeat", Node.duration, 1.0)
        if not 0 < heartbeat <= lease / 2:
            raise node.fail(
                f"heartbeat ({heartbeat:g}s) must be above 0 and at most half the lease "
                f"({lease:g}s): the leader talks to the server more often than the lease runs out"
            )
        return PostgresSettings(
            dsn,
            pool_size=node.opt("pool_size", lambda n: n.integer(minimum=1), 10),
            connect_timeout=node.opt("connect_timeout", Node.duration, 10.0),
            statement_timeout=node.opt("statement_timeout", Node.duration, 30.0),
            application_name=node.opt("application_name", Node.string, "remediator"),
            lease=lease,
            heartbeat=heartbeat,
        )

    def _executor(self, node: Node | None) -> int:
        if node is None:
            return 16
        node.mapping(EXECUTOR_KEYS)
        return node.opt("max_concurrency", lambda n: n.integer(minimum=1), 16)

    def _slack(self, node: Node | None, actions: dict[str, Action]) -> SlackConfig:
        if node is None:
            return SlackConfig()
        node.mapping(SLACK_KEYS)
        retry = node.get("retry")
        if retry is not None:
            retry.mapping(SLACK_RETRY_KEYS)
        templates_dir = node.get("templates_dir")
        base_url = node.opt("base_url", Node.string, "https://slack.com/api/")
        app_token = node.secret("app_token", self.base_dir)
        socket_mode = node.opt("socket_mode", Node.boolean, False)
        bot_token = node.has("bot_token_env") or node.has("bot_token_file")
        if socket_mode and (app_token is None or not bot_token):
            raise node.fail(
                "socket_mode needs app_token_env or app_token_file (the xapp- app-level token, "
                "scope connections:write) and the bot token"
            )
        return SlackConfig(
            token=node.secret("bot_token", self.base_dir),
            signing_secret=node.secret("signing_secret", self.base_dir),
            app_token=app_token,
            socket_mode=socket_mode,
            base_url=base_url if base_url.endswith("/") else base_url + "/",
            channel=node.opt("channel", Node.string, ""),
            command=node.opt("command", Node.string, "/remediate"),
            severity_label=node.opt("severity_label", Node.string, "severity"),
            page_group=node.opt("page_group", Node.string, ""),
            page_severities=frozenset(node.strings("page_severities") or ["P0", "P1"]),
            access=_access(node.get("access")),
            verbs=_verbs(node.get("verbs"), actions),
            templates_dir=None
            if templates_dir is None
            else _directory(templates_dir, self.base_dir),
            retry_initial=1.0 if retry is None else retry.opt("initial", Node.duration, 1.0),
            retry_max=60.0 if retry is None else retry.opt("max", Node.duration, 60.0),
            max_age=node.opt("max_age", Node.duration, 86400.0),
        )

    def _windows(self, node: Node | None) -> list[Window]:
        if node is None:
            return []
        windows = [self._check(partial(_window, item)) for item in self._check(node.sequence) or []]
        return [w for w in windows if w is not None]

    def _target(self, name: str, node: Node) -> Target:
        return parse_target(name, node, self.base_dir)

    def _rule_files(self, root: Node) -> list[tuple[Node, Path]]:
        node = root.get("rule_files")
        if node is None:
            return []
        found: list[tuple[Node, Path]] = []
        seen = {self.path.resolve()}
        for item in self._check(node.sequence) or []:
            entry = self._check(partial(_rule_file_entry, item))
            if entry is None:
                continue
            pattern, selection = entry
            paths = sorted(glob.glob(str(resolve_path(pattern, self.base_dir))))
            if not paths:
                self.problems.append(f"{item.where()}: {pattern!r} matches no file")
            for path in paths:
                resolved = Path(path).resolve()
                if resolved in seen:
                    continue  # overlapping globs, or the main file itself
                seen.add(resolved)
                rule_file = self._read_yaml(Path(path))
                if rule_file is None:
                    continue
                if self._check(partial(rule_file.mapping, RULE_FILE_KEYS)) is not None:
                    found.append((rule_file, Path(path)))
                    if selection is not None:
                        self.selections[Path(path)] = selection
        return found

    def _actions(
        self, files: list[tuple[Node, Path]], env: ParseEnv
    ) -> tuple[dict[str, Action], dict[str, ActionPolicy]]:
        actions: dict[str, Action] = {}
        policies: dict[str, ActionPolicy] = {}
        where: dict[str, str] = {}

        def read(name: str, node: Node) -> tuple[Action, ActionPolicy] | None:
            try:
                return self.registry.build(name, node, env), _action_policy(node, env)
            except MissingTarget as e:
                self.unavailable[name] = e  # a problem only if an enabled rule uses it
                return None

        for root, _ in files:
            section = root.get("actions")
            for name, built in self._each(section, read):
                assert section is not None
                if built is None:
                    continue
                action, policy = built
                if name in actions:
                    self.problems.append(
                        f"{section.child(name).where()}: action {name!r} is "
                        f"already defined at {where[name]}"
                    )
                    continue
                actions[name], policies[name] = action, policy
                where[name] = section.child(name).where()
        return actions, policies

    def _rules(self, files: list[tuple[Node, Path]], actions: dict[str, Action]) -> list[Rule]:
        rules: list[Rule] = []
        seen: dict[str, str] = {}
        referenced: set[str] = set()
        for root, path in files:
            section = root.get("rules")
            items = [] if section is None else self._check(section.sequence) or []
            referenced |= {a for item in items for a in _action_names(item.value)}
            selection = self.selections.get(path)
            if selection is not None:
                items = self._select(items, selection, path)
            for item in items:
                rule = self._rule_or_skip(item, actions, len(rules))
                if rule is None:
                    continue
                if rule.name in seen:
                    self.problems.append(
                        f"{item.child('name').where()}: rule {rule.name!r} is "
                        f"already defined at {seen[rule.name]}"
                    )
                    continue
                seen[rule.name] = item.where()
                rules.append(rule)
        # an action no rule names, on a target that does not exist: a typo, not a pack's option
        self.problems += [str(e) for a, e in self.unavailable.items() if a not in referenced]
        self.problems.extend(renaming_problems(rules))
        return rules

    def _select(self, items: list[Node], selection: RuleSelection, path: Path) -> list[Node]:
        """The rules of one file that its rule_files entry enables, each name checked."""
        names = [_rule_name(item) for item in items]
        for name_node in (*selection.enable, *selection.disable):
            if name_node.value not in names:
                known = ", ".join(repr(n) for n in names if n) or "none"
                self.problems.append(
                    f"{name_node.where()}: {_display(path)} has no rule {name_node.value!r} "
                    f"(its rules: {known})"
                )
        return [item for item, name in zip(items, names, strict=True) if selection.wants(name)]

    def _rule_or_skip(self, item: Node, actions: dict[str, Action], position: int) -> Rule | None:
        try:
            return self._rule(item, actions, position)
        except MissingTarget as e:
            _, rules = self.skipped.setdefault(e.target, (e, []))
            rules.append(_rule_name(item) or item.where())
        except Invalid as e:
            self.problems.append(str(e))
        return None

    def _skip_warnings(self) -> Iterator[str]:
        """One line per missing target, naming the rules skipped for it."""
        for first, rules in self.skipped.values():
            line = (
                f"{first}: skipped rule(s) {', '.join(repr(r) for r in rules)}, whose actions "
                "need it (define the target, or leave the rules out with "
                "rule_files: [{path: ..., disable: [...]}])"
            )
            if self.strict:
                self.problems.append(f"{line} [--strict]")
            else:
                yield line

    # -- one rule ------------------------------------------------------------------------------

    def _rule(self, node: Node, actions: dict[str, Action], position: int) -> Rule:
        node.mapping(RULE_KEYS)
        tiers_node = node.require("tiers")
        tiers = tuple(self._tier(i, t, actions) for i, t in enumerate(tiers_node.sequence()))
        if not tiers:
            raise tiers_node.fail("a rule needs at least one tier")
        names = [t.name for t in tiers]
        if len(set(names)) != len(names) or RESOLVED_STEP in names:
            raise tiers_node.fail(f"tier names must be unique and not {RESOLVED_STEP!r}: {names}")
        problem = check_ladder(tiers)
        if problem:
            raise tiers_node.fail(problem)
        value = node.opt("value", _value_source, None)
        if value is None and any(t.condition for t in tiers):
            raise node.fail("tiers with 'when' need a 'value' (annotation or label to read)")
        return Rule(
            name=node.require("name").string(),
            previous_names=tuple(node.strings("previous_names")),
            matchers=_matchers(node.require("match")),
            incident_key=tuple(
                node.strings("incident_key") if node.has("incident_key") else ["alertname"]
            ),
            tiers=tiers,
            value=value,
            on_resolved=tuple(
                self._resolved_step(s, actions) for s in node.children("on_resolved")
            ),
            description=node.opt("description", Node.string, ""),
            source=node.where(),
            position=position,
            dry_run=node.opt("dry_run", Node.boolean, False),
            cooldown=node.opt("cooldown", Node.duration, None),
            one_at_a_time_by=tuple(node.strings("one_at_a_time_by")),
            channel=node.get("slack").opt("channel", Node.string, "")  # type: ignore[union-attr]
            if node.has("slack")
            else "",
            templates=_rule_templates(node.get("slack")),
            during_maintenance=node.opt(
                "during_maintenance", lambda n: n.choice(("hold", "drop")), "hold"
            ),
            escalation=node.opt("escalation", Node.string, ""),
        )

    def _action_ref(self, node: Node, actions: dict[str, Action]) -> str:
        missing = self.unavailable.get(node.value) if isinstance(node.value, str) else None
        if missing is not None:
            raise missing
        return _action_ref(node, actions)

    def _tier(self, index: int, node: Node, actions: dict[str, Action]) -> Tier:
        node.mapping(TIER_KEYS)
        condition = node.opt("when", parse_condition, None)
        return Tier(
            index=index,
            name=node.opt("name", Node.string, f"tier{index}"),
            condition=condition,
            actions=tuple(self._action_ref(a, actions) for a in node.children("actions")),
            escalate_after=node.opt("escalate_after", Node.duration, None),
            repeats=node.opt("repeats", _repeats, None),
            approval=node.opt("approval", lambda n: n.choice(("required", "none")), "none")
            == "required",
            page=node.opt("page", Node.boolean, False),
        )

    def _resolved_step(self, node: Node, actions: dict[str, Action]) -> ResolvedStep:
        if isinstance(node.value, str):
            return ResolvedStep(self._action_ref(node, actions))
        node.mapping(RESOLVED_KEYS)
        if_ran = tuple(self._action_ref(n, actions) for n in node.children("if_ran"))
        return ResolvedStep(self._action_ref(node.require("action"), actions), if_ran)


class _StrictLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice in one mapping is an error, not a silent
    override (two actions with one name in one file would otherwise go unnoticed)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


@dataclass(frozen=True, slots=True)
class RuleSelection:
    """Which rules of a rule file to load: `enable` only these, or all but `disable`."""

    enable: tuple[Node, ...] = ()
    disable: tuple[Node, ...] = ()

    def wants(self, name: str | None) -> bool:
        if self.enable and name not in {n.value for n in self.enable}:
            return False
        return name not in {n.value for n in self.disable}


def _rule_file_entry(node: Node) -> tuple[str, RuleSelection | None]:
    """A rule_files entry: a path or glob, or {path, enable: [rule, ...] | disable: [...]}."""
    if isinstance(node.value, str):
        return node.string(), None
    node.mapping(RULE_FILE_ENTRY_KEYS)
    enable, disable = tuple(node.children("enable")), tuple(node.children("disable"))
    if enable and disable:
        raise node.fail("give enable (only these rules) or disable (all but these), not both")
    for name in (*enable, *disable):
        name.string()
    return node.require("path").string(), RuleSelection(enable, disable)


def _action_names(rule: Any) -> Iterator[str]:
    """The actions a rule (as read from YAML) names in its tiers and on_resolved steps."""
    if not isinstance(rule, dict):
        return
    for tier in rule.get("tiers") or []:
        if isinstance(tier, dict):
            yield from (a for a in tier.get("actions") or [] if isinstance(a, str))
    for step in rule.get("on_resolved") or []:
        yield from _step_actions(step)


def _step_actions(step: Any) -> Iterator[str]:
    if isinstance(step, str):
        yield step
    elif isinstance(step, dict):
        yield from (
            a for a in [step.get("action"), *(step.get("if_ran") or [])] if isinstance(a, str)
        )


def _rule_name(node: Node) -> str | None:
    name = node.value.get("name") if isinstance(node.value, dict) else None
    return name if isinstance(name, str) else None


def renaming_problems(rules: list[Rule]) -> list[str]:
    """A previous name must be free: no current rule has it, and only one rule claims it."""
    names = {r.name for r in rules}
    claimed: dict[str, str] = {}
    problems = []
    for rule in rules:
        for old in rule.previous_names:
            if old in names:
                problems.append(
                    f"{rule.source}.previous_names: {old!r} is the name of a current rule"
                )
            elif old in claimed:
                problems.append(
                    f"{rule.source}.previous_names: {old!r} is also a previous name of "
                    f"rule {claimed[old]!r}"
                )
            claimed.setdefault(old, rule.name)
    return problems


def _access(node: Node | None) -> dict[str, Access]:
    """`access: {"*": {users: [U1]}, approve: {groups: [S1]}}`: per verb, or "*" for the rest."""
    if node is None:
        return {}
    access = {}
    for verb, item in node.items():
        if verb != "*" and verb not in VERBS:
            raise item.fail(f"unknown verb {verb!r} (known: *, {', '.join(VERBS)})")
        item.mapping(ACCESS_KEYS)
        access[verb] = Access(frozenset(item.strings("users")), frozenset(item.strings("groups")))
    return access


def _verbs(node: Node | None, actions: dict[str, Action]) -> dict[str, dict[str, str]]:
    """`verbs: {pause: {ingestion: pause_ingestion}}`: what `/remediate pause ingestion` runs."""
    if node is None:
        return {}
    verbs: dict[str, dict[str, str]] = {}
    for verb, item in node.items():
        if verb not in ACTION_VERBS:
            raise item.fail(f"unknown verb {verb!r} (known: {', '.join(ACTION_VERBS)})")
        verbs[verb] = {name: _verb_action(ref, actions) for name, ref in item.items()}
    return verbs


def _verb_action(node: Node, actions: dict[str, Action]) -> str:
    """An action a command can run: what it reads beyond labels, no command can give."""
    name = _action_ref(node, actions)
    _, problem = commands.needs(actions[name])
    if problem is not None:
        raise node.fail(
            f"action {name!r} cannot run from a command: {problem} (a command gives only "
            "label=value parameters)"
        )
    return name


def _directory(node: Node, base_dir: Path) -> Path:
    path = resolve_path(node.string(), base_dir)
    if not path.is_dir():
        raise node.fail(f"not a directory: {str(path)!r}")
    return path


def _rule_templates(node: Node | None) -> dict[str, str]:
    if node is None:
        return {}
    node.mapping(RULE_SLACK_KEYS)
    templates = node.get("templates")
    if templates is None:
        return {}
    from remediator.slack.templates import TEMPLATE_NAMES, check_template

    found = {}
    for name, item in templates.items():
        if name not in TEMPLATE_NAMES:
            raise item.fail(f"unknown template {name!r} (known: {', '.join(TEMPLATE_NAMES)})")
        problem = check_template(item.string())
        if problem:
            raise item.fail(f"invalid template: {problem}")
        found[name] = item.string()
    return found


def _repeats(node: Node) -> Repeats:
    node.mapping(REPEATS_KEYS)
    return Repeats(node.require("count").integer(minimum=2), node.require("within").duration())


def _budget(node: Node) -> Budget:
    """`{max: 2, per: 1h}`."""
    node.mapping(BUDGET_KEYS)
    return Budget(node.require("max").integer(minimum=0), node.require("per").duration())


def _action_policy(node: Node, env: ParseEnv) -> ActionPolicy:
    precondition, verify = node.get("precondition"), node.get("verify")
    on_interrupted = node.opt("on_interrupted", lambda n: n.choice(interrupted.POLICIES), None)
    if on_interrupted == interrupted.VERIFY and precondition is None and verify is None:
        raise node.require("on_interrupted").fail(
            "on_interrupted: verify needs a precondition or a verify check to read the "
            "target's state with"
        )
    return ActionPolicy(
        destructive=node.opt("destructive", Node.boolean, False),
        budget=node.opt("budget", _budget, None),
        precondition=None
        if precondition is None
        else parse_precondition(precondition, env.targets),
        verify=None if verify is None else parse_verify(verify, env.targets),
        announce=node.opt(
            "announce",
            lambda n: n.choice(("paused", "resumed", "rolled_back", "action_taken")),
            "",
        ),
        on_interrupted=on_interrupted,
        once_per_incident=node.opt("once_per_incident", Node.boolean, False),
    )


def _retention(node: Node) -> Retention:
    node.mapping(RETENTION_KEYS)
    default = Retention()
    return Retention(
        journal=node.opt("journal", Node.duration, default.journal),
        incidents=node.opt("incidents", Node.duration, default.incidents),
        batch=node.opt("batch", lambda n: n.integer(minimum=1), default.batch),
        every=node.opt("every", Node.duration, default.every),
    )


def _guardrails(node: Node | None) -> Guardrails:
    if node is None:
        return Guardrails()
    node.mapping(GUARDRAIL_KEYS)
    breaker = node.get("circuit_breaker")
    return Guardrails(
        killswitch=node.opt("killswitch", Node.boolean, False),
        on_killswitch=node.opt("on_killswitch", lambda n: n.choice(HOLD_OR_DROP), "drop"),
        on_mute=node.opt("on_mute", lambda n: n.choice(HOLD_OR_DROP), "drop"),
        dry_run=node.opt("dry_run", Node.boolean, False),
        budget=node.opt("budget", _budget, None),
        breaker=DEFAULT_BREAKER
        if breaker is None
        else None
        if breaker.value is False
        else parse_breaker(breaker),
        approval_timeout=node.opt("approval_timeout", Node.duration, 1800.0),
        storm=node.opt("storm", _storm, Storm()),
    )


def _storm(node: Node) -> Storm:
    node.mapping(STORM_KEYS)
    return Storm(
        incidents=node.opt("incidents", lambda n: n.integer(minimum=1), 10),
        within=node.opt("within", Node.duration, 300.0),
        summary_every=node.opt("summary_every", Node.duration, 300.0),
    )


def _window(node: Node) -> Window:
    node.mapping(WINDOW_KEYS)
    name = node.require("name").string()
    rules, targets = frozenset(node.strings("rules")), frozenset(node.strings("targets"))
    cron = node.get("cron")
    if cron is not None:
        if node.has("start") or node.has("end"):
            raise node.fail("give either cron and duration, or start and end")
        timezone = node.opt("timezone", Node.string, "UTC")
        duration = node.require("duration").duration()
        try:
            return Window(name, duration, cron.string(), timezone, rules=rules, targets=targets)
        except (ValueError, KeyError) as e:  # a bad crontab or an unknown time zone
            raise cron.fail(
                f"invalid cron window ({cron.value!r}, timezone {timezone!r}): {e}"
            ) from None
    start, end = _timestamp(node.require("start")), _timestamp(node.require("end"))
    if end <= start:
        raise node.child("end").fail("end must be after start")
    return Window(name, end - start, start=start, end=end, rules=rules, targets=targets)


def _timestamp(node: Node) -> float:
    """YAML reads unquoted timestamps as datetimes; quoted ones stay text. Both must say their
    zone."""
    value = node.value
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    try:
        return parse_time(text)
    except ValueError:
        raise node.fail(
            f"expected an RFC 3339 time with a zone, like 2026-11-28T02:00:00Z, got {text!r}"
        ) from None


def _action_ref(node: Node, actions: dict[str, Action]) -> str:
    name = node.string()
    if name not in actions:
        known = ", ".join(sorted(actions)) or "none defined"
        raise node.fail(f"unknown action {name!r} (known: {known})")
    return name


def _matchers(node: Node) -> Any:
    spec = node.value if isinstance(node.value, str) else node.str_list()
    try:
        matchers = parse_matchers(spec)
    except MatcherError as e:
        raise node.fail(str(e)) from None
    if not matchers:
        raise node.fail("a rule needs at least one matcher")
    return matchers


def _value_source(node: Node) -> ValueSource:
    node.mapping(VALUE_KEYS)
    given = [k for k in ("annotation", "label") if node.has(k)]
    if len(given) != 1:
        raise node.fail("give exactly one of 'annotation' or 'label'")
    return ValueSource(given[0], node.require(given[0]).string())


def _journal_timeout(node: Node) -> float:
    seconds = node.duration()
    if seconds <= 0:
        raise node.fail(f"must be more than 0s, got {node.value!r}")
    return seconds


def _listen(node: Node) -> tuple[str, int]:
    text = node.string()
    host, sep, port_text = text.rpartition(":")
    port = decimal(port_text)
    if not sep or port is None or not 0 < port < 65536:
        raise node.fail(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", port


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem
