"""Typed reading of decoded YAML, with errors that say where and what.

Every config error names the file, the path inside it and the bad value, the way starlette's
Config does: ``rules/cdc.yaml: rules[1].tiers[0].actions[0]: unknown action 'restart_conector'
(known: pause_connector, restart_connector)``. config.py is the only caller of yaml.safe_load;
everything it hands on is read through a Node.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

INT64_MAX = 2**63 - 1
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?")
_DURATION_UNITS = (86400.0, 3600.0, 60.0, 1.0, 0.001)


class Invalid(Exception):
    """One problem at one place. The loader collects these into a ConfigError."""


class MissingTarget(Invalid):
    """A reference to a target the main config does not define. The loader skips the rules that
    depend on it (a pack's rule whose system you do not run) instead of failing."""

    def __init__(self, where: str, target: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.target = target


class Secret:
    """A credential read from the environment or a file. It never prints its value."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(from {self.source})"

    __str__ = __repr__


def decimal(text: str) -> int | None:
    """A non-negative integer written in ASCII digits that a signed 64-bit column can hold, or
    None. (str.isdigit() also accepts superscripts and other scripts' digits, which int()
    refuses or reads unexpectedly.)"""
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > 19:
        return None
    value = int(text)
    return value if value <= INT64_MAX else None


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus-style duration: 90s, 5m, 1h30m, 2d, 250ms. ValueError otherwise."""
    m = _DURATION.fullmatch(text.strip())
    if not text.strip() or m is None or not any(m.groups()):
        raise ValueError(text)
    return sum(int(g) * unit for g, unit in zip(m.groups(), _DURATION_UNITS, strict=True) if g)


def format_duration(seconds: float) -> str:
    """The inverse of parse_duration for whole seconds: 5400 -> 1h30m."""
    whole = int(seconds)
    if whole != seconds or whole == 0:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class Node:
    """A decoded YAML value with its location: file and path inside it."""

    value: Any
    file: str
    path: str

    # -- location ------------------------------------------------------------------------------

    def where(self) -> str:
        return f"{self.file}: {self.path}" if self.path else self.file

    def fail(self, message: str) -> Invalid:
        """An Invalid naming this node; `raise node.fail("...")`."""
        return Invalid(f"{self.where()}: {message}")

    def child(self, key: str | int) -> Node:
        path = f"{self.path}[{key}]" if isinstance(key, int) else _join(self.path, key)
        value = self.value[key] if isinstance(key, int) else self.value.get(key)
        return Node(value, self.file, path)

    # -- containers ----------------------------------------------------------------------------

    def mapping(self, known: set[str] | frozenset[str]) -> Node:
        """This node as a mapping whose keys are all in `known`; unknown keys are errors."""
        if not isinstance(self.value, dict):
            raise self.fail(f"expected a mapping, got {_show(self.value)}")
        for key in self.value:
            if key not in known and f"{key}_env" in known:
                raise self.child(str(key)).fail(
                    f"inline secrets are not allowed: use {key}_env or {key}_file"
                )
            if key not in known:
                choices = ", ".join(sorted(known))
                raise self.child(str(key)).fail(f"unknown key {key!r} (known: {choices})")
        return self

    def has(self, key: str) -> bool:
        return isinstance(self.value, dict) and self.value.get(key) is not None

    def get(self, key: str) -> Node | None:
        return self.child(key) if self.has(key) else None

    def require(self, key: str) -> Node:
        if not self.has(key):
            raise self.fail(f"missing required key {key!r}")
        return self.child(key)

    def items(self) -> Iterator[tuple[str, Node]]:
        if not isinstance(self.value, dict):
            raise self.fail(f"expected a mapping, got {_show(self.value)}")
        for key in self.value:
            yield str(key), self.child(str(key))

    def sequence(self) -> list[Node]:
        if not isinstance(self.value, list):
            raise self.fail(f"expected a list, got {_show(self.value)}")
        return [self.child(i) for i in range(len(self.value))]

    # -- scalars -------------------------------------------------------------------------------

    def string(self) -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.fail(f"expected a non-empty string, got {_show(self.value)}")
        return self.value

    def integer(self, *, minimum: int | None = None) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.fail(f"expected an integer, got {_show(self.value)}")
        if minimum is not None and self.value < minimum:
            raise self.fail(f"must be at least {minimum}, got {self.value}")
        return self.value

    def number(self) -> float:
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise self.fail(f"expected a number, got {_show(self.value)}")
        return float(self.value)

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail(f"expected true or false, got {_show(self.value)}")
        return self.value

    def duration(self) -> float:
        """A duration string (30s, 5m, 1h30m) or a number of seconds."""
        if isinstance(self.value, int | float) and not isinstance(self.value, bool):
            if self.value < 0:
                raise self.fail(f"duration must not be negative, got {self.value}")
            return float(self.value)
        try:
            return parse_duration(self.string())
        except ValueError:
            raise self.fail(f"invalid duration {self.value!r} (e.g. 30s, 5m, 1h30m)") from None

    def choice(self, options: tuple[str, ...] | list[str]) -> str:
        value = self.string()
        if value not in options:
            raise self.fail(f"invalid value {value!r} (expected one of: {', '.join(options)})")
        return value

    def str_list(self) -> list[str]:
        return [item.string() for item in self.sequence()]

    def str_map(self) -> dict[str, str]:
        result = {}
        for key, item in self.items():
            if not isinstance(item.value, str | int | float) or isinstance(item.value, bool):
                raise item.fail(f"expected a string, got {_show(item.value)}")
            result[key] = str(item.value)
        return result

    # -- optional values with defaults ---------------------------------------------------------

    def opt(self, key: str, read: Callable[[Node], T], default: T) -> T:
        node = self.get(key)
        return default if node is None else read(node)

    def children(self, key: str) -> list[Node]:
        """The items of an optional list: empty when the key is absent."""
        node = self.get(key)
        return [] if node is None else node.sequence()

    def strings(self, key: str) -> list[str]:
        """An optional list of strings: empty when the key is absent."""
        return [item.string() for item in self.children(key)]

    def string_map(self, key: str) -> dict[str, str]:
        """An optional mapping of strings: empty when the key is absent."""
        node = self.get(key)
        return {} if node is None else node.str_map()

    def integers(self, key: str) -> list[int]:
        return [item.integer() for item in self.children(key)]

    def secret(self, name: str, base_dir: Path) -> Secret | None:
        """A credential given as `<name>_env` (a variable's name) or `<name>_file` (a path);
        never inline."""
        if self.has(name):
            raise self.child(name).fail(
                f"inline secrets are not allowed: use {name}_env or {name}_file"
            )
        env, file = self.get(f"{name}_env"), self.get(f"{name}_file")
        if env is not None and file is not None:
            raise self.fail(f"give either {name}_env or {name}_file, not both")
        if env is not None:
            return _secret_from_env(env)
        if file is not None:
            return _secret_from_file(file, base_dir)
        return None


_SECRETS_OPTIONAL: ContextVar[bool] = ContextVar("secrets_optional", default=False)


@contextmanager
def secrets_optional() -> Iterator[None]:
    """For verbs that only read (history, simulate): a credential that is not set reads as an
    empty Secret instead of a problem, so they need only what they read."""
    token = _SECRETS_OPTIONAL.set(True)
    try:
        yield
    finally:
        _SECRETS_OPTIONAL.reset(token)


def _secret_from_env(node: Node) -> Secret:
    variable = node.string()
    value = os.environ.get(variable)
    if not value and _SECRETS_OPTIONAL.get():
        return Secret("", f"${variable} (not set)")
    if not value:
        raise node.fail(f"environment variable {variable!r} is not set or empty")
    return Secret(value, f"${variable}")


def _secret_from_file(node: Node, base_dir: Path) -> Secret:
    path = resolve_path(node.string(), base_dir)
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        if _SECRETS_OPTIONAL.get():
            return Secret("", f"{path} (unreadable)")
        raise node.fail(f"cannot read secret file {str(path)!r}: {e.strerror}") from None
    if not value:
        raise node.fail(f"secret file {str(path)!r} is empty")
    return Secret(value, str(path))


def resolve_path(text: str, base_dir: Path) -> Path:
    """Paths in a config file are relative to that file's directory, as in Prometheus."""
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else Path(os.path.normpath(base_dir / path))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)
