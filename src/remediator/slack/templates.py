"""Message templates: Jinja2 in a sandbox, values from alerts treated as data.

Every value a template prints is escaped for Slack (`&`, `<`, `>`), so a label can never ping
`<!channel>` or forge a `<https://evil|link>`; only values remediator builds itself (a configured
group mention, links it assembled from escaped parts) are marked Trusted and printed as they are.
No template ever evaluates text that came from an alert: alert data only ever fills a template's
variables, it is never a template.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import ChainableUndefined, ChoiceLoader, FileSystemLoader, PackageLoader, Template
from jinja2.exceptions import TemplateError
from jinja2.sandbox import SandboxedEnvironment

TEMPLATE_NAMES = (
    "action_failed",
    "action_interrupted",
    "action_refused",
    "action_taken",
    "approval_decided",
    "approval_request",
    "circuit_opened",
    "control",
    "incident",
    "needs_human",
    "paged",
    "paused",
    "resolution",
    "resumed",
    "rolled_back",
    "status_update",
    "storm_summary",
    "verification",
)


class Trusted(str):
    """Text remediator built itself, printed without escaping."""


def slack_escape(text: str) -> str:
    """Slack's three control characters, as Slack documents them."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> Trusted:
    """`<url|label>` with both parts made inert: only http(s) URLs, and no character that could
    close the link or start another."""
    if not url.startswith(("http://", "https://")):
        return Trusted(slack_escape(label))
    safe_url = quote(url, safe=":/?#[]@!$&'()*+,;=%-._~")
    safe_url = safe_url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")
    return Trusted(f"<{safe_url}|{slack_escape(label).replace('|', '/')}>")


def _finalize(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Trusted):
        return str(value)
    return slack_escape(str(value))


def _environment(loader: Any = None) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=loader,
        finalize=_finalize,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=ChainableUndefined,
    )


def check_template(source: str) -> str | None:
    """Why `source` is not a valid template, or None."""
    try:
        _environment().parse(source)
    except TemplateError as e:
        return str(e)
    return None


class Templates:
    """The default templates in remediator/templates/, overridden by files in `directory`
    (same names, `.j2`), overridden per rule by inline sources."""

    def __init__(self, directory: Path | None = None) -> None:
        loaders: list[Any] = [PackageLoader("remediator", "templates")]
        if directory is not None:
            loaders.insert(0, FileSystemLoader(str(directory)))
        self.env = _environment(ChoiceLoader(loaders))
        # read once: no stat of the template files on every message (jinja's auto_reload); a
        # changed templates_dir takes effect at the next start, as the rest of the config does
        self.env.auto_reload = False

    def render(
        self, name: str, context: Mapping[str, Any], overrides: Mapping[str, str] | None = None
    ) -> str:
        source = (overrides or {}).get(name)
        template = self._inline(source) if source else self.env.get_template(f"{name}.j2")
        return template.render(**context).strip()

    def _inline(self, source: str) -> Template:
        return _compile(self.env, source)


@lru_cache(maxsize=256)
def _compile(env: SandboxedEnvironment, source: str) -> Template:
    return env.from_string(source)
