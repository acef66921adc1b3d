"""Claims started in the engine batch's own commit (offers.py), through a running daemon: a new
incident's action starts there, with no start of its own; a claim the guardrails do not allow
then, one whose turn or slot is taken, and one of a follower go the usual way and end as they
did before; a claim started there and interrupted is recovered as any running claim."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from remediator.store.records import INTERRUPTED, NewClaim
from tests.conftest import Running, StartDaemon, base_config
from tests.payloads import alert, notification
from tests.standins import Recorder

RULES = """
actions:
  poke: {kind: http, target: box, method: POST, path: "/poke/{n}", retries: 0}
rules:
  - name: poke
    match: '{alertname="Poke"}'
    incident_key: [alertname, n]
    tiers:
      - actions: [poke]
  - name: rehearsal
    match: '{alertname="Rehearsal"}'
    incident_key: [alertname, n]
    dry_run: true
    tiers:
      - actions: [poke]
"""


class Starts:
    """Counts the starts the executor asks of the store on its own (start_claim_if), the store's
    real method still answering."""

    def __init__(self, running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        store = running.daemon.store
        real = store.start_claim_if

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await real(*args, **kwargs)

        monkeypatch.setattr(store, "start_claim_if", counted)


@pytest.fixture
async def box(recorder: Callable[..., Awaitable[Recorder]]) -> Recorder:
    return await recorder()


async def daemon(
    start_daemon: StartDaemon, write_config: Callable[..., Path], box: Recorder, extra: str = ""
) -> Running:
    main = base_config({"box": box.server.url}, "rule_files: [rules.yaml]\n" + extra)
    return await start_daemon(write_config(main, rules=RULES))


async def fire(running: Running, *alerts: dict[str, Any], settle: bool = True) -> None:
    assert (await running.post_alerts(notification(*alerts))).status_code == 200
    if settle:
        await running.settle()


def poke(n: str, name: str = "Poke") -> dict[str, Any]:
    return alert(name, n=n)


async def actions(running: Running) -> list[dict[str, Any]]:
    return list(reversed((await running.api("/api/v1/actions?limit=50"))["items"]))


async def test_a_new_incidents_action_starts_in_the_commit_that_claims_it(
    start_daemon: StartDaemon,
    write_config: Callable[..., Path],
    box: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running = await daemon(start_daemon, write_config, box)
    starts = Starts(running, monkeypatch)
    await fire(running, poke("1"))
    [action] = await actions(running)
    assert action["status"] == "succeeded"
    assert [s.path for s in box.server.seen] == ["/poke/1"]
    assert starts.calls == 0  # judged and started by the engine batch's apply
    executor = running.daemon.executor
    assert executor.holding == set()
    assert executor._slots.running() == 0
    assert executor._turns.free("box")


async def test_a_claim_not_allowed_then_is_judged_again_and_settled_as_before(
    start_daemon: StartDaemon,
    write_config: Callable[..., Path],
    box: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running = await daemon(start_daemon, write_config, box)
    starts = Starts(running, monkeypatch)
    await fire(running, poke("1", "Rehearsal"))
    [action] = await actions(running)
    assert action["status"] == "dry_run"
    assert action["detail"] == f"dry-run: would have POST {box.server.url}/poke/1"
    assert box.server.seen == []
    assert starts.calls == 1  # offered, not started, then judged again the usual way
    audit = await running.daemon.store.audit_after(0, 100)
    assert [e.event for e in audit if e.kind == "action"] == ["claimed", "dry_run"]
    metrics = (await running.client.get("/metrics")).text
    assert 'remediator_guardrail_refusals_total{guardrail="dry_run"} 1.0' in metrics


async def test_claims_on_one_target_in_one_batch_run_one_after_the_other(
    start_daemon: StartDaemon,
    write_config: Callable[..., Path],
    box: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box.delay = 0.05
    running = await daemon(start_daemon, write_config, box)
    starts = Starts(running, monkeypatch)
    await fire(running, poke("1"), poke("2"))
    first, second = await actions(running)
    assert (first["status"], second["status"]) == ("succeeded", "succeeded")
    assert second["started_at"] >= first["finished_at"]  # never two at once on the target
    assert starts.calls == 1  # the second waited for its turn, then started on its own
    assert sorted(s.path for s in box.server.seen) == ["/poke/1", "/poke/2"]


async def test_with_every_slot_taken_a_claim_waits_for_one_the_usual_way(
    start_daemon: StartDaemon,
    write_config: Callable[..., Path],
    box: Recorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box.delay = 0.3  # poke 1 holds the one slot while Other is decided
    two_targets = RULES.replace(
        "rules:\n",
        '  other: {kind: http, target: box2, method: POST, path: "/other", retries: 0}\n'
        "rules:\n  - {name: other, match: '{alertname=\"Other\"}', tiers: [{actions: [other]}]}\n",
    )
    main = base_config(
        {"box": box.server.url, "box2": box.server.url},
        "rule_files: [rules.yaml]\nexecutor: {max_concurrency: 1}\n",
    )
    running = await start_daemon(write_config(main, rules=two_targets))
    starts = Starts(running, monkeypatch)
    await fire(running, poke("1"), settle=False)
    await running.daemon.engine.idle()  # poke 1 runs, holding the one slot
    await fire(running, alert("Other"))
    assert [a["status"] for a in await actions(running)] == ["succeeded", "succeeded"]
    assert starts.calls == 1  # Other was not offered: no slot was free


async def test_a_follower_offers_nothing_and_reserved_turns_and_slots_go_back(
    start_daemon: StartDaemon, write_config: Callable[..., Path], box: Recorder
) -> None:
    running = await daemon(start_daemon, write_config, box)
    executor = running.daemon.executor
    new = NewClaim(-1, "tier0", "poke", "http", "box", "poke", "k", {"labels": {}}, 1.0)
    offer = executor.offer([new])
    assert offer is not None
    assert not executor._turns.free("box")
    assert executor._slots.running() == 1
    executor.withdraw(offer)  # its apply failed
    assert executor._turns.free("box")
    assert executor._slots.running() == 0
    executor.leading = False
    assert executor.offer([new]) is None


async def test_a_claim_started_in_the_batch_and_interrupted_is_recovered_as_running(
    start_daemon: StartDaemon, write_config: Callable[..., Path], box: Recorder
) -> None:
    box.delay = 30.0  # the request is in flight when the daemon stops
    running = await daemon(start_daemon, write_config, box, "server: {shutdown_grace: 0s}\n")
    await fire(running, poke("1"), settle=False)
    await running.daemon.engine.idle()
    [claim] = await running.daemon.store.claims_in(("running",))
    assert claim.sent_at is not None  # durable with the start, before the request left
    await running.daemon.stop()
    box.delay = 0.0
    again = await daemon(start_daemon, write_config, box)
    await again.settle()
    [action] = await actions(again)
    assert action["status"] == INTERRUPTED  # http's on_interrupted: a person decides
