"""lanes.lane_of: what of its target an action holds, from its rule's one_at_a_time_by."""

from __future__ import annotations

import json
import random

from remediator.lanes import lane_of


def test_no_labels_means_the_whole_target() -> None:
    assert lane_of((), {"connector": "a"}) is None


def test_the_lane_is_the_named_labels_values() -> None:
    labels = {"connector": "orders-sink", "cluster": "c1", "pod": "x"}
    assert lane_of(("connector",), labels) == lane_of(("connector",), {"connector": "orders-sink"})
    assert lane_of(("connector",), labels) != lane_of(("connector",), {"connector": "users-sink"})
    assert lane_of(("cluster", "connector"), labels) == '{"cluster":"c1","connector":"orders-sink"}'


def test_a_missing_label_is_the_empty_string_and_values_cannot_collide() -> None:
    assert lane_of(("connector",), {}) == lane_of(("connector",), {"connector": ""})
    assert lane_of(("a", "b"), {"a": "x,y", "b": ""}) != lane_of(("a", "b"), {"a": "x", "b": "y"})


def test_the_lane_is_written_as_json_dumps_writes_it() -> None:
    """Lanes are stored with claims: the text must stay what json.dumps made of them."""
    rnd = random.Random(17)
    alphabet = 'ab",\\/:{}\n\t\x00\x1f\x7fé€😀\u2028 '
    values = ["", "orders-sink", 'a"b', "a\\b", "x\ny", "\u2028", "é😀"]
    values += ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12))) for _ in range(300)]
    for i, value in enumerate(values):
        by = ("connector", 'cl"uster') if i % 2 else ("connector",)
        labels = {"connector": value, 'cl"uster': values[i - 1]}
        expected = json.dumps({n: labels.get(n, "") for n in by}, separators=(",", ":"))
        assert lane_of(by, labels) == expected
    assert lane_of(("a", "a"), {"a": "x"}) == '{"a":"x"}'  # a name twice: once, as a dict has it
    assert lane_of(("n",), {"n": 5}) == '{"n":5}'  # type: ignore[dict-item]
