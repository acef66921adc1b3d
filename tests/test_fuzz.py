"""Every inbound surface fuzzed against a live daemon (its own process): random and mutated
payloads, nesting, huge values, invalid UTF-8, other encodings, wrong types, duplicate keys, odd
headers. Always a 4xx with a JSON error or a success, never a 5xx, never a hang; and every
notification acknowledged with 200 is decided after a SIGKILL and a restart (replay).

Examples are bounded (FUZZ_EXAMPLES per surface) so the suite stays fast; raise it locally with
REMEDIATOR_FUZZ_EXAMPLES for a longer run.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remediator.trust import default_tls
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN
from tests.payloads import alert, notification
from tests.peers import free_port, start_serve
from tests.slack_standin import SECRET, TOKEN, click, command, signed

FUZZ_EXAMPLES = int(os.environ.get("REMEDIATOR_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples in every CI run; a failure reproduces
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
RULES = """
actions:
  poke: {kind: http, target: nowhere, method: POST, path: "/poke/{job}", retries: 0, timeout: 1s}
rules:
  - name: fuzz
    match: '{alertname="Fuzz"}'
    incident_key: [alertname, job]
    tiers:
      - actions: [poke]
"""


@dataclass
class Live:
    """A `remediator serve` process, a client, and the journal ids it acknowledged."""

    workdir: Path
    port: int
    proc: subprocess.Popen[bytes]
    client: httpx.Client
    accepted: list[int] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.workdir / "state" / "remediator.db"


def _config(workdir: Path) -> Path:
    (workdir / "rules.yaml").write_text(RULES)
    main = workdir / "remediator.yaml"
    main.write_text(
        textwrap.dedent(
            """\
            webhook_auth: {bearer_token_env: TEST_WEBHOOK_TOKEN}
            api_auth: {bearer_token_env: TEST_API_TOKEN}
            store: {sqlite: {path: state/remediator.db}}
            rule_files: [rules.yaml]
            targets:
              nowhere: {url: "http://127.0.0.1:9"}
            slack:
              bot_token_env: TEST_SLACK_TOKEN
              signing_secret_env: TEST_SLACK_SECRET
              base_url: http://127.0.0.1:9/api/
              channel: '#alerts'
              access:
                '*': {users: [U0ADMIN]}
              verbs:
                pause: {nowhere: poke}
            """
        )
    )
    return main


ENV = {
    "TEST_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
    "TEST_API_TOKEN": API_TOKEN,
    "TEST_SLACK_TOKEN": TOKEN,
    "TEST_SLACK_SECRET": SECRET,
}


def _start(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    return start_serve(_config(workdir), port, ENV)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    proc = _start(workdir, port)
    with httpx.Client(
        verify=default_tls(), base_url=f"http://127.0.0.1:{port}", timeout=10.0
    ) as client:
        running = Live(workdir, port, proc, client)
        yield running
        running.proc.send_signal(signal.SIGKILL)
        running.proc.wait(timeout=30)


def check(r: httpx.Response) -> None:
    """Never a 5xx; every error is JSON naming a problem."""
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/json"), r.text
        assert isinstance(r.json()["error"], str)


# -- strategies ----------------------------------------------------------------------------------

_NASTY_TEXT = st.sampled_from(
    ["\ud800", "\udfff", "a\x00b", "\n\r", "\u202e", "\ufeff", "💥", "../", "%2F", "<!channel>"]
)
TEXT = st.one_of(st.text(max_size=30), _NASTY_TEXT)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4))


JSON = st.recursive(SCALARS, _containers, max_leaves=12)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*prefix, i))
    return found


@st.composite
def mutated_notifications(draw: st.DrawFn) -> Any:
    """A valid notification with one part replaced by anything JSON can hold."""
    body: Any = notification(alert("Fuzz", job=draw(st.sampled_from(["a", "b", "c"]))))
    path = draw(st.sampled_from(_paths(body)))
    replacement = draw(JSON)
    if not path:
        return replacement
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = replacement
    return body


def _encode(value: Any, how: str) -> bytes:
    text = json.dumps(value, ensure_ascii=how == "ascii", allow_nan=True)
    if how in ("ascii", "utf-8"):
        return text.encode("utf-8", errors="surrogatepass")
    if how == "bom":
        return b"\xef\xbb\xbf" + text.encode("utf-8", errors="surrogatepass")
    return text.encode(how, errors="surrogatepass")


STORABLE = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))


@st.composite
def valid_notifications(draw: st.DrawFn) -> Any:
    """Notifications a store can hold, with any text in their labels: acknowledged, and so
    decided after the SIGKILL at the end."""
    labels = draw(st.dictionaries(STORABLE.filter(bool), STORABLE, max_size=4))
    firing = alert("Fuzz", job=draw(STORABLE))
    firing["labels"] |= {k: v for k, v in labels.items() if k != "alertname"}
    return notification(firing)


BODIES = st.one_of(
    st.builds(_encode, valid_notifications(), st.sampled_from(["ascii", "utf-8"])),
    st.builds(
        _encode,
        mutated_notifications(),
        st.sampled_from(["ascii", "utf-8", "bom", "utf-16", "utf-32-le"]),
    ),
    st.binary(max_size=300),
    st.integers(1, 2000).map(lambda n: b"[" * n + b"]" * n),
    st.just(b'{"version": "4", "version": "3", "alerts": []}'),  # duplicate keys
)
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": st.sampled_from(
            ["application/json", "application/json; charset=utf-16", "text/plain", "", "a/b/c"]
        ),
        "Content-Encoding": st.sampled_from(["gzip", "deflate", "br", "identity", "x"]),
        "X-Odd": st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40),
    },
)


# -- the surfaces ------------------------------------------------------------------------------


@FUZZ
@given(body=BODIES, headers=HEADERS)
def test_alerts(live: Live, body: bytes, headers: dict[str, str]) -> None:
    sent = {"Content-Type": "application/json", **headers}
    sent["Authorization"] = f"Bearer {WEBHOOK_TOKEN}"
    r = live.client.post("/alerts", content=body, headers=sent)
    check(r)
    if r.status_code == 200:
        live.accepted.append(r.json()["journal_id"])


@FUZZ
@given(
    text=st.one_of(TEXT, st.lists(TEXT, max_size=5).map(" ".join)),
    verb=st.sampled_from(
        [
            "status",
            "history",
            "ack",
            "approve",
            "deny",
            "mute",
            "unmute",
            "killswitch",
            "pause",
            "x",
        ]
    ),
)
def test_slack_commands(live: Live, text: str, verb: str) -> None:
    body = command(f"{verb} {text}".encode(errors="surrogatepass").decode(errors="replace"))
    r = live.client.post("/slack/commands", content=body, headers=signed(body))
    check(r)


@FUZZ
@given(
    raw=st.one_of(
        st.binary(max_size=200),
        st.builds(lambda v: urlencode({"payload": json.dumps(v)}).encode(), JSON),
    ),
    value=TEXT,
)
def test_slack_interactions(live: Live, raw: bytes, value: str) -> None:
    for body in (
        raw,
        click("approve", value.encode(errors="surrogatepass").decode(errors="replace")),
    ):
        r = live.client.post("/slack/interactions", content=body, headers=signed(body))
        check(r)


API_ROUTES = [
    ("GET", "/api/v1/incidents"),
    ("GET", "/api/v1/actions"),
    ("PUT", "/api/v1/killswitch"),
    ("POST", "/api/v1/mutes"),
    ("DELETE", "/api/v1/mutes/{id}"),
    ("GET", "/api/v1/approvals"),
    ("POST", "/api/v1/approvals/{id}"),
    ("POST", "/api/v1/circuits/{id}/reset"),
]


@FUZZ
@given(
    route=st.sampled_from(API_ROUTES),
    ident=st.one_of(
        st.integers(-1, 2**70).map(str),
        st.text(st.characters(min_codepoint=48, max_codepoint=0x2FF), min_size=1, max_size=20),
    ),
    query=st.dictionaries(
        st.sampled_from(["limit", "before", "status", "all"]), st.text(max_size=25), max_size=3
    ),
    body=st.one_of(
        st.none(),
        JSON.map(lambda v: json.dumps(v).encode(errors="surrogatepass")),
        st.binary(max_size=100),
    ),
)
def test_api(
    live: Live, route: tuple[str, str], ident: str, query: dict[str, str], body: bytes | None
) -> None:
    method, path = route
    headers = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}
    url = path.replace("{id}", quote(ident.encode(errors="surrogatepass"), safe=""))
    r = live.client.request(method, url, params=query, content=body, headers=headers)
    check(r)


def test_every_acknowledged_notification_is_decided_after_sigkill(live: Live) -> None:
    """Runs after the fuzzing above (file order): kill -9, restart on the same state, and every
    journal row acknowledged with 200 is decided, none quarantined."""
    assert live.accepted, "the fuzzing produced no acknowledged notification"
    live.proc.send_signal(signal.SIGKILL)
    live.proc.wait(timeout=30)
    live.proc = _start(live.workdir, live.port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with sqlite3.connect(live.db) as conn:
            rows = conn.execute("SELECT id, processed_at, quarantined_at FROM journal").fetchall()
        if all(processed is not None for _, processed, _ in rows):
            break
        time.sleep(0.1)
    state = {journal_id: (processed, quarantined) for journal_id, processed, quarantined in rows}
    for journal_id in live.accepted:
        processed, quarantined = state[journal_id]
        assert processed is not None, f"journal entry {journal_id} was never decided"
        assert quarantined is None, f"journal entry {journal_id} was quarantined"
