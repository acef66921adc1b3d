"""What every action kind shares: placeholders, the contexts it is given, what an attempt returns.

An action is prepared once, when it is claimed: its placeholders are filled from the alert and the
result (a JSON-able dict: URL, body, argv) is stored with the claim. Retries and restarts run that
stored request, so a retried action is the same action, and the audit shows exactly what was sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx

from remediator.errors import MissingResult, RenderError
from remediator.jsonpath import FIELD, extract
from remediator.schema import Node

Prepared = dict[str, Any]

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_REF = re.compile(r"\{([^{}=\s\"',]+)\}")  # a brace pair that could hold a reference
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SPECIALS = ("$incident_id", "$rule", "$tier", "$value", "$fingerprint")
_ANNOTATION_PREFIX = "$annotations."
_RESULTS_PREFIX = "$results."  # $results.<action> or $results.<action>.<json.path>


@dataclass(frozen=True, slots=True)
class RenderContext:
    """The data an action may use: the alert's labels and annotations and the incident's facts."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    incident_id: int = 0
    rule: str = ""
    tier: str = ""
    value: float | None = None
    fingerprint: str = ""
    results: Mapping[str, str] = field(default_factory=dict)  # action -> its output, this incident

    def lookup(self, ref: str) -> str:
        if ref.startswith(_RESULTS_PREFIX):
            return self._result(ref[len(_RESULTS_PREFIX) :])
        if ref.startswith(_ANNOTATION_PREFIX):
            name = ref[len(_ANNOTATION_PREFIX) :]
            if name not in self.annotations:
                raise RenderError(f"annotation {name!r} is missing")
            return self.annotations[name]
        if ref.startswith("$"):
            return self._special(ref)
        if ref not in self.labels:
            raise RenderError(f"label {ref!r} is missing")
        return self.labels[ref]

    def _result(self, ref: str) -> str:
        """What an earlier action of this incident returned: its whole output, or a field of
        it when the output is JSON (`$results.silence.silenceID`)."""
        action, _, path = ref.partition(".")
        if action not in self.results:
            raise MissingResult(f"no result from action {action!r} in this incident")
        output = self.results[action]
        if not path:
            return output
        try:
            values = extract(json.loads(output), path)
        except (ValueError, KeyError, IndexError, TypeError):
            raise RenderError(f"the result of {action!r} has no field {path!r}") from None
        if len(values) != 1:
            raise RenderError(f"the result of {action!r} has {len(values)} values at {path!r}")
        return values[0]

    def _special(self, ref: str) -> str:
        values = {
            "$incident_id": str(self.incident_id),
            "$rule": self.rule,
            "$tier": self.tier,
            "$value": "" if self.value is None else f"{self.value:g}",
            "$fingerprint": self.fingerprint,
        }
        return values[ref]


@dataclass(frozen=True, slots=True)
class Template:
    """A string with `{label}`, `{$rule}` or `{$annotations.name}` placeholders (`{{` and `}}` are
    literal braces). Values are data: each kind decides how to escape them (URL-encoded path
    segment, one argv element, a JSON string), and nothing in a value is ever interpreted.

    With `literal_braces` (PromQL, whose selectors are `{job="api"}`), only braces around a valid
    reference are placeholders; every other brace is text."""

    text: str
    refs: tuple[str, ...]
    literal_braces: bool = False

    @classmethod
    def parse(cls, node: Node, literal_braces: bool = False) -> Template:
        value = node.value
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            text = str(value)
        else:
            raise node.fail(f"expected a string, got {type(value).__name__}")
        if literal_braces:
            refs = [m.group(1) for m in _REF.finditer(text) if _valid_ref(m.group(1))]
            return cls(text, tuple(refs), literal_braces=True)
        refs = []
        for m in _PLACEHOLDER.finditer(text):
            ref = m.group(1)
            if ref is None:
                continue
            if not _valid_ref(ref):
                raise node.fail(
                    f"invalid placeholder {{{ref}}} in {text!r} (use a label name, "
                    f"{', '.join(SPECIALS)}, $annotations.<name> or $results.<action>[.<field>])"
                )
            refs.append(ref)
        leftover = _PLACEHOLDER.sub("", text)
        if "{" in leftover or "}" in leftover:
            raise node.fail(f"unbalanced brace in {text!r} (write {{{{ or }}}} for a literal one)")
        return cls(text, tuple(refs))

    def render(self, ctx: RenderContext, escape: Callable[[str], str] = str) -> str:
        if self.literal_braces:
            return _REF.sub(
                lambda m: escape(ctx.lookup(m.group(1))) if _valid_ref(m.group(1)) else m.group(0),
                self.text,
            )

        def substitute(m: re.Match[str]) -> str:
            if m.group(1) is None:
                return m.group(0)[0]
            return escape(ctx.lookup(m.group(1)))

        return _PLACEHOLDER.sub(substitute, self.text)


def _valid_ref(ref: str) -> bool:
    if ref.startswith(_ANNOTATION_PREFIX):
        return bool(ref[len(_ANNOTATION_PREFIX) :])
    if ref.startswith(_RESULTS_PREFIX):
        action, _, path = ref[len(_RESULTS_PREFIX) :].partition(".")
        return bool(action) and (not path or FIELD.fullmatch(path) is not None)
    return ref in SPECIALS or _LABEL_NAME.fullmatch(ref) is not None


def render_json(value: Any, ctx: RenderContext) -> Any:
    """Fill placeholders in every string of a JSON-shaped template; values stay JSON strings."""
    if isinstance(value, Template):
        return value.render(ctx)
    if isinstance(value, dict):
        return {k: render_json(v, ctx) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_json(v, ctx) for v in value]
    return value


def parse_json_template(node: Node) -> Any:
    """A YAML body whose string leaves may hold placeholders."""
    if isinstance(node.value, str):
        return Template.parse(node)
    if isinstance(node.value, dict):
        return {key: parse_json_template(child) for key, child in node.items()}
    if isinstance(node.value, list):
        return [parse_json_template(child) for child in node.sequence()]
    return node.value


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts after the first, with exponential backoff and jitter (each delay is drawn between
    half and all of the exponential ceiling, so retries from many claims spread out)."""

    retries: int = 2
    initial: float = 1.0
    maximum: float = 30.0
    multiplier: float = 2.0

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds before attempt `attempt + 1` (attempt counts from 1); rand is in [0, 1)."""
        ceiling = min(self.maximum, self.initial * self.multiplier ** (attempt - 1))
        return ceiling * (0.5 + rand / 2)


@dataclass(frozen=True, slots=True)
class AttemptContext:
    """What the executor gives one attempt: its number, timeout, idempotency key and the HTTP
    clients (`session`, aiohttp's, for the `http` kind: a quarter of httpx's CPU per request)."""

    attempt: int
    timeout: float
    idempotency_key: str
    http: httpx.AsyncClient
    session: aiohttp.ClientSession | None = None

    def aiohttp_session(self, kind: str) -> aiohttp.ClientSession:
        """The executor's aiohttp session, which the `kind` needs (every executor gives one)."""
        if self.session is None:
            raise RuntimeError(f"the {kind} kind needs the executor's aiohttp session")
        return self.session


@dataclass(frozen=True, slots=True)
class Clients:
    """The HTTP clients a check reads the world with: aiohttp's `session` where it was moved
    (Kafka Connect's status: a quarter of httpx's CPU per request, bench/http_client.py),
    httpx's `http` for the rest."""

    http: httpx.AsyncClient
    session: aiohttp.ClientSession


TARGET_REFUSES_US = frozenset({401, 403, 407, 408, 429})


def request_fault(status: int) -> bool:
    """A 4xx that refuses the request's data rather than saying the target is unwell."""
    return 400 <= status < 500 and status not in TARGET_REFUSES_US


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """The outcome of one attempt. `retryable` says whether another attempt could succeed."""

    ok: bool
    detail: str
    retryable: bool = False
    status_code: int | None = None
    exit_code: int | None = None
    output: str = ""
    retry_after: float | None = None
    # whether a failure says the target is sick; None: judged from status_code (see below)
    target_fault: bool | None = None

    @property
    def sick_target(self) -> bool:
        """Whether this failure counts towards the target's circuit breaker: connection errors,
        timeouts, 5xx, 401/403/407 (the target refuses us), 408 and 429 count; any other 4xx
        is the target refusing this request's own data (a bogus label value), and does not."""
        if self.target_fault is not None:
            return self.target_fault
        return self.status_code is None or not request_fault(self.status_code)
