import gc
import weakref
from collections.abc import Iterator

import pytest

from remediator import heap


@pytest.fixture
def restored() -> Iterator[None]:
    """The test process's collector as it was: settle() is meant for the daemon's process."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored")
def test_settle_hides_what_exists_from_the_collector_and_spaces_its_passes() -> None:
    before = gc.get_freeze_count()
    heap.settle()
    assert gc.get_freeze_count() > before
    assert gc.get_threshold() == (heap.YOUNG, heap.OLDER, heap.OLDER)


class Node:
    other: object = None


@pytest.mark.usefixtures("restored")
def test_cyclic_garbage_made_after_settle_is_still_collected_by_itself() -> None:
    heap.settle()
    a, b = Node(), Node()
    a.other, b.other = b, a
    ref = weakref.ref(a)
    del a, b
    assert ref() is not None  # a cycle: reference counting alone cannot free it
    kept: list[list[int]] = [[] for _ in range(3 * heap.YOUNG)]  # they trigger a young pass
    assert ref() is None
    assert len(kept) == 3 * heap.YOUNG


@pytest.mark.usefixtures("restored")
def test_what_settle_froze_is_collected_once_released() -> None:
    held = [Node()]
    held[0].other = held[0]  # a cycle, alive when the daemon settles (the config at start)
    ref = weakref.ref(held[0])
    heap.settle()
    held.clear()  # a reload replaced it
    gc.collect()
    assert ref() is not None  # frozen: never collected
    heap.released()
    gc.collect()
    assert ref() is None
