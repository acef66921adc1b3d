"""The `remediator` command: serve, check, simulate, history, the verbs that steer a running
daemon (killswitch, mutes, approvals, circuits), and those that read the rules and the past
without touching anything live (docs, replay, backtest). Wiring only."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import remediator
from remediator import cli_help, cli_offline, cli_remote, heap, logs
from remediator.alerts import parse_notification
from remediator.cli_remote import Remote, RemoteError, add_remote_options, remote
from remediator.errors import ConfigError, ListenError, PayloadError, StoreError
from remediator.safetext import visible
from remediator.schema import decimal, secrets_optional

if TYPE_CHECKING:  # each verb imports what it runs: one over --url needs neither config nor daemon
    from remediator.config import Config

CONFIG_ENV = "REMEDIATOR_CONFIG"
CONFIG_SEARCH = (
    Path("remediator.yaml"),
    Path("~/.config/remediator/remediator.yaml"),
    Path("/etc/remediator/remediator.yaml"),
)
SEARCHED = ", ".join(str(p) for p in CONFIG_SEARCH)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup(args.log_level, args.log_format)
    config: Config | None = None
    if not (getattr(args.command, "remote", False) and args.url):  # --url needs no config
        try:
            config = _load(args)
        except ConfigError as e:
            for problem in e.problems:
                print(problem, file=sys.stderr)
            print(f"{len(e.problems)} problem(s) in the configuration", file=sys.stderr)
            return 1
        for warning in config.warnings:
            logging.getLogger("remediator.config").warning("%s", warning)
    try:
        return int(args.command(config, args))
    except StoreError as e:
        print(f"store error: {e}", file=sys.stderr)
        return 1
    except ListenError as e:
        print(e, file=sys.stderr)
        return 1


def config_path(given: str | None) -> Path:
    """--config, else $REMEDIATOR_CONFIG, else the first of CONFIG_SEARCH that exists."""
    if given:
        return Path(given)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    for candidate in CONFIG_SEARCH:
        if candidate.expanduser().is_file():
            return candidate.expanduser()
    raise ConfigError(
        [f"no config file: give --config, set {CONFIG_ENV}, or create one of {SEARCHED}"]
    )


def _load(args: argparse.Namespace) -> Config:
    """The config; a verb that only reads does not need the secrets it does not read."""
    from remediator.config import load_config

    path = config_path(args.config)
    if getattr(args.command, "remote", False) or args.command in (cmd_history, cmd_simulate):
        with secrets_optional():
            return load_config(path, strict=args.strict)
    return load_config(path, strict=args.strict)


class _Version(argparse.Action):
    """--version, the installed version read only when asked for."""

    def __init__(self, option_strings: list[str], dest: str) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS,
            help="show program's version number and exit",
        )  # fmt: skip

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        parser.exit(message=f"remediator {remediator.__version__}\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="remediator", description=__doc__)
    parser.add_argument("--version", action=_Version)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        help=f"the main config file (default: ${CONFIG_ENV}, else the first of {SEARCHED})",
    )
    common.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the least severe level logged (default: info; httpx's line per request only "
        "at debug)",
    )
    common.add_argument(
        "--log-format",
        default="text",
        choices=logs.FORMATS,
        help="text for people, or json: one object a line with UTC timestamps and the "
        "incident, rule and claim ids as fields (default: text)",
    )
    common.add_argument(
        "--strict",
        action="store_true",
        help="a rule skipped because its target is not configured is an error, not a warning",
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", parents=[common], help="run the daemon")
    serve.add_argument("--listen", metavar="HOST:PORT", help="override server.listen")
    serve.add_argument(
        "--role",
        choices=("auto", "ingest"),
        default="auto",
        help="auto: lead when elected (PostgreSQL), else acknowledge; ingest: only acknowledge "
        "webhooks, never lead (default: %(default)s)",
    )
    serve.set_defaults(command=cmd_serve)

    check = sub.add_parser("check", parents=[common], help="validate config and rule files")
    check.set_defaults(command=cmd_check)

    sim = sub.add_parser(
        "simulate", parents=[common], help="show what a webhook payload would do, changing nothing"
    )
    sim.add_argument(
        "payload",
        nargs="?",
        default="-",
        help="an Alertmanager webhook body (JSON); - or nothing: read it from stdin",
    )
    sim.add_argument("--json", action="store_true", help="print JSON")
    add_remote_options(sim, getpass.getuser())
    sim.set_defaults(command=cmd_simulate)

    remote = argparse.ArgumentParser(add_help=False, parents=[common])
    add_remote_options(remote, getpass.getuser())

    history = sub.add_parser(
        "history",
        parents=[remote],
        help="the audit trail, newest first",
        description="The audit trail, newest first: decisions, actions, controls. With --url "
        "from the running daemon's API; otherwise from the store file the config names.",
    )
    history.add_argument("--limit", type=int, default=20, help="how many lines (default: 20)")
    history.add_argument("--json", action="store_true", help="print JSON lines")
    history.set_defaults(command=cmd_history)

    ks = sub.add_parser("killswitch", parents=[remote], help="show or flip the kill switch")
    ks.add_argument(
        "state", choices=["on", "off", "status"], nargs="?", default="status", help="what to do"
    )
    ks.add_argument("--reason", default="", help="why, recorded in the audit")
    ks.set_defaults(command=cmd_killswitch)

    mutes = sub.add_parser("mutes", parents=[remote], help="list, add or end mutes")
    mutes.add_argument(
        "verb", choices=["list", "add", "end"], nargs="?", default="list", help="what to do"
    )
    mutes.add_argument("id", nargs="?", type=int, help="the mute to end")
    mutes.add_argument("--rule", help="add: mute this rule's actions")
    mutes.add_argument("--target", help="add: mute every action on this target")
    mutes.add_argument("--matchers", help="label matchers, e.g. '{connector=\"sink\"}'")
    mutes.add_argument("--duration", default="1h", help="add: how long the mute lasts")
    mutes.add_argument("--reason", default="", help="add: why, shown with the mute")
    mutes.add_argument("--all", action="store_true", help="include ended and expired mutes")
    mutes.set_defaults(command=cmd_mutes)

    approvals = sub.add_parser("approvals", parents=[remote], help="list or decide approvals")
    approvals.add_argument(
        "verb", choices=["list", "approve", "deny"], nargs="?", default="list", help="what to do"
    )
    approvals.add_argument("id", nargs="?", type=int, help="the approval to decide")
    approvals.add_argument("--reason", default="", help="deny: why, recorded in the audit")
    approvals.set_defaults(command=cmd_approvals)

    circuits = sub.add_parser("circuits", parents=[remote], help="list or reset circuit breakers")
    circuits.add_argument(
        "verb", choices=["list", "reset"], nargs="?", default="list", help="what to do"
    )
    circuits.add_argument("target", nargs="?", help="reset: the target whose circuit closes")
    circuits.set_defaults(command=cmd_circuits)
    cli_remote.register(sub, remote)
    cli_offline.register(sub, common)
    return cli_help.show_defaults(parser)


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from remediator.config import load_config
    from remediator.leader import INGEST
    from remediator.server import Daemon
    from remediator.store.factory import build_store

    host = port = None
    if args.listen:
        host, _, port_text = args.listen.rpartition(":")
        port = decimal(port_text)
        if port is None:
            print(f"--listen: expected HOST:PORT, got {args.listen!r}", file=sys.stderr)
            return 2
    if args.role == INGEST and config.store.postgres is None:
        print("--role ingest needs the PostgreSQL store (store.postgres)", file=sys.stderr)
        return 2
    load = partial(load_config, strict=args.strict)  # a reload reads it as the start did
    daemon = Daemon(config, given_store=build_store(config.store), load=load, role=args.role)
    heap.settle()  # a long-running process: the collector's settings for it (heap.py)
    asyncio.run(daemon.serve(host or None, port))
    return 0


def cmd_check(config: Config, args: argparse.Namespace) -> int:
    files = ", ".join(str(p) for p in config.rule_files) or "none"
    print(
        f"{config.path}: OK: {len(config.rules)} rules, {len(config.actions)} actions, "
        f"{len(config.targets)} targets (rule files: {files})"
    )
    return 0


def cmd_simulate(config: Config, args: argparse.Namespace) -> int:
    from remediator.simulate import Known, not_evaluated, simulate

    source = "stdin" if args.payload == "-" else args.payload
    try:
        text = sys.stdin.read() if args.payload == "-" else Path(args.payload).read_text("utf-8")
        notification = parse_notification(json.loads(text))
    except OSError as e:
        print(f"{source}: cannot read: {e.strerror}", file=sys.stderr)
        return 1
    except (ValueError, PayloadError) as e:
        print(f"{source}: {e}", file=sys.stderr)
        return 1
    try:
        known = cli_remote.known(Remote.of(config, args)) if args.url else Known()
    except RemoteError as e:
        print(e, file=sys.stderr)
        return 1
    outcomes = simulate(config, notification, known)
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
            _flags(a)
        if not o.actions:
            print("    no actions")
    print(f"not evaluated: {', '.join(not_evaluated(known)) or 'none'}")
    return 0


def _flags(action: dict[str, str]) -> None:
    if "approval" in action:
        print("      approval required: a person approves it before it runs")
    if "precondition" in action:
        print(f"      only if: {action['precondition']}")
    if "guardrail" in action:
        print(f"      {action['guardrail']}")


def _step(tier: str | None) -> str:
    from remediator.store.records import RESOLVED_STEP

    if tier == RESOLVED_STEP:
        return "on resolve"
    return f"tier {tier or 'none'}"


def cmd_history(config: Config | None, args: argparse.Namespace) -> int:
    if args.url or config is None:
        try:
            entries = cli_remote.history(Remote.of(config, args), max(1, args.limit), args.json)
        except RemoteError as e:
            print(e, file=sys.stderr)
            return 1
        _print_history(entries, args.json)
        return 0
    if config.store.postgres is None and not config.store_path.exists():
        print(f"no history yet: {config.store_path} does not exist")
        return 0

    async def read() -> list[dict[str, object]]:
        from remediator.store.factory import build_store

        store = build_store(config.store, exclusive=False)  # beside a running daemon
        await store.open()
        try:
            return (await store.history(max(1, args.limit), None)).items
        finally:
            await store.close()

    _print_history(asyncio.run(read()), args.json)
    return 0


cmd_history.remote = True  # type: ignore[attr-defined]  # with --url it needs no config


def _print_history(entries: list[dict[str, Any]], as_json: bool) -> None:
    for entry in entries:
        if as_json:
            print(json.dumps(entry))
            continue
        incident = f"incident {entry['incident_id']}" if entry["incident_id"] else "-"
        rule, message = visible(str(entry["rule"])), visible(str(entry["message"]))
        print(f"{entry['at']}  {incident:<12} {rule:<28} {entry['event']:<11} {message}")


@remote
def cmd_killswitch(remote: Remote, args: argparse.Namespace) -> None:
    if args.state == "status":
        state = remote.call("GET", "/killswitch")
    else:
        state = remote.call("PUT", "/killswitch", {"on": args.state == "on", "reason": args.reason})
    by = (
        f" (set by {state['by']} at {state['at']}: {state['reason'] or 'no reason given'})"
        if state["source"] == "runtime"
        else " (from the config)"
    )
    print(f"kill switch is {'ON' if state['on'] else 'off'}{by}")


@remote
def cmd_mutes(remote: Remote, args: argparse.Namespace) -> None:
    if args.verb == "add":
        mute = remote.call(
            "POST",
            "/mutes",
            {
                "rule": args.rule or "",
                "target": args.target or "",
                "matchers": args.matchers or "",
                "duration": args.duration,
                "reason": args.reason,
            },
        )
        print(f"mute {mute['id']} until {mute['until']}")
        return
    if args.verb == "end":
        if args.id is None:
            raise RemoteError("mutes end needs the mute's id")
        remote.call("DELETE", f"/mutes/{args.id}", {})
        print(f"mute {args.id} ended")
        return
    for m in remote.call("GET", "/mutes" + ("?all=1" if args.all else ""))["items"]:
        scope = " ".join(f"{k}={m[k]}" for k in ("rule", "target", "matchers") if m[k])
        state = "active" if m["active"] else "ended"
        print(
            f"{m['id']:>4}  {state:<6} until {m['until']}  {scope}  by {m['created_by']}: "
            f"{m['reason']}"
        )


@remote
def cmd_approvals(remote: Remote, args: argparse.Namespace) -> None:
    if args.verb in ("approve", "deny"):
        if args.id is None:
            raise RemoteError(f"approvals {args.verb} needs the approval's id")
        a = remote.call(
            "POST", f"/approvals/{args.id}", {"decision": args.verb, "reason": args.reason}
        )
        print(f"approval {a['id']} {a['status']} by {a['decided_by']}")
        return
    for a in remote.call("GET", "/approvals")["items"]:
        print(
            f"{a['id']:>4}  incident {a['incident_id']}  {a['rule']}  {a['action']} on "
            f"{a['target']}  expires {a['expires_at']}"
        )


@remote
def cmd_circuits(remote: Remote, args: argparse.Namespace) -> None:
    if args.verb == "reset":
        if not args.target:
            raise RemoteError("circuits reset needs a target")
        remote.call("POST", f"/circuits/{args.target}/reset", {})
        print(f"circuit of {args.target} closed")
        return
    for c in remote.call("GET", "/circuits")["items"]:
        until = f" until {c['open_until']}" if c["open_until"] else ""
        print(f"{c['target']:<24} {c['state']:<9} {c['failures']} failures{until}")


if __name__ == "__main__":
    sys.exit(main())
