"""The verbs that read the rules and the past without touching anything live: `docs` (the rules as
the on-call runbook), `replay` (the journal through a config, with a fake clock) and `backtest`
(Prometheus's history through a config). Wiring only; cli.py registers them."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from remediator.alerts import parse_time
from remediator.errors import ConfigError

if TYPE_CHECKING:  # imported by the verb that runs, not by every `remediator` command
    from remediator import alert_rules, replay
    from remediator.config import Config

Command = Callable[["Config", argparse.Namespace], int]


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

    replay = sub.add_parser(
        "replay",
        parents=[common],
        help="decide the journal's notifications again through this config, touching nothing",
    )
    replay.add_argument(
        "--store", type=Path, help="the live SQLite store to read (default: the config's)"
    )
    _range(replay)
    replay.add_argument(
        "--compare", action="store_true", help="set it beside what really happened (the audit)"
    )
    replay.add_argument("--json", action="store_true", help="print JSON")
    replay.set_defaults(command=cmd_replay)

    back = sub.add_parser(
        "backtest",
        parents=[common],
        help="what this config would have done on the alerts in Prometheus's history",
    )
    back.add_argument("--prometheus", required=True, metavar="URL", help="Prometheus's base URL")
    _range(back)
    back.add_argument(
        "--step", default="1m", help="the resolution alerts are evaluated at (default: 1m)"
    )
    back.add_argument(
        "--alert-rules",
        action="append",
        default=[],
        metavar="PATH",
        help="evaluate these alerting rules (files or directories) instead of reading ALERTS",
    )
    back.add_argument("--json", action="store_true", help="print JSON")
    back.set_defaults(command=cmd_backtest)


def _range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="since",
        default="now-7d",
        metavar="TIME",
        help="RFC 3339, Unix seconds, now or now-DURATION (default: now-7d)",
    )
    parser.add_argument(
        "--to", dest="until", default="now", metavar="TIME", help="as --from (default: now)"
    )


def when(text: str, now: float) -> float:
    """A time from the command line: RFC 3339, Unix seconds, `now`, `now-7d`."""
    text = text.strip()
    if text == "now":
        return now
    if text.startswith("now-"):
        from remediator.alert_rules import duration

        return now - duration(text[4:])
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_time(text)
    except ValueError:
        raise ValueError(
            f"invalid time {text!r} (RFC 3339, Unix seconds, now or now-DURATION)"
        ) from None


def _times(args: argparse.Namespace) -> tuple[float, float]:
    now = time.time()
    since, until = when(args.since, now), when(args.until, now)
    if since >= until:
        raise ValueError(f"--from ({args.since}) must be before --to ({args.until})")
    return since, until


def _problems(e: ConfigError) -> int:
    for problem in e.problems:
        print(problem, file=sys.stderr)
    return 1


def cmd_docs(config: Config, args: argparse.Namespace) -> int:
    from remediator import alert_rules, runbook_docs

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


def cmd_replay(config: Config, args: argparse.Namespace) -> int:
    from remediator import replay

    try:
        since, until = _times(args)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    live = args.store or config.store_path
    _quiet(args)
    result = asyncio.run(replay.replay(config, live, since, until, compare=args.compare))
    _print(result, args.json)
    return 0


def _quiet(args: argparse.Namespace) -> None:
    """The sandbox's daemon parts log each recorded action as the daemon would: the timeline says
    it already, so their log shows only errors, unless --log-level debug asks for everything."""
    if args.log_level != "debug":
        for name in ("engine", "executor", "control", "scheduler"):
            logging.getLogger(f"remediator.{name}").setLevel(logging.ERROR)


def _print(result: replay.Result, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print("\n".join(result.text()))


def cmd_backtest(config: Config, args: argparse.Namespace) -> int:
    from remediator import alert_rules
    from remediator.backtest import BacktestError

    try:
        since, until = _times(args)
        step = alert_rules.duration(args.step)
        given = alert_rules.load_files(args.alert_rules) if args.alert_rules else None
    except ConfigError as e:
        return _problems(e)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    _quiet(args)
    try:
        result = asyncio.run(_backtest(config, args.prometheus, since, until, step, given))
    except BacktestError as e:
        print(e, file=sys.stderr)
        return 1
    _print(result, args.json)
    return 0


async def _backtest(
    config: Config,
    url: str,
    since: float,
    until: float,
    step: float,
    given: list[alert_rules.AlertingRule] | None,
) -> replay.Result:
    import httpx

    from remediator import backtest

    async with httpx.AsyncClient(timeout=60.0, trust_env=False) as client:
        prometheus = backtest.Prometheus(url, client)
        return await backtest.backtest(config, prometheus, since, until, step, given)
