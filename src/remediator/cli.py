"""The `remediator` command: serve, check, simulate, history, and the verbs that steer a running
daemon (killswitch, mutes, approvals, circuits). Wiring only."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from pathlib import Path
from typing import Any

import httpx

from remediator import __version__, cli_offline
from remediator.alerts import parse_notification
from remediator.config import Config, load_config
from remediator.errors import ConfigError, PayloadError, StoreError
from remediator.schema import decimal
from remediator.server import Daemon
from remediator.simulate import simulate
from remediator.store.factory import build_store
from remediator.store.records import RESOLVED_STEP

DEFAULT_CONFIG = "remediator.yaml"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the executor logs each outcome itself
    try:
        config = load_config(args.config, strict=args.strict)
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
    common.add_argument(
        "--strict",
        action="store_true",
        help="a rule skipped because its target is not configured is an error, not a warning",
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

    remote = argparse.ArgumentParser(add_help=False, parents=[common])
    remote.add_argument("--url", help="the daemon's base URL (default: from server.listen)")
    remote.add_argument("--by", default=getpass.getuser(), help="who is asking, for the audit")

    ks = sub.add_parser("killswitch", parents=[remote], help="show or flip the kill switch")
    ks.add_argument("state", choices=["on", "off", "status"], nargs="?", default="status")
    ks.add_argument("--reason", default="")
    ks.set_defaults(command=cmd_killswitch)

    mutes = sub.add_parser("mutes", parents=[remote], help="list, add or end mutes")
    mutes.add_argument("verb", choices=["list", "add", "end"], nargs="?", default="list")
    mutes.add_argument("id", nargs="?", type=int, help="the mute to end")
    mutes.add_argument("--rule")
    mutes.add_argument("--target")
    mutes.add_argument("--matchers", help="label matchers, e.g. '{connector=\"sink\"}'")
    mutes.add_argument("--duration", default="1h")
    mutes.add_argument("--reason", default="")
    mutes.add_argument("--all", action="store_true", help="include ended and expired mutes")
    mutes.set_defaults(command=cmd_mutes)

    approvals = sub.add_parser("approvals", parents=[remote], help="list or decide approvals")
    approvals.add_argument("verb", choices=["list", "approve", "deny"], nargs="?", default="list")
    approvals.add_argument("id", nargs="?", type=int)
    approvals.add_argument("--reason", default="")
    approvals.set_defaults(command=cmd_approvals)

    circuits = sub.add_parser("circuits", parents=[remote], help="list or reset circuit breakers")
    circuits.add_argument("verb", choices=["list", "reset"], nargs="?", default="list")
    circuits.add_argument("target", nargs="?")
    circuits.set_defaults(command=cmd_circuits)
    cli_offline.register(sub, common)
    return parser


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    host = port = None
    if args.listen:
        host, _, port_text = args.listen.rpartition(":")
        port = decimal(port_text)
        if port is None:
            print(f"--listen: expected HOST:PORT, got {args.listen!r}", file=sys.stderr)
            return 2
    asyncio.run(Daemon(config, given_store=build_store(config.store)).serve(host or None, port))
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
    if config.store.postgres is None and not config.store_path.exists():
        print(f"no history yet: {config.store_path} does not exist")
        return 0

    async def read() -> list[dict[str, object]]:
        store = build_store(config.store, exclusive=False)  # beside a running daemon
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


class Remote:
    """The daemon's /api/v1, with the API token from the config."""

    def __init__(self, config: Config, args: argparse.Namespace) -> None:
        host = config.server.host if config.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
        self.base = args.url or f"http://{host}:{config.server.port}"
        token = config.api_token.reveal() if config.api_token else ""
        self.headers = {"Authorization": f"Bearer {token}"}
        self.by = args.by

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            r = httpx.request(
                method,
                f"{self.base}/api/v1{path}",
                headers=self.headers,
                json=None if body is None else {**body, "by": self.by},
                timeout=10.0,
            )
        except httpx.HTTPError as e:
            raise RemoteError(f"cannot reach the daemon at {self.base}: {e}") from None
        if r.status_code >= 400:
            try:
                message = r.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = r.text[:200]
            raise RemoteError(f"{method} {path}: HTTP {r.status_code}: {message}")
        return r.json()


class RemoteError(Exception):
    pass


def _remote(command: Any) -> Any:
    def run(config: Config, args: argparse.Namespace) -> int:
        try:
            command(Remote(config, args), args)
        except RemoteError as e:
            print(e, file=sys.stderr)
            return 1
        return 0

    return run


@_remote
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


@_remote
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


@_remote
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


@_remote
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
