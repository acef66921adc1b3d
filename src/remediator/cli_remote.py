"""The verbs that read or steer a running daemon over its API. Wiring only; cli.py registers them.

Where the daemon is: `--url` and a token (`--token`, or the REMEDIATOR_API_TOKEN environment
variable), which need no config file at all (a laptop talking to a daemon in Kubernetes); or,
without `--url`, `server.listen` and `api_auth` from the config.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from remediator.alerts import parse_time
from remediator.errors import RemediatorError

if TYPE_CHECKING:  # a verb over --url imports neither the config's world nor the guardrails'
    from remediator.config import Config
    from remediator.simulate import Known

TOKEN_ENV = "REMEDIATOR_API_TOKEN"  # noqa: S105  # the variable's name, not a secret
Command = Callable[["Remote", argparse.Namespace], None]


class RemoteError(RemediatorError):
    """The daemon could not be asked, or refused; the message says which and why."""


class Remote:
    """The daemon's HTTP API."""

    def __init__(self, base: str, token: str, by: str) -> None:
        self.base = base.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.by = by

    @classmethod
    def of(cls, config: Config | None, args: argparse.Namespace) -> Remote:
        """From --url and the token flag or variable, else from the config."""
        token = args.token or os.environ.get(TOKEN_ENV, "")
        if not token and config is not None and config.api_token is not None:
            token = config.api_token.reveal()
        if not token:
            raise RemoteError(
                f"no API token: give --token, set {TOKEN_ENV}, or api_auth in the config"
            )
        if args.url:
            return cls(args.url, token, args.by)
        assert config is not None  # main() loads the config whenever --url is not given
        listen = config.server
        host = listen.host if listen.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return cls(f"http://{host}:{listen.port}", token, args.by)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request(method, f"/api/v1{path}", body)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            r = httpx.request(
                method,
                f"{self.base}{path}",
                headers=self.headers,
                json=None if body is None else {**body, "by": self.by},
                timeout=10.0,
            )
        except httpx.HTTPError as e:
            raise RemoteError(f"cannot reach the daemon at {self.base}: {e}") from None
        if r.status_code >= 400 and not (path == "/readyz" and r.status_code == 503):
            try:
                message = r.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = r.text[:200]
            raise RemoteError(f"{method} {path}: HTTP {r.status_code}: {message}")
        return r.json()


def remote(command: Command) -> Callable[[Config | None, argparse.Namespace], int]:
    """A verb run against the daemon: errors are one line on stderr and exit status 1."""

    def run(config: Config | None, args: argparse.Namespace) -> int:
        try:
            command(Remote.of(config, args), args)
        except RemoteError as e:
            print(e, file=sys.stderr)
            return 1
        return 0

    run.remote = True  # type: ignore[attr-defined]  # main() needs no config with --url
    return run


def add_remote_options(parser: argparse.ArgumentParser, by: str) -> None:
    parser.add_argument(
        "--url",
        help="the daemon's base URL, e.g. http://localhost:9095; with it no config file is "
        "read (default: server.listen from the config)",
    )
    parser.add_argument(
        "--token",
        help=f"the API bearer token (default: ${TOKEN_ENV}, else api_auth from the config)",
    )
    parser.add_argument(
        "--by", default=by, help=f"who is asking, recorded in the audit (default: {by})"
    )


def register(sub: argparse._SubParsersAction, remote_parent: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    incidents = sub.add_parser(
        "incidents",
        parents=[remote_parent],
        help="list incidents, show one (claims, attempts, audit) or close one by hand",
        description="List incidents (newest first), show one with its claims, attempts and "
        "audit trail, or close an open one by hand: nothing runs for it, and its alerts' "
        "repeats reopen nothing.",
    )
    incidents.add_argument(
        "verb", choices=["list", "show", "close"], nargs="?", default="list", help="what to do"
    )
    incidents.add_argument("id", nargs="?", type=int, help="the incident (show, close)")
    incidents.add_argument(
        "--status", choices=["open", "resolved"], help="list only these (default: all)"
    )
    incidents.add_argument("--limit", type=int, default=20, help="how many (default: 20)")
    incidents.add_argument("--reason", default="", help="why it is closed (close: required)")
    incidents.add_argument("--json", action="store_true", help="print JSON")
    incidents.set_defaults(command=cmd_incidents)

    status = sub.add_parser(
        "status",
        parents=[remote_parent],
        help="the running daemon at a glance",
        description="Readiness, rules, dry-run, kill switch, open incidents, pending "
        "approvals, active mutes and open circuits of the running daemon, and its replicas "
        "with the leader.",
    )
    status.set_defaults(command=cmd_status)


@remote
def cmd_incidents(remote: Remote, args: argparse.Namespace) -> None:
    if args.verb in ("show", "close") and args.id is None:
        raise RemoteError(f"incidents {args.verb} needs the incident's id")
    if args.verb == "close":
        if not args.reason.strip():
            raise RemoteError("incidents close needs --reason: say why it is closed by hand")
        closed = remote.call("POST", f"/incidents/{args.id}/close", {"reason": args.reason})
        print(f"incident {closed['id']} closed")
        return
    if args.verb == "show":
        _show_incident(remote.call("GET", f"/incidents/{args.id}"), args.json)
        return
    query = f"?limit={max(1, args.limit)}" + (f"&status={args.status}" if args.status else "")
    for i in remote.call("GET", f"/incidents{query}")["items"]:
        if args.json:
            print(json.dumps(i))
            continue
        key = ", ".join(f"{k}={v}" for k, v in i["key"].items())
        tier = i.get("tier_name") or "-"
        print(f"{i['id']:>5}  {i['status']:<8} {i['rule']:<28} tier {tier:<10} {key}")


def _show_incident(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(record, indent=2))
        return
    key = ", ".join(f"{k}={v}" for k, v in record["key"].items())
    print(f"incident {record['id']} ({record['status']}): rule {record['rule']} [{key}]")
    print(f"  opened {record['opened_at']}, tier {record.get('tier_name') or '-'}")
    for c in record["claims"]:
        print(f"  {c['step']}: {c['action']} on {c['target']}: {c['status']} {c['detail']}")
        for a in c["attempts"]:
            print(f"    attempt {a['attempt']}: {'ok' if a['ok'] else 'error'} {a['detail']}")
    for e in record["audit"]:
        print(f"  {e['at']}  {e['event']:<12} {e['message']}")


@remote
def cmd_status(remote: Remote, args: argparse.Namespace) -> None:
    ready = remote.request("GET", "/readyz")
    switch = remote.call("GET", "/killswitch")
    open_incidents = remote.call("GET", "/incidents?status=open&limit=500")["items"]
    approvals = remote.call("GET", "/approvals")["items"]
    mutes = remote.call("GET", "/mutes")["items"]
    circuits = [
        c["target"] for c in remote.call("GET", "/circuits")["items"] if c["state"] == "open"
    ]
    problems = f" ({'; '.join(ready['problems'])})" if ready.get("problems") else ""
    print(f"remediator at {remote.base}: {ready['status']}{problems}")
    print(f"  rules: {ready.get('rules', 0)}; dry-run: {'ON' if ready.get('dry_run') else 'off'}")
    print(f"  kill switch: {'ON' if switch['on'] else 'off'} (from the {switch['source']})")
    print(f"  open incidents: {len(open_incidents)}; approvals pending: {len(approvals)}")
    print(f"  active mutes: {len(mutes)}; open circuits: {', '.join(circuits) or 'none'}")
    replicas = remote.call("GET", "/replicas")
    print(f"  leader: {replicas['leader'] or 'none'} (epoch {replicas['epoch']})")
    for r in replicas["items"]:
        print(f"  replica {r['name']}: {r['role']}, heartbeat {r['heartbeat_age']:g}s ago")


def known(remote: Remote) -> Known:
    """What `simulate --url` asks the running daemon: its kill switch, mutes, open circuits,
    and the starts and busy targets its cooldowns, budgets and one-at-a-time read."""
    from remediator import guardrails
    from remediator.matchers import parse_matchers
    from remediator.simulate import Known
    from remediator.store.records import GuardrailState, Start

    state = remote.call("GET", "/guardrails")
    now = parse_time(state["now"])
    mutes = [
        guardrails.Mute(
            id=m["id"],
            reason=m["reason"],
            until=parse_time(m["until"]),
            created_by=m["created_by"],
            rule=m["rule"],
            target=m["target"],
            matchers=parse_matchers(m["matchers"]) if m["matchers"] else (),
        )
        for m in remote.call("GET", "/mutes")["items"]
    ]
    circuits = remote.call("GET", "/circuits")["items"]
    return Known(
        killswitch=bool(remote.call("GET", "/killswitch")["on"]),
        mutes=mutes,
        open_circuits=frozenset(c["target"] for c in circuits if c["state"] == "open"),
        store=GuardrailState(
            [
                Start(
                    s["rule"],
                    s["action"],
                    s["target"],
                    tuple(s["key"]),
                    dict(s["incident_key"]),
                    parse_time(s["started_at"]),
                )
                for s in state["starts"]
            ],
            list(state["busy_targets"]),
        ),
        now=now,
    )


def history(remote: Remote, limit: int, as_json: bool) -> list[dict[str, Any]]:
    """The audit trail over the API, newest first."""
    items: list[dict[str, Any]] = remote.call("GET", f"/history?limit={limit}")["items"]
    return items
