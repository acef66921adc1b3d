"""lanes.lane_of: what of its target an action holds, from its rule's one_at_a_time_by."""

from __future__ import annotations

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
