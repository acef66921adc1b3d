"""One at a time, by lane: what of its target a running action holds.

By default an action holds its whole target: one action at a time per target. A rule's
`one_at_a_time_by` names labels whose values, with the target, make a lane: actions in different
lanes of one target run side by side (fifty failed connectors of one Kafka Connect cluster restart
together), one at a time within a lane. An action holding the whole target waits for every lane,
and every lane waits for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence


def lane_of(by: Sequence[str], labels: Mapping[str, str]) -> str | None:
    """The lane of an action whose rule serialises by `by` (None: the whole target). A missing
    label is the empty string, as in matchers."""
    if not by:
        return None
    return json.dumps({name: labels.get(name, "") for name in by}, separators=(",", ":"))
