"""One of the processes racing to start claims on one PostgreSQL database (test_postgres.py).

    python -m tests.store.race DSN HOLD_SECONDS BUDGET CLAIM_ID...

Tries each claim in turn through start_claim_if, judged by the real guardrails (an action budget
of BUDGET per hour, one action at a time per target); holds each claim it starts for
HOLD_SECONDS, then finishes it. Prints one JSON line: the claims it started, and for each the
interval [after the start committed, before the finish began] in which it was surely running."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from remediator import guardrails
from remediator.guardrails import Ask, Budget, Facts, Policy, Verdict
from remediator.schema import Secret
from remediator.store.postgres import PostgresStore
from remediator.store.records import SUCCEEDED, AuditEntry, MuteRow, TargetHistory
from remediator.store.settings import PostgresSettings

HOUR = 3600.0


async def race(dsn: str, hold: float, budget: int, claim_ids: list[int]) -> dict[str, object]:
    store = PostgresStore(PostgresSettings(Secret(dsn, "argv"), pool_size=2))
    await store.open()
    policy = Policy(action_budget=Budget(budget, HOUR))
    started: list[tuple[int, float, float]] = []
    try:
        pending = list(claim_ids)
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            for claim_id in list(pending):
                claim = await store.claim(claim_id)
                if claim is None or claim.status != "claimed":
                    pending.remove(claim_id)
                    continue
                now = time.time()
                ask = Ask(claim.rule, claim.action, claim.target, {}, now)

                def judge(h: TargetHistory, mutes: list[MuteRow], ask: Ask = ask) -> Verdict:
                    facts = Facts(
                        started_action=h.started_action,
                        started_global=h.started_global,
                        target_busy=h.target_busy,
                    )
                    return guardrails.decide(policy, ask, facts)

                verdict, ok = await store.start_claim_if(claim, {}, now, now - HOUR, judge)
                if verdict is not None and verdict.refused:
                    pending.remove(claim_id)  # the budget is spent: never again
                if not ok:
                    continue
                began = time.time()
                await asyncio.sleep(hold)
                ended = time.time()
                entry = AuditEntry("action", "succeeded", "done", ended)
                await store.finish_claim(claim_id, SUCCEEDED, "done", ended, entry)
                started.append((claim_id, began, ended))
                pending.remove(claim_id)
    finally:
        await store.close()
    return {"started": started}


def main() -> None:
    dsn, hold, budget, *ids = sys.argv[1:]
    result = asyncio.run(race(dsn, float(hold), int(budget), [int(i) for i in ids]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
