"""The `exec` action kind: real programs, never a shell, built through the real config path."""

from __future__ import annotations

import asyncio
import json
import os
import select
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from remediator.actions import exec as exec_kind
from remediator.actions.base import AttemptContext, AttemptResult, RenderContext, RetryPolicy
from remediator.actions.exec import ExecAction
from remediator.trust import default_tls
from tests.actions.kinds import config_problems, load

MakeExec = Callable[[dict[str, Any]], ExecAction]

SCRIPTS = {
    "argv.py": """
        import json, sys
        sys.stdout.write(json.dumps(sys.argv[1:]))
    """,
    "env.py": """
        import json, os, sys
        sys.stdout.write(json.dumps(dict(os.environ)))
    """,
    "exit.py": """
        import sys
        sys.stdout.write("out\\n")
        sys.stdout.flush()
        sys.stderr.write("err\\n")
        sys.exit(int(sys.argv[1]))
    """,
    "group.py": """
        import os, sys, time
        grandchild = os.fork()
        if grandchild == 0:  # lets go of the output pipe: only a group kill can end it early
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            time.sleep(60)
            os._exit(0)
        with open(sys.argv[1], "w") as f:
            f.write(f"{os.getpid()} {grandchild}")
        print("started", flush=True)
        time.sleep(60)
    """,
    "chatty.py": """
        import sys
        sys.stdout.write("START" + "x" * (1 << 20))
        sys.stdout.flush()
        sys.exit(int(sys.argv[1]))
    """,
}


@pytest.fixture
def script(tmp_path: Path) -> Callable[[str], str]:
    """The path of one of SCRIPTS, written under tmp_path."""

    def path(name: str) -> str:
        file = tmp_path / name
        file.write_text(textwrap.dedent(SCRIPTS[name]))
        return str(file)

    return path


@pytest.fixture
def make_exec(write_config: Callable[..., Path]) -> MakeExec:
    def make(definition: dict[str, Any]) -> ExecAction:
        action = load(write_config, {}, act={"kind": "exec", **definition}).actions["act"]
        assert isinstance(action, ExecAction)
        return action

    return make


@pytest.fixture
def problems(
    write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[dict[str, Any]], list[str]]:
    monkeypatch.chdir(tmp_path)

    def read(definition: dict[str, Any]) -> list[str]:
        act = {"kind": "exec", **definition}
        return config_problems(write_config, {"connect": "http://127.0.0.1:9"}, act=act)

    return read


@pytest.fixture
async def attempt_ctx() -> AsyncIterator[Callable[[float], AttemptContext]]:
    async with httpx.AsyncClient(verify=default_tls(), trust_env=False) as client:
        yield lambda timeout: AttemptContext(1, timeout, "idem-key", client)


def exited(pid: int, within: float = 5.0) -> bool:
    """Whether the process has exited (reaped, or a zombie waiting for a reaper that may never
    come in a container). A pidfd becomes readable when its process exits: no polling."""
    try:
        os.kill(pid, 0)
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], within)[0])
    finally:
        os.close(fd)


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- alert data stays data ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "x; rm -rf /",
        "$(touch pwned)",
        "`touch pwned`",
        "a value with spaces",
        """it's "quoted" \\"twice\\" """,
        "line one\nline two",
        "-rf",
        "--help",
        "* ? [a] ~ > out.txt | cat & echo",
        "",
        "\t padded \t",
        "connecteur-é 日本",
    ],
)
async def test_hostile_label_stays_one_argv_element(
    make_exec: MakeExec,
    script: Callable[[str], str],
    attempt_ctx: Callable[[float], AttemptContext],
    tmp_path: Path,
    value: str,
) -> None:
    action = make_exec(
        {
            "argv": [
                sys.executable,
                script("argv.py"),
                "--connector={connector}",
                "{connector}",
                "prefix {connector} suffix",
            ],
            "cwd": ".",
        }
    )

    prepared = action.prepare(RenderContext({"connector": value}))
    result = await action.attempt(prepared, attempt_ctx(10))

    expected = [f"--connector={value}", value, f"prefix {value} suffix"]
    assert prepared["argv"][2:] == expected
    assert result.ok, result.detail
    assert json.loads(result.output) == expected
    assert files_in(tmp_path) == ["argv.py", "remediator.yaml"]  # no shell ran `touch pwned`


async def test_alert_data_arrives_as_environment_and_the_daemons_does_not(
    make_exec: MakeExec,
    script: Callable[[str], str],
    attempt_ctx: Callable[[float], AttemptContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SECRET_SHOULD_NOT_LEAK", "hunter2")
    monkeypatch.setenv("KUBECONFIG", "/etc/kube/config")
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("LANG", raising=False)
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("NEVER_SET_ANYWHERE", raising=False)
    action = make_exec(
        {
            "argv": [sys.executable, script("env.py")],
            "env": {"RUNBOOK": "cdc", "PYTHONCOERCECLOCALE": "0"},
            "pass_env": ["KUBECONFIG", "NEVER_SET_ANYWHERE"],
        }
    )
    labels = {
        "alertname": "ConnectorDown",
        "connector": "pg-sink; echo $SECRET_SHOULD_NOT_LEAK",
        "k8s.io/app-name": "sink",
    }
    ctx = RenderContext(
        labels,
        {"summary": "Connector is not running", "runbook-url": "https://runbooks.example/cdc"},
        incident_id=7,
        rule="cdc-connector-down",
        tier="restart",
        value=1.0,
        fingerprint="5a1f3c9e7b2d4e60",
    )

    prepared = action.prepare(ctx)
    result = await action.attempt(prepared, attempt_ctx(10))

    alert_env = {
        "RUNBOOK": "cdc",
        "PYTHONCOERCECLOCALE": "0",
        "REMEDIATOR_RULE": "cdc-connector-down",
        "REMEDIATOR_TIER": "restart",
        "REMEDIATOR_INCIDENT_ID": "7",
        "REMEDIATOR_FINGERPRINT": "5a1f3c9e7b2d4e60",
        "REMEDIATOR_VALUE": "1",
        "REMEDIATOR_LABELS_JSON": json.dumps(labels, sort_keys=True),
        "REMEDIATOR_LABEL_ALERTNAME": "ConnectorDown",
        "REMEDIATOR_LABEL_CONNECTOR": "pg-sink; echo $SECRET_SHOULD_NOT_LEAK",
        "REMEDIATOR_LABEL_K8S_IO_APP_NAME": "sink",
        "REMEDIATOR_ANNOTATION_SUMMARY": "Connector is not running",
        "REMEDIATOR_ANNOTATION_RUNBOOK_URL": "https://runbooks.example/cdc",
    }
    assert prepared == {"argv": [sys.executable, script("env.py")], "env": alert_env}
    assert result.ok, result.detail
    assert json.loads(result.output) == {
        **alert_env,
        "PATH": os.environ["PATH"],
        "TZ": "UTC",
        "KUBECONFIG": "/etc/kube/config",
        "REMEDIATOR_IDEMPOTENCY_KEY": "idem-key",
        "REMEDIATOR_ATTEMPT": "1",
    }


# --- outcomes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("0", AttemptResult(True, "exit 0", exit_code=0, output="out\nerr\n")),
        ("3", AttemptResult(False, "exit 3: out\nerr", exit_code=3, output="out\nerr\n")),
        (
            "75",
            AttemptResult(False, "exit 75: out\nerr", True, exit_code=75, output="out\nerr\n"),
        ),
    ],
)
async def test_exit_code_decides_the_outcome(
    make_exec: MakeExec,
    script: Callable[[str], str],
    attempt_ctx: Callable[[float], AttemptContext],
    code: str,
    expected: AttemptResult,
) -> None:
    action = make_exec(
        {"argv": [sys.executable, script("exit.py"), "{code}"], "retry_on_exit_codes": [75, 111]}
    )

    result = await action.attempt(action.prepare(RenderContext({"code": code})), attempt_ctx(10))

    assert result == expected


async def test_timeout_kills_the_whole_process_group(
    make_exec: MakeExec,
    script: Callable[[str], str],
    attempt_ctx: Callable[[float], AttemptContext],
    tmp_path: Path,
) -> None:
    pids = tmp_path / "pids"
    action = make_exec({"argv": [sys.executable, script("group.py"), str(pids)]})

    # bounded: a kill that missed the group would leave the attempt waiting for the program
    result = await asyncio.wait_for(
        action.attempt(action.prepare(RenderContext({})), attempt_ctx(1.5)), 10
    )

    assert result == AttemptResult(
        False, "killed after 1.5s timeout", retryable=True, output="started\n"
    )
    child, grandchild = (int(pid) for pid in pids.read_text().split())
    assert exited(child)
    assert exited(grandchild)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # reaped by the attempt


async def test_cancelling_an_attempt_kills_the_process_group(
    make_exec: MakeExec,
    script: Callable[[str], str],
    attempt_ctx: Callable[[float], AttemptContext],
    tmp_path: Path,
) -> None:
    """The executor's backstop (and shutdown) cancels the attempt: nothing may be left running."""
    pids = tmp_path / "pids"
    action = make_exec({"argv": [sys.executable, script("group.py"), str(pids)]})
    task = asyncio.create_task(action.attempt(action.prepare(RenderContext({})), attempt_ctx(60)))

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), 1.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)

    child, grandchild = (int(pid) for pid in pids.read_text().split())
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # reaped before the cancellation completed, not left to the loop
    assert exited(grandchild)


@pytest.mark.parametrize(
    ("limit", "code", "expected"),
    [
        (1000, "0", AttemptResult(True, "exit 0", exit_code=0, output="START" + "x" * 995)),
        (0, "0", AttemptResult(True, "exit 0", exit_code=0, output="")),
        (
            300,
            "2",
            AttemptResult(False, "exit 2: " + "x" * 200, exit_code=2, output="START" + "x" * 295),
        ),
    ],
)
async def test_output_is_bounded_and_a_chatty_program_still_finishes(
    make_exec: MakeExec,
    script: Callable[[str], str],
    attempt_ctx: Callable[[float], AttemptContext],
    limit: int,
    code: str,
    expected: AttemptResult,
) -> None:
    action = make_exec(
        {"argv": [sys.executable, script("chatty.py"), code], "max_output_bytes": limit}
    )

    result = await action.attempt(action.prepare(RenderContext({})), attempt_ctx(30))

    assert result == expected


async def test_missing_program_is_a_clear_failure(
    make_exec: MakeExec, attempt_ctx: Callable[[float], AttemptContext]
) -> None:
    action = make_exec({"argv": ["/nonexistent/remediator-test-program", "{connector}"]})

    result = await action.attempt(
        action.prepare(RenderContext({"connector": "pg"})), attempt_ctx(10)
    )

    assert result == AttemptResult(
        False, "cannot start '/nonexistent/remediator-test-program': No such file or directory"
    )


async def test_program_that_is_not_executable_is_a_clear_failure(
    make_exec: MakeExec, attempt_ctx: Callable[[float], AttemptContext], tmp_path: Path
) -> None:
    program = tmp_path / "restart.sh"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o644)
    action = make_exec({"argv": [str(program)]})

    result = await action.attempt(action.prepare(RenderContext({})), attempt_ctx(10))

    assert result == AttemptResult(False, f"cannot start {str(program)!r}: Permission denied")


# --- config ---------------------------------------------------------------------------------


def test_defaults_and_description(make_exec: MakeExec) -> None:
    action = make_exec({"argv": ["/usr/local/bin/restart-connector", "{connector}", ""]})
    prepared = action.prepare(RenderContext({"connector": "pg sink"}))

    assert (action.kind, action.target, action.timeout) == (
        "exec",
        "exec:restart-connector",
        30.0,
    )
    assert action.retry == RetryPolicy(retries=0)
    assert action.max_output_bytes == 65536
    assert action.describe(prepared) == '/usr/local/bin/restart-connector "pg sink" ""'


def test_a_named_target(write_config: Callable[..., Path]) -> None:
    act = {"kind": "exec", "argv": ["/bin/true"], "target": "kafka-connect"}
    config = load(write_config, {"kafka-connect": "http://127.0.0.1:9"}, act=act)
    assert config.actions["act"].target == "kafka-connect"


KNOWN = ", ".join(sorted(exec_kind.KEYS))


@pytest.mark.parametrize(
    ("definition", "problem"),
    [
        ({"argv": []}, "actions.act.argv: argv must name a program"),
        (
            {"argv": ["{program}", "--now"]},
            "actions.act.argv[0]: the program itself cannot come from alert data",
        ),
        (
            {"argv": ["/opt/{tool}/bin/run"]},
            "actions.act.argv[0]: the program itself cannot come from alert data",
        ),
        ({}, "actions.act: missing required key 'argv'"),
        (
            {"argv": "/bin/restart {connector}"},
            "actions.act.argv: expected a list, got '/bin/restart {connector}'",
        ),
        (
            {"argv": ["/bin/true", "{bad name}"]},
            "actions.act.argv[1]: invalid placeholder {bad name} in '{bad name}' (use a label "
            "name, $incident_id, $rule, $tier, $value, $fingerprint, $annotations.<name> "
            "or $results.<action>[.<field>])",
        ),
        (
            {"argv": ["/bin/true"], "max_output_bytes": -1},
            "actions.act.max_output_bytes: must be at least 0, got -1",
        ),
        (
            {"argv": ["/bin/true"], "target": "nope"},
            "actions.act.target: unknown target 'nope' (known: connect)",
        ),
        (
            {"argv": ["/bin/sh", "-c", "x"], "shell": True},
            f"actions.act.shell: unknown key 'shell' (known: {KNOWN})",
        ),
    ],
)
def test_config_errors(
    problems: Callable[[dict[str, Any]], list[str]], definition: dict[str, Any], problem: str
) -> None:
    assert problems(definition) == [f"remediator.yaml: {problem}"]
