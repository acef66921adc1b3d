"""The verbs that read the rules and the past without touching anything live: `docs` (the rules as
the on-call runbook), `replay` (the journal through a config, with a fake clock) and `backtest`
(Prometheus's history through a config). Wiring only; cli.py registers them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from remediator import alert_rules, runbook_docs
from remediator.config import Config
from remediator.errors import ConfigError

Command = Callable[[Config, argparse.Namespace], int]


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    docs = sub.add_parser(
        "docs", parents=[common], help="print or write the rules as the on-call runbook (Markdown)"
    )
    docs.add_argument(
        "--alert-rules",
        action="append",
        default=[],
        metavar="PATH",
        help="Prometheus alerting rule files or directories, to show each alert's expression",
    )
    docs.add_argument("--dashboard", type=Path, help="the Grafana dashboard JSON to point at")
    docs.add_argument(
        "--out", type=Path, help="write one page per rule file into this directory (default: print)"
    )
    docs.set_defaults(command=cmd_docs)


def _problems(e: ConfigError) -> int:
    for problem in e.problems:
        print(problem, file=sys.stderr)
    return 1


def cmd_docs(config: Config, args: argparse.Namespace) -> int:
    try:
        alerting = alert_rules.load_files(args.alert_rules)
    except ConfigError as e:
        return _problems(e)
    if args.dashboard is not None and not args.dashboard.is_file():
        print(f"--dashboard: {args.dashboard} is not a file", file=sys.stderr)
        return 1
    out_dir = args.out or Path.cwd()
    where = runbook_docs.Where(out_dir, args.dashboard)
    found = runbook_docs.pages(config, alerting, where)
    if args.out is None:
        print("\n".join(page.text for page in found), end="")
        return 0
    for path in runbook_docs.write(found, args.out):
        print(f"wrote {path}")
    return 0
