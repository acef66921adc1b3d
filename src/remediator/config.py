"""The one place YAML becomes typed, validated, frozen configuration.

`load_config(path)` reads the main file and the rule files it names (paths or globs, relative to
the main file's directory), and either returns a Config or raises ConfigError listing every
problem found, each naming file, path and value.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import yaml

from remediator.actions import ActionRegistry, ParseEnv, default_registry
from remediator.errors import ConfigError
from remediator.matchers import MatcherError, parse_matchers
from remediator.rules import Condition, ResolvedStep, Rule, Tier, ValueSource, check_ladder
from remediator.schema import Invalid, Node, Secret, resolve_path
from remediator.targets import Target, parse_target
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
    }
)
RULE_FILE_KEYS = frozenset({"actions", "rules"})
SERVER_KEYS = frozenset({"listen", "max_body_bytes", "shutdown_grace"})
AUTH_KEYS = frozenset({"bearer_token_env", "bearer_token_file", "basic_auth"})
API_AUTH_KEYS = frozenset({"bearer_token_env", "bearer_token_file"})
BASIC_KEYS = frozenset({"username", "password_env", "password_file"})
STORE_KEYS = frozenset({"sqlite"})
SQLITE_KEYS = frozenset({"path"})
EXECUTOR_KEYS = frozenset({"max_concurrency"})
RULE_KEYS = frozenset(
    {"name", "description", "match", "incident_key", "value", "tiers", "on_resolved"}
)
VALUE_KEYS = frozenset({"annotation", "label"})
TIER_KEYS = frozenset({"name", "when", "actions"})
RESOLVED_KEYS = frozenset({"action", "if_ran"})
RESOLVED_STEP = "on_resolved"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 9095
    max_body_bytes: int = 1 << 20
    shutdown_grace: float = 20.0


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
class Config:
    path: Path
    server: ServerConfig = field(default_factory=ServerConfig)
    webhook_auth: WebhookAuth = field(default_factory=WebhookAuth)
    api_token: Secret | None = None
    store_path: Path = Path("remediator.db")
    max_concurrency: int = 16
    targets: dict[str, Target] = field(default_factory=dict)
    actions: dict[str, Action] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    rule_files: tuple[Path, ...] = ()


def load_config(path: str | Path, registry: ActionRegistry | None = None) -> Config:
    """Read and validate everything. Raises ConfigError with every problem found."""
    return _Loader(Path(path), registry or default_registry()).load()


@dataclass
class _Loader:
    path: Path
    registry: ActionRegistry
    problems: list[str] = field(default_factory=list)

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
        actions = self._actions(files, env)
        rules = self._rules(files, actions)
        config = Config(
            path=self.path,
            server=self._check(partial(self._server, root.get("server"))) or ServerConfig(),
            webhook_auth=self._check(partial(self._webhook_auth, root.get("webhook_auth")))
            or WebhookAuth(),
            api_token=self._check(partial(self._api_token, root.get("api_auth"))),
            store_path=self._check(partial(self._store, root.get("store"))) or Path(),
            max_concurrency=self._check(partial(self._executor, root.get("executor"))) or 16,
            targets=targets,
            actions=actions,
            rules=tuple(rules),
            rule_files=tuple(p for _, p in files[1:]),
        )
        if self.problems:
            raise ConfigError(self.problems)
        return config

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

    def _store(self, node: Node | None) -> Path:
        if node is None:
            return self.base_dir / "remediator.db"
        sqlite = node.mapping(STORE_KEYS).require("sqlite").mapping(SQLITE_KEYS)
        return resolve_path(sqlite.require("path").string(), self.base_dir)

    def _executor(self, node: Node | None) -> int:
        if node is None:
            return 16
        node.mapping(EXECUTOR_KEYS)
        return node.opt("max_concurrency", lambda n: n.integer(minimum=1), 16)

    def _target(self, name: str, node: Node) -> Target:
        return parse_target(name, node, self.base_dir)

    def _rule_files(self, root: Node) -> list[tuple[Node, Path]]:
        node = root.get("rule_files")
        if node is None:
            return []
        found: list[tuple[Node, Path]] = []
        seen = {self.path.resolve()}
        for item in self._check(node.sequence) or []:
            pattern = self._check(item.string)
            if pattern is None:
                continue
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
        return found

    def _actions(self, files: list[tuple[Node, Path]], env: ParseEnv) -> dict[str, Action]:
        actions: dict[str, Action] = {}
        where: dict[str, str] = {}
        for root, _ in files:
            section = root.get("actions")
            for name, action in self._each(section, lambda n, c: self.registry.build(n, c, env)):
                assert section is not None
                if name in actions:
                    self.problems.append(
                        f"{section.child(name).where()}: action {name!r} is "
                        f"already defined at {where[name]}"
                    )
                    continue
                actions[name] = action
                where[name] = section.child(name).where()
        return actions

    def _rules(self, files: list[tuple[Node, Path]], actions: dict[str, Action]) -> list[Rule]:
        rules: list[Rule] = []
        seen: dict[str, str] = {}
        for root, _ in files:
            section = root.get("rules")
            if section is None:
                continue
            for item in self._check(section.sequence) or []:
                rule = self._check(partial(self._rule, item, actions, len(rules)))
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
        return rules

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
        )

    def _tier(self, index: int, node: Node, actions: dict[str, Action]) -> Tier:
        node.mapping(TIER_KEYS)
        when = node.get("when")
        condition = None
        if when is not None:
            try:
                condition = Condition.parse(when.string())
            except ValueError as e:
                raise when.fail(str(e)) from None
        return Tier(
            index=index,
            name=node.opt("name", Node.string, f"tier{index}"),
            condition=condition,
            actions=tuple(_action_ref(a, actions) for a in node.children("actions")),
        )

    def _resolved_step(self, node: Node, actions: dict[str, Action]) -> ResolvedStep:
        if isinstance(node.value, str):
            return ResolvedStep(_action_ref(node, actions))
        node.mapping(RESOLVED_KEYS)
        if_ran = tuple(_action_ref(n, actions) for n in node.children("if_ran"))
        return ResolvedStep(_action_ref(node.require("action"), actions), if_ran)


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


def _listen(node: Node) -> tuple[str, int]:
    text = node.string()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise node.fail(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem
