"""Help that shows every default: `remediator <verb> --help` says what an option is when it is
not given, whoever wrote the option. A help text that already names its default keeps its own
words; a flag (off unless given) and an option without a default say nothing more."""

from __future__ import annotations

import argparse
from typing import Any


class DefaultsFormatter(argparse.HelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or not shows_default(action):
            return text
        shown = shown_default(action.default).replace("%", "%%")
        return f"{text} (default: {shown})".lstrip()


def shows_default(action: argparse.Action) -> bool:
    """Whether the help must name this action's default."""
    if isinstance(action, argparse._HelpAction | argparse._VersionAction):
        return False
    return action.default not in (None, False, argparse.SUPPRESS)


def shown_default(value: Any) -> str:
    if value in ("", [], ()):
        return "none"
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's commands, by name."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def show_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Every command of the parser formats its help with its defaults."""
    parser.formatter_class = DefaultsFormatter
    for command in subparsers(parser).values():
        command.formatter_class = DefaultsFormatter
    return parser
