"""The executor's slots (slots.py): taken when a claim is allowed, never more than max_concurrency;
claims judged first come first served, at most the free slots and max_concurrency more at once,
none while every slot is taken."""

from __future__ import annotations

import asyncio
import threading

import pytest

from remediator.slots import Slots


def test_a_slot_is_taken_once_per_claim_and_never_beyond_the_size() -> None:
    slots = Slots(2)
    assert slots.take(1)
    assert slots.take(1)  # its own already
    assert slots.take(2)
    assert not slots.take(3)
    slots.give_back(1)
    slots.give_back(1)  # once
    assert slots.running() == 1
    assert slots.take(3)
    assert not slots.take(4)


def test_slots_are_taken_from_another_thread_never_beyond_the_size() -> None:
    """SQLite's writer thread judges claims: take() holds under threads."""
    slots = Slots(10)
    taken: list[int] = []

    def take(base: int) -> None:
        taken.extend(i for i in range(base, base + 100) if slots.take(i))

    threads = [threading.Thread(target=take, args=(n * 100,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 10


async def judged(slots: Slots, name: str, order: list[str], hold: asyncio.Event,
                 again: bool = False) -> None:  # fmt: skip
    async with slots.judging(again):
        order.append(name)
        await hold.wait()


async def test_claims_are_judged_first_come_at_most_the_free_slots_and_as_many_more() -> None:
    slots = Slots(2)
    slots.take(100)  # one slot running: one free, three judged at once
    order: list[str] = []
    hold = asyncio.Event()
    tasks = [asyncio.create_task(judged(slots, n, order, hold)) for n in "abcdef"]
    await asyncio.sleep(0.01)
    assert order == ["a", "b", "c"]
    late = asyncio.create_task(judged(slots, "again", order, hold, again=True))
    await asyncio.sleep(0.01)
    slots.give_back(100)  # two free: four at once; the claim judged again goes first
    await asyncio.sleep(0.01)
    assert order == ["a", "b", "c", "again"]
    hold.set()
    await asyncio.gather(*tasks, late)
    assert order == ["a", "b", "c", "again", "d", "e", "f"]


async def test_no_claim_is_judged_while_every_slot_is_taken() -> None:
    slots = Slots(1)
    slots.take(100)
    order: list[str] = []
    hold = asyncio.Event()
    hold.set()
    waiting = asyncio.create_task(judged(slots, "a", order, hold))
    await asyncio.sleep(0.01)
    assert order == []
    slots.give_back(100)
    await waiting
    assert order == ["a"]


async def test_a_claim_cancelled_while_it_waits_leaves_no_trace() -> None:
    slots = Slots(1)
    slots.take(100)
    order: list[str] = []
    hold = asyncio.Event()
    hold.set()
    gone = asyncio.create_task(judged(slots, "gone", order, hold))
    await asyncio.sleep(0.01)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    slots.give_back(100)
    await judged(slots, "next", order, hold)
    assert order == ["next"]
    assert slots.take(1)
