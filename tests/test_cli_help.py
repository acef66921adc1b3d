"""Every subcommand's --help names each option's default and says what each argument is, the
older options as much as the newer ones (remediator.cli_help)."""

from __future__ import annotations

import argparse

import pytest

from remediator import cli_help
from remediator.cli import _parser

PARSER = _parser()
COMMANDS = cli_help.subparsers(PARSER)


def flat(text: str) -> str:
    return " ".join(text.split())


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        PARSER.parse_args([command, "--help"])
    assert done.value.code == 0
    return flat(capsys.readouterr().out)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_argument_is_explained_and_every_default_shown(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_of(command, capsys)
    for action in COMMANDS[command]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = action.option_strings[0] if action.option_strings else action.dest
        assert action.help, f"remediator {command} {name}: no help text"
        if not cli_help.shows_default(action):
            continue
        said = cli_help.DefaultsFormatter("x")._get_help_string(action) or ""
        assert "default" in said, f"remediator {command} {name}: its default is not shown"
        assert flat(said % {"default": action.default}) in text, (command, name)  # as printed


def test_an_option_without_its_default_in_its_words_gets_it_appended() -> None:
    parser = argparse.ArgumentParser(prog="p", formatter_class=cli_help.DefaultsFormatter)
    parser.add_argument("--limit", type=int, default=20, help="how many")
    parser.add_argument("--grace", default="30s", help="how long (default: 30s, or the config's)")
    parser.add_argument("--reason", default="", help="why")
    parser.add_argument("--all", action="store_true", help="everything")
    parser.add_argument("--since", help="from when")
    text = flat(parser.format_help())
    assert "--limit LIMIT how many (default: 20)" in text
    assert "how long (default: 30s, or the config's) " in text + " "
    assert "--reason REASON why (default: none)" in text
    assert "--all everything --since SINCE from when" in text
