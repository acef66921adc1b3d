"""Templates: sandboxed, and alert values are data. A label can never ping the channel, forge a
link or be evaluated as a template."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError

from remediator.slack.templates import (
    TEMPLATE_NAMES,
    Templates,
    Trusted,
    check_template,
    link,
    slack_escape,
)

HOSTILE = [
    "<!channel>",
    "<https://evil.example|click>",
    "{{ 7*7 }}",
    "{% raw %}",
    "<@U0BOSS>",
    "a & b > c",
]


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("<!channel>", "&lt;!channel&gt;"),
        ("<https://evil|click>", "&lt;https://evil|click&gt;"),
        ("a & b", "a &amp; b"),
        ("&lt;", "&amp;lt;"),
        ("plain", "plain"),
    ],
)
def test_slack_escape(text: str, escaped: str) -> None:
    assert slack_escape(text) == escaped


@pytest.mark.parametrize("value", HOSTILE)
def test_alert_values_come_out_inert(value: str) -> None:
    text = Templates().render(
        "incident",
        {
            "incident": {
                "severity": "P1",
                "title": value,
                "description": value,
                "state": "firing",
                "value": None,
            },
            "mention": None,
        },
    )
    assert slack_escape(value) in text
    assert "<!channel>" not in text
    assert "<https://evil" not in text
    assert "49" not in text  # {{ 7*7 }} is text, never evaluated


def test_trusted_text_is_printed_as_it_is() -> None:
    text = Templates().render(
        "needs_human",
        {
            "incident": {"title": "t"},
            "event": {"message": "m"},
            "mention": Trusted("<!subteam^S0PAGE>"),
        },
    )
    assert "<!subteam^S0PAGE>" in text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://am:9093/#/alerts", "<http://am:9093/#/alerts|Alertmanager>"),
        ("http://x/a|b>c<d", "<http://x/a%7Cb%3Ec%3Cd|Alertmanager>"),
        ("javascript:alert(1)", "Alertmanager"),
        ('http://x/?q=up{job="a"}', "<http://x/?q=up%7Bjob=%22a%22%7D|Alertmanager>"),
    ],
)
def test_links_cannot_be_forged(url: str, expected: str) -> None:
    assert link(url, "Alertmanager") == expected


def test_every_template_renders_with_empty_data() -> None:
    templates = Templates()
    for name in TEMPLATE_NAMES:
        assert isinstance(templates.render(name, {}), str)


def test_the_sandbox_refuses_unsafe_templates() -> None:
    overrides = {"incident": "{{ incident.__class__.__mro__[1].__subclasses__() }}"}
    with pytest.raises(SecurityError):
        Templates().render("incident", {"incident": {}}, overrides)


def test_overrides_from_a_directory_and_inline(tmp_path: Path) -> None:
    (tmp_path / "incident.j2").write_text("custom {{ incident.title }}")
    templates = Templates(tmp_path)
    assert templates.render("incident", {"incident": {"title": "<x>"}}) == "custom &lt;x&gt;"
    inline = {"incident": "inline {{ incident.title }}"}
    assert templates.render("incident", {"incident": {"title": "y"}}, inline) == "inline y"


@pytest.mark.parametrize(
    ("source", "ok"), [("{{ a }}", True), ("{% if %}", False), ("{{ a", False)]
)
def test_check_template(source: str, ok: bool) -> None:
    assert (check_template(source) is None) is ok


@pytest.mark.parametrize(
    ("outcome", "headline"),
    [
        ("verified", ":heavy_check_mark: *VERIFIED: restart*"),
        ("verification failed", ":x: *NOT VERIFIED: restart*"),
    ],
)
def test_the_verification_headline_is_a_line_of_its_own(outcome: str, headline: str) -> None:
    """trim_blocks eats the newline after a block tag: the detail once ran into the headline."""
    text = Templates().render(
        "verification",
        {"event": {"outcome": outcome}, "action": {"name": "restart", "detail": "is RUNNING"}},
    )
    assert text.splitlines() == [headline, "is RUNNING"]
