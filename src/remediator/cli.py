"""The `remediator` command: serve, check, simulate, history. Wiring only."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from remediator import __version__
from remediator.alerts import parse_notification
from remediator.config import RESOLVED_STEP, Config, load_config
from remediator.errors import ConfigError, PayloadError, StoreError
from remediator.server import Daemon
from remediator.simulate import simulate
from remediator.store.sqlite import SqliteStore

DEFAULT_CONFIG = "remediator.yaml"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the executor logs each outcome itself
    try:
        config = load_config(args.config)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        print(f"{len(e.problems)} problem(s) in the configuration", file=sys.stderr)
        return 1
    try:
        return int(args.command(config, args))
    except StoreError as e:
        print(f"store error: {e}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="remediator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"remediator {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"main config file (default: {DEFAULT_CONFIG})"
    )
    common.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", parents=[common], help="run the daemon")
    serve.add_argument("--listen", metavar="HOST:PORT", help="override server.listen")
    serve.set_defaults(command=cmd_serve)

    check = sub.add_parser("check", parents=[common], help="validate config and rule files")
    check.set_defaults(command=cmd_check)

    sim = sub.add_parser(
        "simulate", parents=[common], help="show what a webhook payload would do, changing nothing"
    )
    sim.add_argument("payload", type=Path, help="an Alertmanager webhook body (JSON)")
    sim.add_argument("--json", action="store_true", help="print JSON")
    sim.set_defaults(command=cmd_simulate)

    history = sub.add_parser("history", parents=[common], help="the audit trail, newest first")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--json", action="store_true", help="print JSON lines")
    history.set_defaults(command=cmd_history)
    return parser


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    host = port = None
    if args.listen:
        host, _, port_text = args.listen.rpartition(":")
        if not port_text.isdigit():
            print(f"--listen: expected HOST:PORT, got {args.listen!r}", file=sys.stderr)
            return 2
        port = int(port_text)
    asyncio.run(Daemon(config).serve(host or None, port))
    return 0


def cmd_check(config: Config, args: argparse.Namespace) -> int:
    files = ", ".join(str(p) for p in config.rule_files) or "none"
    print(
        f"{args.config}: OK: {len(config.rules)} rules, {len(config.actions)} actions, "
        f"{len(config.targets)} targets (rule files: {files})"
    )
    return 0


def cmd_simulate(config: Config, args: argparse.Namespace) -> int:
    try:
        notification = parse_notification(json.loads(args.payload.read_text(encoding="utf-8")))
    except OSError as e:
        print(f"{args.payload}: cannot read: {e.strerror}", file=sys.stderr)
        return 1
    except (ValueError, PayloadError) as e:
        print(f"{args.payload}: {e}", file=sys.stderr)
        return 1
    outcomes = simulate(config, notification)
    if args.json:
        print(json.dumps([o.as_dict() for o in outcomes], indent=2))
        return 0
    for o in outcomes:
        if o.rule is None:
            print(f"{o.alert} ({o.status}): {o.note}")
            continue
        key = ", ".join(f"{k}={v}" for k, v in o.incident_key.items())
        value = "" if o.value is None else f" value={o.value:g}"
        note = f" ({o.note})" if o.note else ""
        print(f"{o.alert} ({o.status}) -> rule {o.rule} [{key}]{value}{note}: {_step(o.tier)}")
        for a in o.actions:
            print(f"    {a['action']} ({a['kind']} on {a['target']}): {a['request']}")
        if not o.actions:
            print("    no actions")
    return 0


def _step(tier: str | None) -> str:
    if tier == RESOLVED_STEP:
        return "on resolve"
    return f"tier {tier or 'none'}"


def cmd_history(config: Config, args: argparse.Namespace) -> int:
    if not config.store_path.exists():
        print(f"no history yet: {config.store_path} does not exist")
        return 0

    async def read() -> list[dict[str, object]]:
        store = SqliteStore(config.store_path)
        await store.open()
        try:
            return (await store.history(max(1, args.limit), None)).items
        finally:
            await store.close()

    for entry in asyncio.run(read()):
        if args.json:
            print(json.dumps(entry))
            continue
        incident = f"incident {entry['incident_id']}" if entry["incident_id"] else "-"
        print(
            f"{entry['at']}  {incident:<12} {entry['rule']:<28} {entry['event']:<11} "
            f"{entry['message']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
